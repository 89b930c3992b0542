"""Migrate one service's database to head and exit: `python -m fm_common.migrate case_service`.

What a SQL service does at start-up (`fm_common.db.open_database`), as a step of its own:
the Helm chart's pre-install/pre-upgrade Job runs it with each service's image and
settings (ADR 0150), so a migration that fails stops an upgrade before any pod rolls.
The database is the service's own (`FM_<SVC>_DATABASE_URL`, read by its Settings); on
PostgreSQL the upgrade holds an advisory lock, so it may run beside starting replicas.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

from fm_common.db import migrate_sync
from fm_common.settings import load_settings

# The services that own tables (each has <module>/migrations and <module>/config.py).
SQL_SERVICES = ("auth_service", "case_service", "knowledge_service", "evidence_service")


def migrate_service(module: str) -> str:
    """Upgrade `module`'s database to head; returns the URL's backend name."""
    if module not in SQL_SERVICES:
        raise SystemExit(
            f"fm_common.migrate: {module!r} owns no tables; one of {', '.join(SQL_SERVICES)}"
        )
    try:
        package = importlib.import_module(module)
        config = importlib.import_module(f"{module}.config")
    except ImportError as exc:
        raise SystemExit(f"fm_common.migrate: {module} is not installed here ({exc})") from None
    settings = load_settings(config.Settings)
    url = settings.effective_database_url
    migrate_sync(Path(str(package.__file__)).parent / "migrations", url)
    return url.split(":", 1)[0]


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        sys.stderr.write(f"usage: python -m fm_common.migrate {{{'|'.join(SQL_SERVICES)}}}\n")
        return 2
    backend = migrate_service(argv[0])
    sys.stderr.write(f"{argv[0]}: database ({backend}) at head\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

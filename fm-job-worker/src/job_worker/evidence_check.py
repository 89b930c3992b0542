"""The evidence service's answer for `knowledge.purge_orphans`: which evidence files of an
owner still exist, so the chunks of deleted ones can leave their case collections.

The evidence service scopes every answer to the user a token acts for, and a service token
without a user has no access to user data (ADR 0002), so the question is asked per owner
with a service token acting for that owner (`POST /internal/v1/evidence/existing`).
"""

from __future__ import annotations

from collections.abc import Callable

import httpx

from fm_common.errors import Unavailable
from job_worker.runtime import Runtime


def evidence_exists(rt: Runtime) -> Callable[[str, list[str]], set[str]]:
    """`exists(owner_id, file_ids)` -> the ids among them still files of `owner_id`.

    Raises an FMError when it cannot answer (evidence or auth service down or timing out:
    Unavailable / GatewayTimeout; a user the auth service no longer knows: NotFound;
    credentials refused: Unauthorized); `purge_orphans` then deletes nothing for that owner.
    """
    from fm_common.clients.evidence import EvidenceClient

    # One attempt: the sweep runs again within the hour, and a POST is not retried anyway.
    client = EvidenceClient(rt.settings.evidence_url, rt.http, retries=0)

    def exists(owner_id: str, file_ids: list[str]) -> set[str]:
        try:
            token = rt.service_token(owner_id)
            return set(rt.run(client.existing(file_ids, token=token)).file_ids)
        except httpx.TransportError as exc:  # the ones the client does not map already
            raise Unavailable(
                "The evidence service is unavailable.", code="EVIDENCE_UNAVAILABLE"
            ) from exc

    return exists

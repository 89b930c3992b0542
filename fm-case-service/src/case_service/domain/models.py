"""Every table of the case service (imported by the Alembic env)."""

from case_service.domain.base import Base
from case_service.domain.cases import models as _cases
from case_service.domain.reports import models as _reports

__all__ = ["Base"]
_ = (_cases, _reports)

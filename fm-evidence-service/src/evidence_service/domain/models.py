"""Every table of the evidence service (imported by the Alembic env)."""

from evidence_service.domain.base import Base
from evidence_service.domain.evidence import models as _evidence

__all__ = ["Base"]
_ = (_evidence,)

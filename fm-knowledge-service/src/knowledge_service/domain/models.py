"""Every table of the knowledge service (imported by the Alembic env)."""

from knowledge_service.domain.base import Base
from knowledge_service.domain.documents import models as _documents

__all__ = ["Base"]
_ = (_documents,)

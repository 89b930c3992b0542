from fm_common.db import run_alembic_env
from knowledge_service.domain.models import Base

run_alembic_env(Base.metadata)

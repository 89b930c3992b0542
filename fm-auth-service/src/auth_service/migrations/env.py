from auth_service.domain.models import Base
from fm_common.db import run_alembic_env

run_alembic_env(Base.metadata)

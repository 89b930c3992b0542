"""extracted text of images and office documents

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04 23:10:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("evidence_files") as batch:
        batch.add_column(sa.Column("extracted_text", sa.Text(), nullable=True))
        batch.add_column(sa.Column("text_layout", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("evidence_files") as batch:
        batch.drop_column("text_layout")
        batch.drop_column("extracted_text")

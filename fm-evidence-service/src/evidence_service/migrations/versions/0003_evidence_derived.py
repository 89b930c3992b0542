"""evidence derived from a file by the agent

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04 23:00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "evidence_derived",
        sa.Column("evidence_id", sa.String(length=64), nullable=False),
        sa.Column("file_id", sa.String(length=36), nullable=False),
        sa.Column("owner_id", sa.String(length=64), nullable=False),
        sa.Column("case_id", sa.String(length=64), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("category", sa.String(length=32), nullable=False),
        sa.Column("source_type", sa.String(length=20), nullable=False),
        sa.Column("collected_at_turn", sa.Integer(), nullable=False),
        sa.Column("primary_purpose", sa.Text(), nullable=True),
        sa.Column("related_hypothesis_ids", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("evidence_id", name=op.f("pk_evidence_derived")),
    )
    op.create_index("ix_evidence_derived_file", "evidence_derived", ["file_id"])


def downgrade() -> None:
    op.drop_index("ix_evidence_derived_file", table_name="evidence_derived")
    op.drop_table("evidence_derived")

"""Comparisons of two completed jobs.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-08 09:00:00.000000+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "comparisons",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("owner_id", sa.String(length=32), nullable=True),
        sa.Column("job_a_id", sa.String(length=32), nullable=False),
        sa.Column("job_b_id", sa.String(length=32), nullable=False),
        sa.Column("iou_threshold", sa.Float(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("summary", JSON, nullable=False),
        sa.Column("images", JSON, nullable=False),
        sa.Column("unpaired", JSON, nullable=False),
        sa.ForeignKeyConstraint(
            ["owner_id"],
            ["users.id"],
            name=op.f("fk_comparisons_owner_id_users"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["job_a_id"], ["jobs.id"], name=op.f("fk_comparisons_job_a_id_jobs"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["job_b_id"], ["jobs.id"], name=op.f("fk_comparisons_job_b_id_jobs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_comparisons")),
    )
    with op.batch_alter_table("comparisons", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_comparisons_owner_id"), ["owner_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_comparisons_job_a_id"), ["job_a_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_comparisons_job_b_id"), ["job_b_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("comparisons", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_comparisons_job_b_id"))
        batch_op.drop_index(batch_op.f("ix_comparisons_job_a_id"))
        batch_op.drop_index(batch_op.f("ix_comparisons_owner_id"))
    op.drop_table("comparisons")

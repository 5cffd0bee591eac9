"""The model and rules registry (assets, asset_versions); jobs record what they ran.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30 11:00:00.000000+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "assets",
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("default_version", sa.String(length=32), nullable=True),
        sa.Column("routing", JSON, nullable=True),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("updated_at", WHEN, nullable=False),
        sa.PrimaryKeyConstraint("kind", "name", name=op.f("pk_assets")),
    )
    op.create_table(
        "asset_versions",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("version", sa.String(length=32), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("format", sa.String(length=8), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("storage_key", sa.String(length=255), nullable=False),
        sa.Column("meta", JSON, nullable=False),
        sa.Column("export", JSON, nullable=True),
        sa.Column("created_by", sa.String(length=32), nullable=True),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("deprecated_at", WHEN, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_asset_versions")),
        sa.UniqueConstraint("kind", "name", "version", name=op.f("uq_asset_versions_kind")),
    )
    with op.batch_alter_table("asset_versions", schema=None) as batch_op:
        batch_op.create_index("ix_asset_versions_kind_sha256", ["kind", "sha256"], unique=False)
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("model_version", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("model_ref", JSON, nullable=True))
        batch_op.add_column(sa.Column("rules_ref", JSON, nullable=True))
        batch_op.create_index(
            "ix_jobs_model_name_model_version", ["model_name", "model_version"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_model_name_model_version")
        batch_op.drop_column("rules_ref")
        batch_op.drop_column("model_ref")
        batch_op.drop_column("model_version")
    with op.batch_alter_table("asset_versions", schema=None) as batch_op:
        batch_op.drop_index("ix_asset_versions_kind_sha256")
    op.drop_table("asset_versions")
    op.drop_table("assets")

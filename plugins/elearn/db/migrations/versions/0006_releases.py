"""releases: the desired state of what serves a model's traffic

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29
"""
import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "releases",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("model", sa.String(256), nullable=False),
        sa.Column("stable_version", sa.Integer, nullable=True),
        sa.Column("canary_version", sa.Integer, nullable=False),
        sa.Column("canary_weight", sa.Integer, nullable=False),
        sa.Column("gates", sa.JSON, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("history", sa.JSON, nullable=False),
    )
    op.create_index("ix_releases_model", "releases", ["model"])


def downgrade() -> None:
    op.drop_table("releases")

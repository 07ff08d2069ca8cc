"""study revisions: each write to a study's trials is numbered, so a process catches up by reading what changed

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""
import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("studies", sa.Column("revision", sa.Integer, nullable=False, server_default="0"))
    op.add_column("trials", sa.Column("revision", sa.Integer, nullable=False, server_default="0"))
    op.create_index("ix_trials_study_revision", "trials", ["study_id", "revision"])


def downgrade() -> None:
    op.drop_index("ix_trials_study_revision", table_name="trials")
    with op.batch_alter_table("trials") as batch:
        batch.drop_column("revision")
    with op.batch_alter_table("studies") as batch:
        batch.drop_column("revision")

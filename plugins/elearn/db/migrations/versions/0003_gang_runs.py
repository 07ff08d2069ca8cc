"""gang runs and their restarts

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gang_runs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("gang", sa.String(64), nullable=False),
        sa.Column("driver", sa.String(32), nullable=False),
        sa.Column("backend", sa.String(32), nullable=True),
        sa.Column("team", sa.String(64), nullable=False),
        sa.Column("workers", sa.Integer, nullable=False),
        sa.Column("cpu", sa.Float, nullable=False),
        sa.Column("memory", sa.String(32), nullable=False),
        sa.Column("gpu", sa.Integer, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("restart_count", sa.Integer, nullable=False),
        sa.Column("max_restarts", sa.Integer, nullable=False),
        sa.Column("run_prefix", sa.String(512), nullable=False),
        sa.Column("dag_id", sa.String(250), nullable=True),
        sa.Column("dag_run_id", sa.String(250), nullable=True),
        sa.Column("task_id", sa.String(250), nullable=True),
        sa.Column("try_number", sa.Integer, nullable=True),
        sa.Column("owner", sa.String(128), nullable=False),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("gpu_seconds", sa.Float, nullable=False),
        sa.Column("gpu_util_mean", sa.Float, nullable=True),
        sa.Column("cpu_seconds", sa.Float, nullable=False),
        sa.Column("usage", sa.JSON, nullable=False),
        sa.Column("error", sa.Text, nullable=True),
    )
    op.create_index("ix_gang_runs_gang", "gang_runs", ["gang"])
    op.create_index("ix_gang_runs_team", "gang_runs", ["team"])
    op.create_index("ix_gang_runs_state", "gang_runs", ["state"])
    op.create_table(
        "gang_restarts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("gang_run_id", sa.Integer, sa.ForeignKey("gang_runs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("cause", sa.Text, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_gang_restarts_gang_run_id", "gang_restarts", ["gang_run_id"])


def downgrade() -> None:
    op.drop_table("gang_restarts")
    op.drop_table("gang_runs")

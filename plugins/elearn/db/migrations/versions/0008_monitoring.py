"""monitoring: per-feature drift of datastore snapshots, and models' live quality per day

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""
import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "datastore_drift",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("datastore", sa.String(128), nullable=False, index=True),
        sa.Column("snapshot_id", sa.BigInteger, nullable=False),
        sa.Column("reference_snapshot_id", sa.BigInteger, nullable=False),
        sa.Column("model_name", sa.String(128), nullable=True),
        sa.Column("model_version", sa.Integer, nullable=True),
        sa.Column("threshold", sa.Float, nullable=False),
        sa.Column("max_psi", sa.Float, nullable=False),
        sa.Column("drifted", sa.JSON, nullable=False),
        sa.Column("features", sa.JSON, nullable=False),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("datastore", "snapshot_id", "reference_snapshot_id", name="uq_drift"),
    )
    op.create_table(
        "model_live_metrics",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("model_name", sa.String(128), nullable=False, index=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("day", sa.String(10), nullable=False),
        sa.Column("rows", sa.BigInteger, nullable=False),
        sa.Column("positives", sa.BigInteger, nullable=False),
        sa.Column("auc", sa.Float, nullable=True),
        sa.Column("training_auc", sa.Float, nullable=True),
        sa.Column("predictions_snapshot_id", sa.BigInteger, nullable=False),
        sa.Column("labels_snapshot_id", sa.BigInteger, nullable=False),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("model_name", "version", "day", name="uq_live_metric"),
    )


def downgrade() -> None:
    op.drop_table("model_live_metrics")
    op.drop_table("datastore_drift")

"""datastore snapshots: the expiry a snapshot is in (EXPIRING while a run removes it, then EXPIRED)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""
import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("datastore_snapshots") as batch:
        batch.add_column(sa.Column("expiry", sa.String(16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("datastore_snapshots") as batch:
        batch.drop_column("expiry")

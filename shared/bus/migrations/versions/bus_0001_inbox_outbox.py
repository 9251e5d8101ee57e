"""Bus inbox and outbox.

Revision ID: bus_0001
Revises:
"""

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = "bus_0001"
down_revision = None
branch_labels = None
depends_on = None

# Tables a database created by create_all (before this chain) already has: it is adopted.
ADOPT_IF_EXISTS = ("bus_inbox", "bus_outbox")


def upgrade() -> None:
    op.create_table(
        "bus_inbox",
        sa.Column("consumer", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("event_id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column("event_type", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("handled_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("consumer", "event_id"),
    )
    op.create_table(
        "bus_outbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("topic", sqlmodel.sql.sqltypes.AutoString(length=249), nullable=False),
        sa.Column("key", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True),
        sa.Column("event_id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column("value", sa.LargeBinary(), nullable=False),
        sa.Column("headers", sa.JSON(), nullable=True),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_bus_outbox_topic"), "bus_outbox", ["topic"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_bus_outbox_topic"), table_name="bus_outbox")
    op.drop_table("bus_outbox")
    op.drop_table("bus_inbox")

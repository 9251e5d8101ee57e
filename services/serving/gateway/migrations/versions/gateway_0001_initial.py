"""Gateway: API keys.

Revision ID: gateway_0001
Revises:
"""

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = "gateway_0001"
down_revision = None
branch_labels = None
depends_on = None

# Tables a database created by create_all (before this chain) already has: it is adopted.
ADOPT_IF_EXISTS = ("gateway_api_keys",)


def upgrade() -> None:
    op.create_table(
        "gateway_api_keys",
        sa.Column("key_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("key_id", sqlmodel.sql.sqltypes.AutoString(length=12), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("role", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("rpm", sa.Integer(), nullable=False),
        sa.Column("tpm", sa.Integer(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("revoked_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("key_hash"),
    )
    op.create_index(
        op.f("ix_gateway_api_keys_key_id"), "gateway_api_keys", ["key_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_gateway_api_keys_key_id"), table_name="gateway_api_keys")
    op.drop_table("gateway_api_keys")

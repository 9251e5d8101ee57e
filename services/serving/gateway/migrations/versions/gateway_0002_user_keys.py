"""Gateway: API keys that sign commands (the holder's public key) and expire.

Revision ID: gateway_0002
Revises: gateway_0001
"""

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = "gateway_0002"
down_revision = "gateway_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # a database made by create_all with today's models and then adopted has them already
    columns = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("gateway_api_keys")}
    with op.batch_alter_table("gateway_api_keys") as batch:
        if "public_key" not in columns:
            batch.add_column(
                sa.Column(
                    "public_key",
                    sqlmodel.sql.sqltypes.AutoString(length=43),
                    nullable=False,
                    server_default="",  # keys so far sign nothing
                )
            )
        if "expires_at" not in columns:
            batch.add_column(
                sa.Column("expires_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True)
            )


def downgrade() -> None:
    with op.batch_alter_table("gateway_api_keys") as batch:
        batch.drop_column("expires_at")
        batch.drop_column("public_key")

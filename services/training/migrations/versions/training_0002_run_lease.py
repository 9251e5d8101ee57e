"""Training: a lease on each run (several processes share the run table).

Revision ID: training_0002
Revises: training_0001
"""

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = "training_0002"
down_revision = "training_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # a database made by create_all from the current models (then adopted) has them already
    columns = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("training_run")}
    if {"lease_owner", "lease_until"} <= columns:
        return
    with op.batch_alter_table("training_run") as batch:
        batch.add_column(
            sa.Column("lease_owner", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=True)
        )
        batch.add_column(
            sa.Column("lease_until", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("training_run") as batch:
        batch.drop_column("lease_until")
        batch.drop_column("lease_owner")

"""Evaluation: a lease on each queued version (several processes share the registry).

Revision ID: evaluation_0002
Revises: evaluation_0001
"""

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = "evaluation_0002"
down_revision = "evaluation_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # a database made by create_all from the current models (then adopted) has them already
    columns = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("eval_model_version")}
    if {"lease_owner", "lease_until"} <= columns:
        return
    with op.batch_alter_table("eval_model_version") as batch:
        batch.add_column(
            sa.Column("lease_owner", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=True)
        )
        batch.add_column(
            sa.Column("lease_until", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("eval_model_version") as batch:
        batch.drop_column("lease_until")
        batch.drop_column("lease_owner")

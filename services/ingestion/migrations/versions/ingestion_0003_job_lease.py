"""Ingestion: a lease on each job (several processes share the job table).

Revision ID: ingestion_0003
Revises: ingestion_0002
"""

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = "ingestion_0003"
down_revision = "ingestion_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # a database made by create_all from the current models (then adopted) has them already
    columns = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("ingestion_job")}
    if {"lease_owner", "lease_until"} <= columns:
        return
    with op.batch_alter_table("ingestion_job") as batch:
        batch.add_column(
            sa.Column("lease_owner", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=True)
        )
        batch.add_column(
            sa.Column("lease_until", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("ingestion_job") as batch:
        batch.drop_column("lease_until")
        batch.drop_column("lease_owner")

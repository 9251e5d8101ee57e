"""Anonymization: KEK rotation (the KEK each subject key is wrapped with, the current one).

Revision ID: anonymization_0003
Revises: anonymization_0002
"""

from datetime import UTC, datetime

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = "anonymization_0003"
down_revision = "anonymization_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    # a database made by create_all with today's models and then adopted has them already
    if "kek_id" not in {c["name"] for c in inspector.get_columns("anon_subject_key")}:
        with op.batch_alter_table("anon_subject_key") as batch:
            batch.add_column(
                sa.Column(
                    "kek_id",
                    sqlmodel.sql.sqltypes.AutoString(length=32),
                    nullable=False,
                    server_default="master",  # every key so far: the master-derived KEK
                )
            )
    if not inspector.has_table("anon_kek_state"):
        op.create_table(
            "anon_kek_state",
            sa.Column("id", sa.Integer(), nullable=False),
            sa.Column("current", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
            sa.Column("rotated_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
            sa.PrimaryKeyConstraint("id"),
        )
    # the row writers lock FOR SHARE: it must exist before any rotation
    state = sa.table(
        "anon_kek_state",
        sa.column("id", sa.Integer()),
        sa.column("current", sa.String()),
        sa.column("rotated_at", sqlmodel.sql.sqltypes.UTCDateTime()),
    )
    if op.get_bind().execute(sa.select(state.c.id).where(state.c.id == 1)).first() is None:
        op.bulk_insert(state, [{"id": 1, "current": "master", "rotated_at": datetime.now(UTC)}])


def downgrade() -> None:
    op.drop_table("anon_kek_state")
    with op.batch_alter_table("anon_subject_key") as batch:
        batch.drop_column("kek_id")

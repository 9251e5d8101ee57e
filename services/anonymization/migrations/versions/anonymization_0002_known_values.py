"""Anonymization: the known-values index (keyed hashes of confidently detected values).

Revision ID: anonymization_0002
Revises: anonymization_0001

The table landed after the initial revision and was created by ``create_all`` until then:
a database that already has it keeps it (nothing to do), any other gets it here.
"""

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = "anonymization_0002"
down_revision = "anonymization_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if "anon_known_value" in sa.inspect(op.get_bind()).get_table_names():
        return
    op.create_table(
        "anon_known_value",
        sa.Column("value_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("entity_type", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("subject_ref", sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
        sa.PrimaryKeyConstraint("value_hash"),
    )
    op.create_index(
        op.f("ix_anon_known_value_subject_ref"),
        "anon_known_value",
        ["subject_ref"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_anon_known_value_subject_ref"), table_name="anon_known_value")
    op.drop_table("anon_known_value")

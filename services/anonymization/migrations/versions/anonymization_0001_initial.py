"""Anonymization: subject keys, vault, erasures, record versions.

Revision ID: anonymization_0001
Revises:
"""

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = "anonymization_0001"
down_revision = None
branch_labels = None
depends_on = None

# Tables a database created by create_all (before this chain) already has: it is adopted.
ADOPT_IF_EXISTS = (
    "anon_erased_subject",
    "anon_key_wrap",
    "anon_record_version",
    "anon_subject_key",
    "anon_vault_record",
    "anon_version_model",
)


def upgrade() -> None:
    op.create_table(
        "anon_erased_subject",
        sa.Column("subject_ref", sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
        sa.Column("request_id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column("erased_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("subject_ref"),
    )
    op.create_table(
        "anon_key_wrap",
        sa.Column("subject_ref", sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
        sa.Column("record_id", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("wrapped", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("subject_ref", "record_id"),
    )
    op.create_index(
        op.f("ix_anon_key_wrap_record_id"), "anon_key_wrap", ["record_id"], unique=False
    )
    op.create_table(
        "anon_record_version",
        sa.Column("record_id", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("dataset", sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
        sa.Column("version", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.PrimaryKeyConstraint("record_id", "dataset", "version"),
    )
    op.create_table(
        "anon_subject_key",
        sa.Column("subject_ref", sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
        sa.Column("wrapped", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("subject_ref"),
    )
    op.create_table(
        "anon_vault_record",
        sa.Column("record_id", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("dataset", sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
        sa.Column("sealed", sa.LargeBinary(), nullable=False),
        sa.Column("entity_types", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("shredded", sa.Boolean(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("record_id"),
    )
    op.create_index(
        op.f("ix_anon_vault_record_dataset"), "anon_vault_record", ["dataset"], unique=False
    )
    op.create_table(
        "anon_version_model",
        sa.Column("dataset", sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
        sa.Column("version", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("model", sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
        sa.PrimaryKeyConstraint("dataset", "version", "model"),
    )


def downgrade() -> None:
    op.drop_table("anon_version_model")
    op.drop_index(op.f("ix_anon_vault_record_dataset"), table_name="anon_vault_record")
    op.drop_table("anon_vault_record")
    op.drop_table("anon_subject_key")
    op.drop_table("anon_record_version")
    op.drop_index(op.f("ix_anon_key_wrap_record_id"), table_name="anon_key_wrap")
    op.drop_table("anon_key_wrap")
    op.drop_table("anon_erased_subject")

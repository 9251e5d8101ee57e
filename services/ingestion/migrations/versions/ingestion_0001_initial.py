"""Ingestion: jobs, dedup index, lineage, versions.

Revision ID: ingestion_0001
Revises:
"""

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = "ingestion_0001"
down_revision = None
branch_labels = None
depends_on = None

# Tables a database created by create_all (before this chain) already has: it is adopted.
ADOPT_IF_EXISTS = (
    "ingestion_anonymized",
    "ingestion_fingerprint",
    "ingestion_job",
    "ingestion_lineage",
    "ingestion_signature",
    "ingestion_version",
    "ingestion_version_member",
)


def upgrade() -> None:
    op.create_table(
        "ingestion_anonymized",
        sa.Column("request_id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column("record_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("batch_index", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("record_json", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("request_id", "record_id"),
    )
    op.create_table(
        "ingestion_fingerprint",
        sa.Column("dataset", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("fingerprint", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("record_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.PrimaryKeyConstraint("dataset", "fingerprint"),
    )
    op.create_index(
        op.f("ix_ingestion_fingerprint_record_id"),
        "ingestion_fingerprint",
        ["record_id"],
        unique=False,
    )
    op.create_table(
        "ingestion_job",
        sa.Column("request_id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column("dataset", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("request_json", sa.Text(), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("batch_index", sa.Integer(), nullable=False),
        sa.Column("spool_offset", sa.Integer(), nullable=False),
        sa.Column("report", sa.JSON(), nullable=True),
        sa.Column("version", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("updated_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("request_id"),
    )
    op.create_index(op.f("ix_ingestion_job_dataset"), "ingestion_job", ["dataset"], unique=False)
    op.create_index(op.f("ix_ingestion_job_status"), "ingestion_job", ["status"], unique=False)
    op.create_table(
        "ingestion_lineage",
        sa.Column("record_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("dataset", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("request_id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("source", sa.Text(), nullable=True),
        sa.Column("line", sa.Integer(), nullable=True),
        sa.Column("duplicate_of", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("similarity", sa.Float(), nullable=True),
        sa.Column("erased", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("record_id"),
    )
    op.create_index(
        op.f("ix_ingestion_lineage_dataset"), "ingestion_lineage", ["dataset"], unique=False
    )
    op.create_index(
        op.f("ix_ingestion_lineage_duplicate_of"),
        "ingestion_lineage",
        ["duplicate_of"],
        unique=False,
    )
    op.create_index(
        op.f("ix_ingestion_lineage_request_id"), "ingestion_lineage", ["request_id"], unique=False
    )
    op.create_table(
        "ingestion_signature",
        sa.Column("record_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("dataset", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("scheme", sqlmodel.sql.sqltypes.AutoString(length=60), nullable=False),
        sa.Column("signature", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("record_id"),
    )
    op.create_index(
        op.f("ix_ingestion_signature_dataset"), "ingestion_signature", ["dataset"], unique=False
    )
    op.create_table(
        "ingestion_version",
        sa.Column("version", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("dataset", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("parent", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("records", sa.Integer(), nullable=False),
        sa.Column("manifest", sa.JSON(), nullable=True),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("version"),
    )
    op.create_index(
        op.f("ix_ingestion_version_dataset"), "ingestion_version", ["dataset"], unique=False
    )
    op.create_table(
        "ingestion_version_member",
        sa.Column("version", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("record_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.PrimaryKeyConstraint("version", "record_id"),
    )
    op.create_index(
        op.f("ix_ingestion_version_member_record_id"),
        "ingestion_version_member",
        ["record_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(
        op.f("ix_ingestion_version_member_record_id"), table_name="ingestion_version_member"
    )
    op.drop_table("ingestion_version_member")
    op.drop_index(op.f("ix_ingestion_version_dataset"), table_name="ingestion_version")
    op.drop_table("ingestion_version")
    op.drop_index(op.f("ix_ingestion_signature_dataset"), table_name="ingestion_signature")
    op.drop_table("ingestion_signature")
    op.drop_index(op.f("ix_ingestion_lineage_request_id"), table_name="ingestion_lineage")
    op.drop_index(op.f("ix_ingestion_lineage_duplicate_of"), table_name="ingestion_lineage")
    op.drop_index(op.f("ix_ingestion_lineage_dataset"), table_name="ingestion_lineage")
    op.drop_table("ingestion_lineage")
    op.drop_index(op.f("ix_ingestion_job_status"), table_name="ingestion_job")
    op.drop_index(op.f("ix_ingestion_job_dataset"), table_name="ingestion_job")
    op.drop_table("ingestion_job")
    op.drop_index(op.f("ix_ingestion_fingerprint_record_id"), table_name="ingestion_fingerprint")
    op.drop_table("ingestion_fingerprint")
    op.drop_table("ingestion_anonymized")

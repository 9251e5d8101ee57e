"""Ingestion: dataset versions moved to labeling (the curator).

Drops the anonymized copies of requests waiting for a version (``ingestion_anonymized``),
the version tables (``ingestion_version``, ``ingestion_version_member``) and the job's
``version`` column. Versions cut before stay in the artifact store and on the
``dataset.versioned`` topic; labeling lists the ones it cuts in its erasure answers.

Revision ID: ingestion_0002
Revises: ingestion_0001
"""

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = "ingestion_0002"
down_revision = "ingestion_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index(
        op.f("ix_ingestion_version_member_record_id"), table_name="ingestion_version_member"
    )
    op.drop_table("ingestion_version_member")
    op.drop_index(op.f("ix_ingestion_version_dataset"), table_name="ingestion_version")
    op.drop_table("ingestion_version")
    op.drop_table("ingestion_anonymized")
    with op.batch_alter_table("ingestion_job") as batch:
        batch.drop_column("version")


def downgrade() -> None:
    with op.batch_alter_table("ingestion_job") as batch:
        batch.add_column(sa.Column("version", sqlmodel.sql.sqltypes.AutoString(), nullable=True))
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

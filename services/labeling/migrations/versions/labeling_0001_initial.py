"""Labeling: projects, records, tasks, annotations, leases, annotators, cuts.

Revision ID: labeling_0001
Revises:
"""

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = "labeling_0001"
down_revision = None
branch_labels = None
depends_on = None

# Tables a database created by create_all (before this chain) already has: it is adopted.
ADOPT_IF_EXISTS = (
    "labeling_annotation",
    "labeling_annotator",
    "labeling_cut",
    "labeling_ingest_wait",
    "labeling_lease",
    "labeling_project",
    "labeling_record",
    "labeling_skip",
    "labeling_task",
)


def upgrade() -> None:
    op.create_table(
        "labeling_annotation",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("task_id", sa.Integer(), nullable=False),
        sa.Column("project", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("annotator", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("label", sa.JSON(), nullable=True),
        sa.Column("label_key", sa.Text(), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=True),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("task_id", "annotator"),
    )
    op.create_index(
        op.f("ix_labeling_annotation_project"), "labeling_annotation", ["project"], unique=False
    )
    op.create_index(
        op.f("ix_labeling_annotation_task_id"), "labeling_annotation", ["task_id"], unique=False
    )
    op.create_table(
        "labeling_annotator",
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("key_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("role", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("revoked", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
        sa.UniqueConstraint("key_hash"),
    )
    op.create_table(
        "labeling_cut",
        sa.Column("version", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("dataset", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("project", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("parent", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("records", sa.Integer(), nullable=False),
        sa.Column("labeled", sa.Boolean(), nullable=False),
        sa.Column("record_ids", sa.JSON(), nullable=True),
        sa.Column("manifest_claim", sa.Text(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("version"),
    )
    op.create_index(op.f("ix_labeling_cut_dataset"), "labeling_cut", ["dataset"], unique=False)
    op.create_table(
        "labeling_ingest_wait",
        sa.Column("request_id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column("dataset", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("request_json", sa.Text(), nullable=False),
        sa.Column("expected", sa.Integer(), nullable=True),
        sa.Column("failed", sa.Boolean(), nullable=False),
        sa.Column("version", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.PrimaryKeyConstraint("request_id"),
    )
    op.create_table(
        "labeling_lease",
        sa.Column("task_id", sa.Integer(), nullable=False),
        sa.Column("annotator", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("expires_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("task_id", "annotator"),
    )
    op.create_table(
        "labeling_project",
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("finals_since_cut", sa.Integer(), nullable=False),
        sa.Column("last_version", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "labeling_record",
        sa.Column("dataset", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("record_id", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("meta", sa.JSON(), nullable=True),
        sa.Column("entities", sa.JSON(), nullable=True),
        sa.Column("subjects", sa.JSON(), nullable=True),
        sa.Column("source_id", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.Column("request_id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=True),
        sa.Column("batch_index", sa.Integer(), nullable=False),
        sa.Column("erased", sa.Boolean(), nullable=False),
        sa.Column("received_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("dataset", "record_id"),
    )
    op.create_index(
        op.f("ix_labeling_record_request_id"), "labeling_record", ["request_id"], unique=False
    )
    op.create_table(
        "labeling_skip",
        sa.Column("task_id", sa.Integer(), nullable=False),
        sa.Column("annotator", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.PrimaryKeyConstraint("task_id", "annotator"),
    )
    op.create_table(
        "labeling_task",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("dataset", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("record_id", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("needed", sa.Integer(), nullable=False),
        sa.Column("answers", sa.Integer(), nullable=False),
        sa.Column("suggestion", sa.JSON(), nullable=True),
        sa.Column("confidence", sa.Float(), nullable=True),
        sa.Column("suggestion_source", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.Column("priority", sa.Float(), nullable=False),
        sa.Column("prefill", sa.Text(), nullable=True),
        sa.Column("final_label", sa.JSON(), nullable=True),
        sa.Column("provenance", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.Column("finalized_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("project", "dataset", "record_id"),
    )
    op.create_index(
        "ix_labeling_task_queue", "labeling_task", ["project", "status", "priority"], unique=False
    )
    op.create_index(
        op.f("ix_labeling_task_record_id"), "labeling_task", ["record_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_labeling_task_record_id"), table_name="labeling_task")
    op.drop_index("ix_labeling_task_queue", table_name="labeling_task")
    op.drop_table("labeling_task")
    op.drop_table("labeling_skip")
    op.drop_index(op.f("ix_labeling_record_request_id"), table_name="labeling_record")
    op.drop_table("labeling_record")
    op.drop_table("labeling_project")
    op.drop_table("labeling_lease")
    op.drop_table("labeling_ingest_wait")
    op.drop_index(op.f("ix_labeling_cut_dataset"), table_name="labeling_cut")
    op.drop_table("labeling_cut")
    op.drop_table("labeling_annotator")
    op.drop_index(op.f("ix_labeling_annotation_task_id"), table_name="labeling_annotation")
    op.drop_index(op.f("ix_labeling_annotation_project"), table_name="labeling_annotation")
    op.drop_table("labeling_annotation")

"""Labeling: the lineage ingestion reports (``IngestCompleted.lineage``), kept per record.

Labeling cuts the unlabeled versions now; a version's lineage names each record's source,
line and dropped duplicates, which only ingestion knew. No text is stored.

Revision ID: labeling_0002
Revises: labeling_0001
"""

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = "labeling_0002"
down_revision = "labeling_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "labeling_lineage",
        sa.Column("record_id", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("dataset", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("request_id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("source", sa.Text(), nullable=True),
        sa.Column("line", sa.Integer(), nullable=True),
        sa.Column("duplicate_of", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.Column("similarity", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("record_id"),
    )
    for column in ("dataset", "request_id", "duplicate_of"):
        op.create_index(
            op.f(f"ix_labeling_lineage_{column}"), "labeling_lineage", [column], unique=False
        )


def downgrade() -> None:
    for column in ("dataset", "request_id", "duplicate_of"):
        op.drop_index(op.f(f"ix_labeling_lineage_{column}"), table_name="labeling_lineage")
    op.drop_table("labeling_lineage")

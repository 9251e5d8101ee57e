"""Labeling: the questions put to the served model (model suggestions), one per task.

Revision ID: labeling_0003
Revises: labeling_0002
"""

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = "labeling_0003"
down_revision = "labeling_0002"
branch_labels = None
depends_on = None

INDEXED = ("project", "reply_to", "state")


def upgrade() -> None:
    op.create_table(
        "labeling_model_ask",
        sa.Column("task_id", sa.Integer(), nullable=False),
        sa.Column("project", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("request_id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column("reply_to", sqlmodel.sql.sqltypes.AutoString(length=249), nullable=False),
        sa.Column("model", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("state", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("asked_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("answered_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("label", sa.JSON(), nullable=True),
        sa.Column("confidence", sa.Float(), nullable=True),
        sa.Column("model_version", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.Column("outcome", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.PrimaryKeyConstraint("task_id"),
        sa.UniqueConstraint("request_id"),
    )
    for column in INDEXED:
        op.create_index(
            op.f(f"ix_labeling_model_ask_{column}"), "labeling_model_ask", [column], unique=False
        )


def downgrade() -> None:
    for column in INDEXED:
        op.drop_index(op.f(f"ix_labeling_model_ask_{column}"), table_name="labeling_model_ask")
    op.drop_table("labeling_model_ask")

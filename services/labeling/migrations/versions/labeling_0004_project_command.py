"""Labeling: outcomes of the signed project commands (``LabelingProjectRequested``).

Revision ID: labeling_0004
Revises: labeling_0003
"""

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = "labeling_0004"
down_revision = "labeling_0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "labeling_project_command",
        sa.Column("command_id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column("project", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("actor", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("created", sa.Boolean(), nullable=False),
        sa.Column("tasks_added", sa.Integer(), nullable=False),
        sa.Column("error", sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=True),
        sa.Column("applied_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("command_id"),
    )
    op.create_index(
        op.f("ix_labeling_project_command_project"),
        "labeling_project_command",
        ["project"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(
        op.f("ix_labeling_project_command_project"), table_name="labeling_project_command"
    )
    op.drop_table("labeling_project_command")

"""Training: runs, model versions, retraining policy.

Revision ID: training_0001
Revises:
"""

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = "training_0001"
down_revision = None
branch_labels = None
depends_on = None

# Optuna's RDB storage (the tuning studies, in this same database) keeps its own Alembic
# history in `alembic_version`: this chain's is kept apart.
VERSION_TABLE = "alembic_version_training"

# Tables a database created by create_all (before this chain) already has: it is adopted.
ADOPT_IF_EXISTS = (
    "training_policy",
    "training_run",
    "training_version",
)


def upgrade() -> None:
    op.create_table(
        "training_policy",
        sa.Column("dataset", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("mode", sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
        sa.Column("request_json", sa.Text(), nullable=False),
        sa.Column("updated_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("dataset"),
    )
    op.create_table(
        "training_run",
        sa.Column("run_id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column("model_name", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("dataset", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("request_json", sa.Text(), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("model_version", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("updated_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("run_id"),
    )
    op.create_index(op.f("ix_training_run_dataset"), "training_run", ["dataset"], unique=False)
    op.create_index(
        op.f("ix_training_run_model_name"), "training_run", ["model_name"], unique=False
    )
    op.create_index(op.f("ix_training_run_status"), "training_run", ["status"], unique=False)
    op.create_table(
        "training_version",
        sa.Column("dataset", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("version", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("labeled", sa.Boolean(), nullable=False),
        sa.Column("records", sa.Integer(), nullable=False),
        sa.Column("manifest_json", sa.Text(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("dataset", "version"),
    )


def downgrade() -> None:
    op.drop_table("training_version")
    op.drop_index(op.f("ix_training_run_status"), table_name="training_run")
    op.drop_index(op.f("ix_training_run_model_name"), table_name="training_run")
    op.drop_index(op.f("ix_training_run_dataset"), table_name="training_run")
    op.drop_table("training_run")
    op.drop_table("training_policy")

"""Evaluation: model registry, aliases and their history, dataset versions.

Revision ID: evaluation_0001
Revises:
"""

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = "evaluation_0001"
down_revision = None
branch_labels = None
depends_on = None

# Tables a database created by create_all (before this chain) already has: it is adopted.
ADOPT_IF_EXISTS = (
    "eval_alias",
    "eval_alias_history",
    "eval_dataset_version",
    "eval_model_version",
)


def upgrade() -> None:
    op.create_table(
        "eval_alias",
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("alias", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("version", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("traffic_share", sa.Float(), nullable=False),
        sa.Column("updated_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name", "alias"),
    )
    op.create_table(
        "eval_alias_history",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("alias", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("version", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("previous", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("action", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("actor", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        op.f("ix_eval_alias_history_name"), "eval_alias_history", ["name"], unique=False
    )
    op.create_table(
        "eval_dataset_version",
        sa.Column("dataset", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("version", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("manifest_json", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.PrimaryKeyConstraint("dataset", "version"),
    )
    op.create_table(
        "eval_model_version",
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("version", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("source", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("artifact_json", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("run_id", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("dataset", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("dataset_version", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("train_metrics_json", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("registered_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("evaluated_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("passed", sa.Boolean(), nullable=True),
        sa.Column("scores_json", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("verdicts_json", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("compared_with", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("report_json", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("report_html_json", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("card_json", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("error", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("correlation_id", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("name", "version"),
    )
    op.create_index(
        op.f("ix_eval_model_version_status"), "eval_model_version", ["status"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_eval_model_version_status"), table_name="eval_model_version")
    op.drop_table("eval_model_version")
    op.drop_table("eval_dataset_version")
    op.drop_index(op.f("ix_eval_alias_history_name"), table_name="eval_alias_history")
    op.drop_table("eval_alias_history")
    op.drop_table("eval_alias")

"""Monitoring: drift, alerts, decisions, models, timeline, training points, labeling.

Revision ID: monitoring_0001
Revises:
"""

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = "monitoring_0001"
down_revision = None
branch_labels = None
depends_on = None

# Tables a database created by create_all (before this chain) already has: it is adopted.
ADOPT_IF_EXISTS = (
    "monitoring_alerts",
    "monitoring_decisions",
    "monitoring_drift",
    "monitoring_labeling",
    "monitoring_models",
    "monitoring_timeline",
    "monitoring_training_points",
)


def upgrade() -> None:
    op.create_table(
        "monitoring_alerts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("severity", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("summary", sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_monitoring_alerts_at"), "monitoring_alerts", ["at"], unique=False)
    op.create_table(
        "monitoring_decisions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("model_name", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("trigger", sqlmodel.sql.sqltypes.AutoString(length=50), nullable=False),
        sa.Column("outcome", sqlmodel.sql.sqltypes.AutoString(length=50), nullable=False),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=False),
        sa.Column(
            "training_request_id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=True
        ),
        sa.Column("approved_by", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        op.f("ix_monitoring_decisions_at"), "monitoring_decisions", ["at"], unique=False
    )
    op.create_index(
        op.f("ix_monitoring_decisions_model_name"),
        "monitoring_decisions",
        ["model_name"],
        unique=False,
    )
    op.create_index(
        op.f("ix_monitoring_decisions_outcome"), "monitoring_decisions", ["outcome"], unique=False
    )
    op.create_table(
        "monitoring_drift",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("model_name", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("model_version", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("window", sa.Integer(), nullable=False),
        sa.Column("feature", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("method", sqlmodel.sql.sqltypes.AutoString(length=50), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("p_value", sa.Float(), nullable=True),
        sa.Column("drifted", sa.Boolean(), nullable=False),
        sa.Column("evidence", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_monitoring_drift_at"), "monitoring_drift", ["at"], unique=False)
    op.create_index(
        op.f("ix_monitoring_drift_model_name"), "monitoring_drift", ["model_name"], unique=False
    )
    op.create_table(
        "monitoring_labeling",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("dataset", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("agreement", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_monitoring_labeling_at"), "monitoring_labeling", ["at"], unique=False)
    op.create_table(
        "monitoring_models",
        sa.Column("model_name", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("dataset", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.Column("dataset_version", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.Column("base_model", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True),
        sa.Column("champion", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.Column("new_labels", sa.Integer(), nullable=False),
        sa.Column("last_fired_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("model_name"),
    )
    op.create_table(
        "monitoring_timeline",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("model_name", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("model_version", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=50), nullable=False),
        sa.Column("detail", sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_monitoring_timeline_at"), "monitoring_timeline", ["at"], unique=False)
    op.create_table(
        "monitoring_training_points",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("total_steps", sa.Integer(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        op.f("ix_monitoring_training_points_run_id"),
        "monitoring_training_points",
        ["run_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(
        op.f("ix_monitoring_training_points_run_id"), table_name="monitoring_training_points"
    )
    op.drop_table("monitoring_training_points")
    op.drop_index(op.f("ix_monitoring_timeline_at"), table_name="monitoring_timeline")
    op.drop_table("monitoring_timeline")
    op.drop_table("monitoring_models")
    op.drop_index(op.f("ix_monitoring_labeling_at"), table_name="monitoring_labeling")
    op.drop_table("monitoring_labeling")
    op.drop_index(op.f("ix_monitoring_drift_model_name"), table_name="monitoring_drift")
    op.drop_index(op.f("ix_monitoring_drift_at"), table_name="monitoring_drift")
    op.drop_table("monitoring_drift")
    op.drop_index(op.f("ix_monitoring_decisions_outcome"), table_name="monitoring_decisions")
    op.drop_index(op.f("ix_monitoring_decisions_model_name"), table_name="monitoring_decisions")
    op.drop_index(op.f("ix_monitoring_decisions_at"), table_name="monitoring_decisions")
    op.drop_table("monitoring_decisions")
    op.drop_index(op.f("ix_monitoring_alerts_at"), table_name="monitoring_alerts")
    op.drop_table("monitoring_alerts")

"""Audit: the hash-chained entries, append-only (triggers refuse UPDATE and DELETE).

Revision ID: audit_0001
Revises:
"""

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = "audit_0001"
down_revision = None
branch_labels = None
depends_on = None

# The guards services/audit/adapters/store.py attaches to create_all: a table made here
# must refuse rewrites just the same (a database adopted from create_all has them).
SQLITE_GUARDS = [
    f"CREATE TRIGGER IF NOT EXISTS audit_entry_no_{verb.lower()} BEFORE {verb} ON audit_entry "
    "BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END"
    for verb in ("UPDATE", "DELETE")
]
PG_GUARD = [
    "CREATE OR REPLACE FUNCTION audit_entry_append_only() RETURNS trigger AS $$ "
    "BEGIN RAISE EXCEPTION 'the audit trail is append-only'; END $$ LANGUAGE plpgsql",
    "CREATE TRIGGER audit_entry_append_only BEFORE UPDATE OR DELETE ON audit_entry "
    "FOR EACH ROW EXECUTE FUNCTION audit_entry_append_only()",
]

# Tables a database created by create_all (before this chain) already has: it is adopted.
ADOPT_IF_EXISTS = ("audit_entry",)


def upgrade() -> None:
    op.create_table(
        "audit_entry",
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("event_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("occurred_at", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("producer", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("action", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("actor", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("allowed", sa.Boolean(), nullable=False),
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("details_json", sa.Text(), nullable=False),
        sa.Column("prev_hash", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("hash", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
    )
    op.create_index(op.f("ix_audit_entry_action"), "audit_entry", ["action"], unique=False)
    op.create_index(op.f("ix_audit_entry_actor"), "audit_entry", ["actor"], unique=False)
    op.create_index(op.f("ix_audit_entry_event_id"), "audit_entry", ["event_id"], unique=True)
    dialect = op.get_bind().dialect.name
    for statement in SQLITE_GUARDS if dialect == "sqlite" else PG_GUARD:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_entry_append_only ON audit_entry")
        op.execute("DROP FUNCTION IF EXISTS audit_entry_append_only()")
    op.drop_index(op.f("ix_audit_entry_event_id"), table_name="audit_entry")
    op.drop_index(op.f("ix_audit_entry_actor"), table_name="audit_entry")
    op.drop_index(op.f("ix_audit_entry_action"), table_name="audit_entry")
    op.drop_table("audit_entry")

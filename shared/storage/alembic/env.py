"""Alembic environment shared by every migration chain (shared/storage/migrations.py).

The caller hands over an open connection (search_path already on the service's schema) and
the chain's version table; nothing here reads alembic.ini or the environment.
"""

from alembic import context

config = context.config
connection = config.attributes["connection"]
context.configure(
    connection=connection,
    version_table=config.attributes["version_table"],
    render_as_batch=connection.dialect.name == "sqlite",
    transaction_per_migration=False,
)
with context.begin_transaction():
    context.run_migrations()

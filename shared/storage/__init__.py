"""Storage: the content-addressed artifact store and the sqlmodel engine factory.

The engine factory (``shared.storage.db``: sqlalchemy, sqlmodel) is imported when first
used: the CLI, which reads artifacts but opens no database, starts without it.
"""

from typing import TYPE_CHECKING, Any

from shared.storage.artifacts import ArtifactIntegrityError, ArtifactStore

if TYPE_CHECKING:
    from shared.storage.db import engine_for, make_engine, schema_name

__all__ = ["ArtifactIntegrityError", "ArtifactStore", "engine_for", "make_engine", "schema_name"]
_DB = ("engine_for", "make_engine", "schema_name")


def __getattr__(name: str) -> Any:
    if name in _DB:
        from shared.storage import db

        return getattr(db, name)
    raise AttributeError(f"module 'shared.storage' has no attribute {name!r}")

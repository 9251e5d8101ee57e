"""Storage: the content-addressed artifact store and the sqlmodel engine factory."""

from shared.storage.artifacts import ArtifactIntegrityError, ArtifactStore
from shared.storage.db import engine_for, make_engine, schema_name

__all__ = ["ArtifactIntegrityError", "ArtifactStore", "engine_for", "make_engine", "schema_name"]

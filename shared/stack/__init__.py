"""The embedded stack: broker, process supervisor, read-only views of a running stack."""

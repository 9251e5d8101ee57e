"""The embedded stack: broker, service catalogue, process supervisor."""

"""The ingestion service: sources in; clean, deduplicated, traceable record batches out."""

"""Adapters of the ingestion service: readers (fsspec), store (sqlmodel), language id."""

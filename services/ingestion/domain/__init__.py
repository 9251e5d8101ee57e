"""Pure ingestion logic: cleaning, dedup, the per-row pipeline."""

"""Anonymization: Presidio detection, consistent keyed pseudonyms, a per-subject vault, erasure."""

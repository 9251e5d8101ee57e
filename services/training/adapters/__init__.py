"""Adapters of the training service: its tables, the artifact packaging."""

"""Implementations of the anonymization ports."""

"""Adapters of the gateway ports: the SQL key store, the Kafka reply router."""

"""Implementations of the serving ports: vLLM, Kafka replies, model sources, key store."""

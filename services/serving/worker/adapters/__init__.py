"""Adapters of the worker ports: vLLM, the Kafka reply sink, model sources, state."""

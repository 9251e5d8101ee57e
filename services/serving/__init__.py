"""Serving: vLLM workers and the OpenAI-compatible HTTP gateway, talking over Kafka."""

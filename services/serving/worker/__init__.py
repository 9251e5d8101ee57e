"""The serving worker process: vLLM engines fed by Kafka."""

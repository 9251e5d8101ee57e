"""The HTTP gateway process: the OpenAI API in front of the workers, over Kafka."""

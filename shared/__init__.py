"""llmops platform SDK: events, topics, bus, settings, storage, telemetry and the CLI."""

__version__ = "0.1.0"

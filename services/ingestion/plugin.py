"""The ingestion service as a platform plug-in (entry point ``llmops.services``)."""

from shared.plugins import ProcessSpec, ServicePlugin
from shared.topics import Topic

PLUGIN = ServicePlugin(
    name="ingestion",
    description="Reads sources, cleans, deduplicates; reports lineage.",
    order=10,
    processes=(
        ProcessSpec("ingestion", "ingestion", "services.ingestion", 9101, "LLMOPS_INGESTION_PORT"),
    ),
    # API keys: its bus checks commands signed with users' own keys against the registry
    consumes=(Topic.INGEST_REQUESTED, Topic.ERASURE_COMPLETED, Topic.API_KEYS),
    produces=(
        Topic.RECORDS_INGESTED,
        Topic.INGEST_PROGRESSED,
        Topic.INGEST_COMPLETED,
        Topic.ERASURE_COMPLETED,
    ),
    cli="services.ingestion.cli:register",
    demo="services.ingestion.demo:run",
)

"""The anonymization service as a platform plug-in (entry point ``llmops.services``)."""

from shared.plugins import ProcessSpec, ServicePlugin
from shared.topics import Topic

PLUGIN = ServicePlugin(
    name="anonymization",
    description="Presidio PII detection, keyed pseudonyms, per-subject vault, erasure.",
    order=20,
    processes=(
        ProcessSpec(
            "anonymization",
            "anonymization",
            "services.anonymization",
            9102,
            "LLMOPS_ANONYMIZATION_PORT",
            # `up --scale`: the de-anonymization API (one port) stays on the first process
            replica_env=(("LLMOPS_ANONYMIZATION_API_PORT", "0"),),
        ),
    ),
    consumes=(
        Topic.RECORDS_INGESTED,
        Topic.INFERENCE_COMPLETED,
        Topic.FEEDBACK_RECEIVED,
        Topic.ERASURE_REQUESTED,
        Topic.DATASET_VERSIONED,
        Topic.MODEL_TRAINED,
        Topic.API_KEYS,  # the API key registry its HTTP API checks keys against
    ),
    produces=(
        Topic.RECORDS_ANONYMIZED,
        Topic.ERASURE_REQUESTED,
        Topic.ERASURE_COMPLETED,
        Topic.AUDIT_RECORDED,
    ),
    cli="services.anonymization.cli:register",
    demo="services.anonymization.demo:run",
)

"""The labeling service as a platform plug-in (entry point ``llmops.services``)."""

from shared.plugins import ProcessSpec, ServicePlugin
from shared.topics import Topic

PLUGIN = ServicePlugin(
    name="labeling",
    description="Annotation UI and API, auto-labels by confidence, agreement, dataset versions.",
    order=30,
    processes=(
        ProcessSpec(
            "labeling",
            "labeling",
            "services.labeling",
            8100,
            "LLMOPS_LABELING_PORT",
            serves_api=True,
            # `up --scale`: each process reads the model's suggestions on a reply topic of its own
            replica_env=(("LLMOPS_LABELING_SUGGEST_REPLY_ID", "labeling-{replica}"),),
        ),
    ),
    consumes=(
        Topic.RECORDS_ANONYMIZED,
        Topic.INGEST_REQUESTED,
        Topic.INGEST_COMPLETED,
        Topic.ERASURE_COMPLETED,
        Topic.LABELING_PROJECT_REQUESTED,  # signed project changes (CLI, its own API)
        Topic.API_KEYS,  # the API key registry its HTTP API checks keys against
    ),
    produces=(
        Topic.RECORDS_LABELED,
        Topic.DATASET_VERSIONED,
        Topic.ERASURE_COMPLETED,
        Topic.AUDIT_RECORDED,
        Topic.INFERENCE_REQUESTED,  # model suggestions, answered by the serving workers
        Topic.LABELING_PROJECT_REQUESTED,  # its API signs project changes for its callers
    ),
    # its own inference reply topic(s): llmops.inference.replies.labeling[...]
    topic_prefixes=("llmops.inference.replies.labeling",),
    cli="services.labeling.cli:register",
    demo="services.labeling.demo:run",
)

"""The evaluation service as a platform plug-in: evaluation, gates and the model registry."""

from shared.plugins import ProcessSpec, ServicePlugin
from shared.topics import Topic

PLUGIN = ServicePlugin(
    name="evaluation",
    description="Evaluation, fairness and regression gates, the model registry (aliases).",
    order=50,
    processes=(
        ProcessSpec(
            "evaluation",
            "evaluation",
            "services.evaluation",
            9105,
            "LLMOPS_EVALUATION_PORT",
        ),
    ),
    consumes=(
        Topic.MODEL_TRAINED,
        Topic.DATASET_VERSIONED,
        Topic.MODEL_PROMOTED,
        Topic.MODEL_ROLLED_BACK,
        Topic.WORKER_HEARTBEAT,
        Topic.API_KEYS,  # the API key registry its HTTP API checks keys against
    ),
    produces=(
        Topic.MODEL_EVALUATED,
        Topic.MODEL_PROMOTED,
        Topic.MODEL_ROLLED_BACK,
        Topic.AUDIT_RECORDED,
    ),
    cli="services.evaluation.cli:register",
    demo="services.evaluation.demo:run",
)

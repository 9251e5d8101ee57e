"""The training service as a platform plug-in (entry point ``llmops.services``)."""

from shared.plugins import ProcessSpec, ServicePlugin
from shared.topics import Topic

PLUGIN = ServicePlugin(
    name="training",
    description="Fine-tunes (SFT, LoRA, DPO) with Optuna search; emits models with lineage.",
    order=40,
    processes=(
        ProcessSpec("training", "training", "services.training", 9104, "LLMOPS_TRAINING_PORT"),
    ),
    consumes=(
        Topic.TRAINING_REQUESTED,
        Topic.DATASET_VERSIONED,
        Topic.ERASURE_COMPLETED,
        Topic.API_KEYS,  # its bus checks commands signed with users' own keys against it
    ),
    produces=(Topic.TRAINING_PROGRESSED, Topic.MODEL_TRAINED, Topic.AUDIT_RECORDED),
    cli="services.training.cli:register",
    demo="services.training.demo:run",
)

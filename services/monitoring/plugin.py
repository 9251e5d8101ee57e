"""The monitoring service as a platform plug-in (entry point ``llmops.services``)."""

from shared.plugins import ProcessSpec, ServicePlugin
from shared.topics import Topic

PLUGIN = ServicePlugin(
    name="monitoring",
    description="Windows, drift, SLO alerts, the retraining policy and the dashboards.",
    order=70,
    processes=(
        ProcessSpec(
            "monitoring",
            "monitoring",
            "services.monitoring",
            8200,
            "LLMOPS_MONITORING_PORT",
            serves_api=True,
            singleton=(
                "its windows and drift references are kept in memory per process, and a "
                "model's traffic is spread over every partition: a second process would "
                "judge drift on part of it"
            ),
        ),
    ),
    consumes=(
        Topic.RECORDS_ANONYMIZED,
        Topic.RECORDS_LABELED,
        Topic.DATASET_VERSIONED,
        Topic.TRAINING_REQUESTED,
        Topic.TRAINING_PROGRESSED,
        Topic.MODEL_TRAINED,
        Topic.MODEL_EVALUATED,
        Topic.MODEL_PROMOTED,
        Topic.MODEL_ROLLED_BACK,
        Topic.WORKER_HEARTBEAT,
        Topic.API_KEYS,  # the API key registry its HTTP API checks keys against
    ),
    produces=(
        Topic.DRIFT_DETECTED,
        Topic.ALERT_RAISED,
        Topic.AUDIT_RECORDED,
        Topic.TRAINING_REQUESTED,
    ),
    cli="services.monitoring.cli:register",
    demo="services.monitoring.demo:run",
)

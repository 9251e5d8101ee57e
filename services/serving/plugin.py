"""The serving service as a platform plug-in: vLLM workers and the OpenAI-compatible gateway."""

from shared.plugins import ProcessSpec, ServicePlugin
from shared.topics import Topic

PLUGIN = ServicePlugin(
    name="serving",
    description="vLLM workers behind an OpenAI-compatible HTTP gateway.",
    order=60,
    processes=(
        ProcessSpec(
            "serving",
            "worker",
            "services.serving.worker",
            9106,
            "LLMOPS_WORKER_PORT",
        ),
        ProcessSpec(
            "serving",
            "gateway",
            "services.serving.gateway",
            8000,
            "LLMOPS_GATEWAY_PORT",
            serves_api=True,
        ),
    ),
    consumes=(
        Topic.INFERENCE_REQUESTED,
        Topic.MODEL_PROMOTED,
        Topic.MODEL_ROLLED_BACK,
        Topic.WORKER_HEARTBEAT,  # the gateway routes by the workers' heartbeats
        Topic.API_KEYS,  # the API key registry its HTTP API checks keys against
    ),
    topic_prefixes=("llmops.inference.replies.",),  # one reply topic per gateway instance
    produces=(
        Topic.INFERENCE_REQUESTED,
        Topic.INFERENCE_COMPLETED,
        Topic.FEEDBACK_RECEIVED,
        Topic.WORKER_HEARTBEAT,
        Topic.AUDIT_RECORDED,
        Topic.API_KEYS,  # the gateway issues the platform's API keys (shared/keys.py)
    ),
    cli="services.serving.cli:register",
    demo="services.serving.demo:run",
)

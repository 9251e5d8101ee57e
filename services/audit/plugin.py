"""The audit service as a platform plug-in (entry point ``llmops.services``)."""

from services.audit.config import DEFAULT_PORT
from shared.plugins import ProcessSpec, ServicePlugin
from shared.topics import Topic

PLUGIN = ServicePlugin(
    name="audit",
    description="Append-only, hash-chained trail of every privileged action.",
    order=80,
    processes=(
        ProcessSpec(
            "audit",
            "audit",
            "services.audit",
            DEFAULT_PORT,
            "LLMOPS_AUDIT_PORT",
            singleton="one writer keeps the hash chain of the trail linear",
        ),
    ),
    consumes=(Topic.AUDIT_RECORDED, Topic.API_KEYS),  # API keys: its HTTP API checks them
    cli="services.audit.cli:register",
    demo="services.audit.demo:run",
)

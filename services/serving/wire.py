"""The wire protocol between the gateway and the workers, the only code both import:
serving's own Kafka channels beside the platform catalogue (worker heartbeats, the
per-gateway reply topics) and how they are created.

Each gateway instance owns ``llmops.inference.replies.<gateway-id>`` (one partition: chunks of
a request stay in order), created at start and deleted at stop; ``InferenceRequested.reply_to``
names it. Heartbeats go to one compacted-in-spirit topic every worker and gateway share.
"""

from __future__ import annotations

import contextlib
import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from shared.topics import Topic, ensure_topics

log = logging.getLogger(__name__)

HEARTBEAT_TOPIC = Topic.WORKER_HEARTBEAT.value
REPLY_PREFIX = "llmops.inference.replies."
REPLY_RETENTION_MS = 600_000


def reply_topic(gateway_id: str) -> str:
    return f"{REPLY_PREFIX}{gateway_id}"


async def ensure_serving_topics(bootstrap: str, replication_factor: int = 1) -> None:
    await ensure_topics(bootstrap, replication_factor=replication_factor)


async def create_reply_topic(bootstrap: str, name: str, replication_factor: int = 1) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    await admin.start()
    try:
        with contextlib.suppress(TopicAlreadyExistsError):
            await admin.create_topics(
                [
                    NewTopic(
                        name,
                        num_partitions=1,
                        replication_factor=replication_factor,
                        topic_configs={"retention.ms": str(REPLY_RETENTION_MS)},
                    )
                ]
            )
    finally:
        await admin.close()


async def delete_reply_topic(bootstrap: str, name: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5_000)
    try:
        await admin.start()
        await admin.delete_topics([name])
    except KafkaError as exc:  # the broker may be gone already; retention cleans up
        log.warning("reply topic not deleted", extra={"topic": name, "error": repr(exc)})
    finally:
        await admin.close()

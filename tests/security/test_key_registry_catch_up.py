"""A service's view of the API key registry catches up to the log end on the real embedded
broker, so a revocation published in the last (multi-record) batch before a user-signed command
is honoured.

tansu 0.6.0 answers ListOffsets(latest) with the base offset + 1 of the last batch (11 for two
batches of 10: docs/backbone.md): a view that stops there counts itself caught up with the
revocation at offset 19 still unread. ``KeyRegistry.catch_up`` asks the Fetch high watermark
(``shared.bus.offsets.log_end_offsets``).
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from shared.authority import Signer, Verifier, new_signing_key, user_principal
from shared.events import ApiKeyChanged, IngestRequested
from shared.keys import KeyRegistry, KeyView, changed, new_secret
from shared.settings import ServiceSettings
from shared.topics import Topic

pytestmark = pytest.mark.integration
ROOT = "the-root-admin-key"
TOPIC = Topic.API_KEYS.value


async def _produce_batches(bootstrap: str, batches: list[list[ApiKeyChanged]]) -> None:
    """Each list as one record batch (sent together, lingering) on partition 0."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        with contextlib.suppress(TopicAlreadyExistsError):
            await admin.create_topics([NewTopic(TOPIC, 1, 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=50)
    await producer.start()
    try:
        for batch in batches:
            sent = [await producer.send(TOPIC, r.to_bytes(), partition=0) for r in batch]
            await asyncio.gather(*sent)
    finally:
        await producer.stop()


async def test_a_revocation_in_the_last_multi_record_batch_is_honoured(
    private_kafka: str, tmp_path: Path
) -> None:
    private, public = new_signing_key()
    olga = Signer.from_text(user_principal("olga"), "operator", private)
    created = changed(new_secret(), "olga", "operator", 1, 1, public_key=public)
    others = [changed(new_secret(), f"k{i}", "viewer", 1, 1) for i in range(18)]
    revoked = created.model_copy(update={"revoked": True, "occurred_at": datetime.now(UTC)})
    # offsets 0-9: nine keys and olga's; 10-19: nine keys and, last, olga's revocation
    await _produce_batches(private_kafka, [[*others[:9], created], [*others[9:], revoked]])

    tp = TopicPartition(TOPIC, 0)
    settings = ServiceSettings(
        kafka_bootstrap=private_kafka, require_authority=False, key_registry_wait_s=120
    )
    registry = KeyRegistry(settings, KeyView(lambda: ROOT))
    verifier = Verifier(ServiceSettings(data_dir=tmp_path, key_registry_wait_s=120), users=registry)
    # the view's consumer, as FastStream's subscriber holds it; the test feeds the view
    feeder = AIOKafkaConsumer(bootstrap_servers=private_kafka, group_id=None, fetch_max_wait_ms=50)
    await feeder.start()
    try:
        feeder.assign([tp])
        await feeder.seek_to_beginning(tp)
        records = []
        while len(records) < 20:
            records.extend((await feeder.getmany(tp, timeout_ms=1000)).get(tp, []))
        assert [r.offset for r in records] == list(range(20))
        registry.subscriber = SimpleNamespace(consumer=feeder)

        # the log end, counting every record of the last batch (ListOffsets says 11 here)
        assert await registry.end_offsets([tp]) == {tp: 20}

        # the view has read all but the revocation when olga's command comes in
        for record in records[:-1]:
            assert registry.receive(record.value, partition=0, offset=record.offset)
        command = olga.sign(IngestRequested(dataset="d", records=[{"text": "hi"}])).to_bytes()
        checking = asyncio.create_task(verifier.check_async(command))
        # a view that took itself for caught up would have answered by now (accepting olga's
        # command, or refusing it as stale); this one waits for offset 19
        done, _ = await asyncio.wait({checking}, timeout=3)
        assert not done, checking.result()
        assert registry.receive(records[-1].value, partition=0, offset=19)
        _principal, why = await checking
        assert str(why).endswith("is revoked"), why
        assert await registry.catch_up(30)
    finally:
        await registry.close()
        await feeder.stop()

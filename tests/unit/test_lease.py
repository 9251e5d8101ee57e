"""Leases on job rows (shared.storage.lease): one claimant at a time, takeover after expiry,
fenced writes; on SQLite and on PostgreSQL."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, insert, select
from sqlalchemy.engine import Engine
from sqlmodel import Session
from sqlmodel.sql.sqltypes import UTCDateTime

from shared.storage.lease import LeaseLostError, Leases

pytestmark = pytest.mark.unit

JOBS = Table(
    "lease_test_job",
    MetaData(),
    Column("job_id", String(36), primary_key=True),
    Column("done", Integer, default=0),
    Column("lease_owner", String(120), nullable=True),
    Column("lease_until", UTCDateTime(), nullable=True),
)


@pytest.fixture
def jobs(engine: Engine) -> Engine:
    JOBS.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(insert(JOBS), [{"job_id": "a"}, {"job_id": "b"}])
    return engine


def test_one_claimant_at_a_time_and_takeover_after_expiry(jobs: Engine) -> None:
    first = Leases(JOBS, ttl_s=0.5, owner="p1")
    second = Leases(JOBS, ttl_s=0.5, owner="p2")
    assert first.claim(jobs, {"job_id": "a"})
    assert first.claim(jobs, {"job_id": "a"})  # its own again: yes
    assert not second.claim(jobs, {"job_id": "a"})
    assert second.claim(jobs, {"job_id": "b"})
    assert first.holder(jobs, {"job_id": "a"}) == "p1"
    deadline = time.monotonic() + 10
    while not second.claim(jobs, {"job_id": "a"}):  # p1 stopped renewing: it runs out
        assert time.monotonic() < deadline, "the lease never ran out"
        time.sleep(0.1)
    assert first.holder(jobs, {"job_id": "a"}) == "p2"
    # p1 wakes up and writes: refused, nothing of its write commits
    with Session(jobs) as session:
        session.execute(JOBS.update().where(JOBS.c.job_id == "a").values(done=1))
        with pytest.raises(LeaseLostError):
            first.fence(session, {"job_id": "a"})
        session.rollback()
    with Session(jobs) as session:
        second.fence(session, {"job_id": "a"})
        session.execute(JOBS.update().where(JOBS.c.job_id == "a").values(done=2))
        session.commit()
    with jobs.connect() as conn:
        assert conn.execute(select(JOBS.c.done).where(JOBS.c.job_id == "a")).scalar() == 2


def test_held_renews_while_the_work_runs_then_releases(jobs: Engine) -> None:
    # renewals every ttl/3: a lease of 2 s survives a renewal thread starved for over a
    # second on a busy machine
    mine = Leases(JOBS, ttl_s=2.0, owner="p1")
    other = Leases(JOBS, ttl_s=2.0, owner="p2")
    assert mine.claim(jobs, {"job_id": "a"})
    with mine.held(jobs, {"job_id": "a"}) as lost:
        end = time.monotonic() + 3.0  # well past one lease: the renewals keep it
        while time.monotonic() < end:
            assert not other.claim(jobs, {"job_id": "a"})
            time.sleep(0.1)
        assert not lost.is_set()
    assert mine.holder(jobs, {"job_id": "a"}) is None  # released: free at once
    assert other.claim(jobs, {"job_id": "a"})

"""Chaos on real `celery worker` processes and the real broker: a pool process killed mid-job, a worker
stopped with SIGTERM mid-job, and a slow worker that is alive. Jobs finish by themselves, exactly once."""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.services.chaos_world import World, wait_for

pytestmark = pytest.mark.services

HEARTBEAT_S = 0.25
LOST_AFTER_S = 4.0  # generous: on a loaded machine a live heartbeat thread can stall for seconds


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from labelsite.benchmarks.web import _throwaway_database

    folder = tmp_path_factory.mktemp("chaos")
    with _throwaway_database() as database_url:
        world = World(folder, database_url, JOB_HEARTBEAT_S=str(HEARTBEAT_S), JOB_LOST_AFTER_S=str(LOST_AFTER_S))
        try:
            yield world
        finally:
            world.close()


@pytest.fixture
def workers(world):
    yield world
    world.stop_workers()


def finished(world: World, job_id: int, timeout: float = 120.0) -> dict:
    return wait_for(lambda: (j := world.job(job_id))["status"] in ("succeeded", "failed", "cancelled") and j, timeout)


def test_a_killed_pool_process_loses_its_job_and_a_redelivery_takes_it_over(workers):
    first = workers.start_worker("one")
    job_id = workers.call("create_job", kind="selfcheck", params={"steps": 40, "delay_s": 0.1})
    running = wait_for(lambda: (j := workers.job(job_id))["progress"] >= 0.2 and j, 90, what="progress")
    assert running["worker"].startswith("one@")
    os.kill(workers.pool_process(first), signal.SIGKILL)  # as the kernel's OOM killer would
    workers.start_worker("two")
    done = finished(workers, job_id)
    assert done["status"] == "succeeded", (done, workers.log("one"), workers.log("two"))
    assert done["attempt"] == 2 and done["lost_attempts"] == 1
    assert "attempt 1 lost (worker one@" in workers.log("one") + workers.log("two")


def test_sigterm_hands_the_running_job_back_and_another_worker_finishes_it(workers):
    first = workers.start_worker("one")
    job_id = workers.call("create_job", kind="selfcheck", params={"steps": 120, "delay_s": 0.1})  # 12 s of work
    wait_for(lambda: workers.job(job_id)["progress"] >= 0.05, 90, what="progress")
    stopped_at = time.monotonic()
    first.send_signal(signal.SIGTERM)  # a deploy
    first.wait(timeout=12)
    assert time.monotonic() - stopped_at < 10  # a worker waiting for its job would need over 10 s
    back = workers.job(job_id)
    assert back["status"] == "queued" and back["attempt"] == 2 and back["lost_attempts"] == 0, back
    assert back["progress"] < 0.5 and "Handed back" in back["message"]
    workers.start_worker("two")
    done = finished(workers, job_id)
    assert done["status"] == "succeeded" and done["attempt"] == 2 and done["lost_attempts"] == 0, done
    assert done["worker"].startswith("two@")


def test_a_slow_but_alive_worker_is_not_taken_over(workers):
    one = workers.start_worker("one")
    # Two steps of 2 x JOB_LOST_AFTER_S each, with no progress report in between: only heartbeats.
    job_id = workers.call("create_job", kind="selfcheck", params={"steps": 2, "delay_s": 2 * LOST_AFTER_S})
    wait_for(lambda: workers.job(job_id)["status"] == "running", 90, what="running")
    pool_pid = workers.pool_process(one)
    workers.start_worker("two")
    workers.call("enqueue", job_id=job_id)  # a second delivery of the same attempt reaches worker two
    seen_alive = []
    while (job := workers.job(job_id))["status"] == "running":
        seen_alive.append(not job["is_lost"])
        time.sleep(0.5)
    assert job["status"] == "succeeded", job
    assert job["attempt"] == 1 and job["lost_attempts"] == 0
    assert job["result"]["pid"] == pool_pid  # run once, by worker one's pool process
    assert seen_alive and all(seen_alive)
    assert "not taken over" in workers.log("two")

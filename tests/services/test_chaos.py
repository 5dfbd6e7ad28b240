"""Chaos on real `celery worker` processes and the real broker: a pool process killed mid-job, a worker
stopped with SIGTERM mid-job, and a slow worker that is alive. Jobs finish by themselves, exactly once; a
training job resumes from its checkpoints to the very SAEs of an uninterrupted run."""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.services.chaos_world import World, wait_for

pytestmark = pytest.mark.services

HEARTBEAT_S = 0.25
CHECKPOINT_EVERY_TOKENS = 300
LOST_AFTER_S = 4.0  # generous: on a loaded machine a live heartbeat thread can stall for seconds


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from labelsite.benchmarks.web import _throwaway_database

    folder = tmp_path_factory.mktemp("chaos")
    with _throwaway_database() as database_url:
        world = World(
            folder, database_url, JOB_HEARTBEAT_S=str(HEARTBEAT_S), JOB_LOST_AFTER_S=str(LOST_AFTER_S),
            TRAIN_CHECKPOINT_EVERY_TOKENS=str(CHECKPOINT_EVERY_TOKENS),
        )  # fmt: skip
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
    first.send_signal(signal.SIGTERM)  # a deploy
    first.wait(timeout=120)  # a hang guard only: that it did not wait for its job is what `back` shows
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
    assert "succeeded" in workers.log("two") and "'skipped'" in workers.log("two")  # it got the duplicate


def test_training_survives_a_killed_pool_process_and_a_sigterm_and_equals_an_uninterrupted_run(workers):
    import torch
    from safetensors.torch import load_file

    ids = workers.call("setup_training", folder=str(workers.folder))
    params = {
        "language_model_id": ids["language_model_id"], "domain_corpus_id": ids["corpus_id"], "methods": ["direct"],
        "hook_name": "blocks.0.hook_resid_post", "domain_expansion": 2, "l1_coefficients": [1.0, 3.0],
        "lr": 1e-2, "domain_tokens": 40000, "eval_tokens": 0, "context_size": 32, "batch_size": 4,
        "minibatch_tokens": 64,
    }  # fmt: skip
    first = workers.start_worker("one")
    job_id = workers.call("create_job", kind="train_saes", params={**params, "name_prefix": "chaos"})

    def checkpointed_after(tokens: int):
        job = workers.job(job_id)
        return job["status"] == "running" and job["stats"].get("checkpoint_tokens", 0) > tokens and job

    killed = wait_for(lambda: checkpointed_after(0), 240, interval=0.05, what="a first checkpoint")
    os.kill(workers.pool_process(first), signal.SIGKILL)
    # The requeued message waits until the job is lost, then takes it over and resumes from the checkpoint.
    resumed = wait_for(lambda: (j := workers.job(job_id))["stats"].get("resumed_from_tokens") and j, 120)
    assert resumed["attempt"] == 2 and resumed["lost_attempts"] == 1
    # From the last checkpoint before the kill (or a later one), not from the start.
    assert resumed["stats"]["resumed_from_tokens"] >= killed["stats"]["checkpoint_tokens"] > 0
    wait_for(lambda: checkpointed_after(resumed["stats"]["resumed_from_tokens"]), 240, interval=0.05)
    first.send_signal(signal.SIGTERM)  # a deploy: checkpoint, hand back, exit
    first.wait(timeout=60)
    back = workers.job(job_id)
    assert back["status"] == "queued" and back["attempt"] == 3 and back["lost_attempts"] == 1, back
    workers.start_worker("two")
    done = finished(workers, job_id, timeout=300)
    assert done["status"] == "succeeded", (done["error"], workers.log("two"))
    assert done["attempt"] == 3 and done["result"]["resumed_from_tokens"] > resumed["stats"]["resumed_from_tokens"]

    reference = workers.call("run_inline", kind="train_saes", params={**params, "name_prefix": "ref"})
    expected = {s["run_key"]: s for s in workers.call("saes", job_id=reference)}
    got = {s["run_key"]: s for s in workers.call("saes", job_id=job_id)}
    assert set(expected) == set(got) == {"direct-standard-l1=1", "direct-standard-l1=3"}
    assert {s["status"] for s in got.values()} == {"ready"}
    for key, sae in expected.items():
        want = load_file(f"{sae['path']}/sae_weights.safetensors")
        have = load_file(f"{got[key]['path']}/sae_weights.safetensors")
        assert want.keys() == have.keys()
        assert all(torch.equal(want[name], have[name]) for name in want), key

"""Scale-out on loopback: two `celery worker` processes that share only the database, the broker and an S3
bucket (moto's server on 127.0.0.1), each in a working directory of its own with its own var/ and scratch and
its own copy of the model, and a web process of its own. Worker A trains; worker B, alone on the gpu queue,
evaluates the study and builds dashboards from what A stored; A opens the campaign; the web draws a study figure
and serves a blind item; and a SIGKILLed worker's training is taken over by the other from its checkpoint in the
bucket. Each worker's scratch is removed between phases, so nothing can be read from a path another process
wrote: whatever crosses machines went through the bucket."""

from __future__ import annotations

import os
import re
import shutil
import signal
from pathlib import Path

import pytest

from tests.conftest import s3_client, s3_env
from tests.services.chaos_world import World, wait_for

pytestmark = pytest.mark.services

HEARTBEAT_S = 0.25
LOST_AFTER_S = 4.0  # generous: on a loaded machine a live heartbeat thread can stall for seconds
MACHINES = ("web", "a", "b")
TRAINING = {
    "hook_name": "blocks.0.hook_resid_post", "methods": ["gsae", "direct", "ssae"], "gsae_expansion": 4,
    "domain_expansion": 2, "l1_coefficients": [1.0], "gsae_l1_coefficient": 1.0, "lr": 1e-2, "gsae_tokens": 4000,
    "domain_tokens": 3000, "eval_tokens": 256, "context_size": 32, "batch_size": 8, "minibatch_tokens": 128,
}  # fmt: skip


class Cluster:
    def __init__(self, world: World, folder: Path, bucket: str, endpoint: str) -> None:
        self.world, self.folder, self.bucket, self.endpoint = world, folder, bucket, endpoint
        self.ids = world.call("setup")  # users, the model and the two corpora, uploaded to the bucket

    def machine(self, name: str) -> Path:
        return self.folder / name

    def start(self, name: str, queues: str):
        return self.world.start_worker(
            name, queues=queues, cwd=self.machine(name), LABELSITE_VAR_DIR=str(self.machine(name) / "var")
        )

    def wipe_scratch(self) -> None:
        """Forget every worker's local files between phases (their models stay: installed software)."""
        for name in ("a", "b"):
            shutil.rmtree(self.machine(name) / "var" / "scratch", ignore_errors=True)

    def keys(self, prefix: str = "") -> list[str]:
        listing = s3_client(self.endpoint).list_objects_v2(Bucket=self.bucket, Prefix=prefix)
        return sorted(item["Key"] for item in listing.get("Contents", []))

    def finished(self, job_id: int, timeout: float = 300.0) -> dict:
        def done():
            job = self.world.job(job_id)
            return job["status"] in ("succeeded", "failed", "cancelled") and job

        job = wait_for(done, timeout, interval=0.5, what=f"job {job_id} finished")
        assert job["status"] == "succeeded", (job, self.world.log("a"), self.world.log("b"))
        return job


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, s3_server):
    from labelsite.benchmarks.web import _throwaway_database
    from tests.factories import tiny_model_folder

    folder = tmp_path_factory.mktemp("cluster")
    bucket = f"cluster-{os.urandom(4).hex()}"
    s3_client(s3_server).create_bucket(Bucket=bucket)
    for name in MACHINES:
        tiny_model_folder(folder / name / "model", seed=11)  # each machine's own install of the model
    with _throwaway_database() as database_url:
        world = World(
            folder, database_url, driver="tests.services.distributed_world", cwd=folder / "web",
            LABELSITE_VAR_DIR=str(folder / "web" / "var"), BROKER_DIR=str(folder / "broker"),
            JOB_HEARTBEAT_S=str(HEARTBEAT_S), JOB_LOST_AFTER_S=str(LOST_AFTER_S),
            TRAIN_CHECKPOINT_EVERY_TOKENS="300", **s3_env(s3_server, bucket),
        )  # fmt: skip
        try:
            yield Cluster(world, folder, bucket, s3_server)
        finally:
            world.close()


def test_worker_a_trains_worker_b_evaluates_and_builds_dashboards_and_the_web_serves_them(cluster):
    world, ids = cluster.world, cluster.ids
    assert sorted(cluster.keys("corpora/")) == ["corpora/science.txt", "corpora/web.txt"]

    # Phase 1: A alone trains the GSAE and the domain SAEs.
    cluster.start("a", "default,gpu")
    params = {**TRAINING, "language_model_id": ids["language_model_id"], "general_corpus_id": ids["web"],
              "domain_corpus_id": ids["science"], "name_prefix": "dist"}  # fmt: skip
    train_id = world.call("train", params=params)
    assert cluster.finished(train_id)["worker"].startswith("a@")
    saes = world.call("saes", job_id=train_id)
    assert {s["method"] for s in saes} == {"gsae", "direct", "ssae"}
    world.stop_workers()
    cluster.wipe_scratch()
    for sae in saes:
        assert sae["status"] == "ready"
        assert {f"{sae['artifact_path']}/cfg.json", f"{sae['artifact_path']}/sae_weights.safetensors"} <= set(
            cluster.keys(sae["artifact_path"])
        )

    # Phase 2: B alone on the gpu queue evaluates the study and builds dashboards; A (default) opens the campaign.
    cluster.start("a", "default")
    cluster.start("b", "gpu")
    study = world.call("study", training_job_id=train_id,
                       options={"eval_tokens": 256, "frequency_tokens": 1024, "context_size": 32})  # fmt: skip
    evaluated = cluster.finished(study["job_id"])
    assert evaluated["worker"].startswith("b@")
    assert any(key.endswith(".npz") for key in cluster.keys("studies/"))
    domain_saes = [s["id"] for s in saes if s["method"] in ("direct", "ssae")]
    pairs = [[sae, corpus] for sae in domain_saes for corpus in (ids["science"], ids["web"])]
    for job_id in world.call("dashboards", pairs=pairs, params={"max_tokens": 1024, "context_size": 32}):
        assert cluster.finished(job_id)["worker"].startswith("b@")
    cluster.wipe_scratch()
    opened = world.call("campaign", sae_ids=domain_saes, domain=ids["science"], general=ids["web"],
                        labeller=ids["labeller"], n_features=4)  # fmt: skip
    assert cluster.finished(opened["job_id"])["worker"].startswith("a@")
    state = wait_for(lambda: (s := world.call("campaign_state", campaign_id=opened["campaign_id"]))["items"] and s, 60)
    assert state["status"] == "open", state

    # The web, with its own folder: a study figure and a blind item.
    page = world.call("render", study_id=study["study_id"], campaign_id=opened["campaign_id"])
    for name, figure in page["figures"].items():
        assert figure["status"] == 200 and figure["type"].startswith("image/svg"), (name, figure["body"][:300])
        assert "<svg" in figure["body"]
    item = page["item"]
    assert item["status"] == 200 and item["path"].startswith("/label/i/"), item["html"][:500]
    text = "".join(re.sub(r"<[^>]+>", "", item["html"]).split())  # a token per span: join the characters
    assert "planet" in text or "film" in text  # the corpora's words, from the panels the open job cached
    assert not any(name in item["html"] for name in page["sae_names"])

    # Nothing went to a local artifact folder on any machine: everything shared is in the bucket.
    for name in MACHINES:
        assert not (cluster.machine(name) / "var" / "artifacts").exists()
    world.stop_workers()


def test_a_sigkilled_workers_training_is_taken_over_by_the_other_from_its_checkpoint_in_the_bucket(cluster):
    world, ids = cluster.world, cluster.ids
    params = {**TRAINING, "methods": ["direct"], "domain_tokens": 30000, "language_model_id": ids["language_model_id"],
              "domain_corpus_id": ids["science"], "name_prefix": "killed"}  # fmt: skip
    b = cluster.start("b", "gpu")
    job_id = world.call("train", params=params)

    def checkpointed():
        job = world.job(job_id)
        return job["status"] == "running" and job["stats"].get("checkpoint_tokens", 0) > 0 and job

    before = wait_for(checkpointed, 240, interval=0.05, what="a first checkpoint")
    assert before["worker"].startswith("b@")
    os.killpg(b.pid, signal.SIGKILL)  # the whole machine's worker, main process and pool, as a crash would
    b.wait()
    cluster.wipe_scratch()
    assert cluster.keys(f"checkpoints/job-{job_id}/")  # the checkpoint B left is in the bucket, and only there
    cluster.start("a", "default,gpu")  # its sweeper finds the lost job and sends it again
    done = cluster.finished(job_id, timeout=300)
    assert done["worker"].startswith("a@") and done["attempt"] >= 2 and done["lost_attempts"] >= 1, done
    assert done["result"]["resumed_from_tokens"] >= before["stats"]["checkpoint_tokens"] > 0
    assert cluster.keys(f"checkpoints/job-{job_id}/") == []  # removed once the SAEs were saved
    world.stop_workers()

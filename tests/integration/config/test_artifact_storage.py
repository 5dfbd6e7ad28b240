"""Artifact storage on S3: the short backend names, the start-up write check (a missing or read-only bucket is
named at `check --deploy` and worker start), and every kind of artifact stored and read back through a real S3
HTTP endpoint on loopback (moto's server), checked against the bucket as plain boto3 sees it."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import numpy as np
import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile

from config.storage import (
    S3_SPOOL_MAX_BYTES,
    artifact_fetch,
    artifact_replace,
    artifact_storage,
    artifact_storage_entry,
    artifact_storage_problem,
)
from tests.conftest import ROOT, S3_CREDENTIALS, s3_client, s3_env, subprocess_env


def bucket_keys(endpoint: str, bucket: str) -> list[str]:
    listing = s3_client(endpoint).list_objects_v2(Bucket=bucket)
    return sorted(item["Key"] for item in listing.get("Contents", []))


def bucket_bytes(endpoint: str, bucket: str, key: str) -> bytes:
    return s3_client(endpoint).get_object(Bucket=bucket, Key=key)["Body"].read()


def test_short_backend_names_build_the_storage_entries(tmp_path):
    files = artifact_storage_entry("filesystem", root=tmp_path, s3={}, options={})
    assert files == {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(tmp_path)}}
    s3 = artifact_storage_entry(
        "s3", root=tmp_path, s3={"bucket_name": "b", "endpoint_url": "http://minio:9000", "region_name": ""},
        options={"location": "labelsite"},
    )  # fmt: skip
    assert s3["BACKEND"] == "storages.backends.s3.S3Storage"
    options = s3["OPTIONS"]
    assert options["bucket_name"] == "b" and options["endpoint_url"] == "http://minio:9000"
    assert options["region_name"] is None  # empty: left to boto3
    assert options["addressing_style"] == "path" and options["location"] == "labelsite"
    assert options["max_memory_size"] == S3_SPOOL_MAX_BYTES > 0
    aws = artifact_storage_entry("s3", root=tmp_path, s3={"bucket_name": "b", "endpoint_url": ""}, options={})
    assert aws["OPTIONS"]["addressing_style"] is None and aws["OPTIONS"]["endpoint_url"] is None
    with pytest.raises(ImproperlyConfigured, match="ARTIFACT_S3_BUCKET"):
        artifact_storage_entry("s3", root=tmp_path, s3={"bucket_name": ""}, options={})
    with pytest.raises(ImproperlyConfigured, match="filesystem or s3"):
        artifact_storage_entry("minio", root=tmp_path, s3={}, options={})


def test_the_write_check_passes_on_a_bucket_and_leaves_nothing_behind(s3_artifacts, s3_server):
    assert artifact_storage_problem() == ""
    assert bucket_keys(s3_server, s3_artifacts) == []


def test_the_write_check_names_a_missing_bucket(s3_artifacts, s3_server, settings):
    s3_client(s3_server).delete_bucket(Bucket=s3_artifacts)
    problem = artifact_storage_problem()
    assert f"bucket {s3_artifacts!r} at {s3_server}" in problem
    assert "does not exist" in problem and "ARTIFACT_S3_BUCKET" in problem


def test_the_write_check_names_a_bucket_that_refuses_writes(s3_artifacts, s3_server, settings):
    import boto3
    from moto.core.authorization import enable_iam_authentication

    iam = boto3.client("iam", endpoint_url=s3_server, **S3_CREDENTIALS)
    iam.create_user(UserName="reader")
    read_only = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": ["s3:GetObject", "s3:ListBucket"], "Resource": "*"}],
    }
    iam.put_user_policy(UserName="reader", PolicyName="read-only", PolicyDocument=json.dumps(read_only))
    key = iam.create_access_key(UserName="reader")["AccessKey"]
    entry = settings.STORAGES["artifacts"]
    options = {**entry["OPTIONS"], "access_key": key["AccessKeyId"], "secret_key": key["SecretAccessKey"]}
    settings.STORAGES = {**settings.STORAGES, "artifacts": {**entry, "OPTIONS": options}}
    with enable_iam_authentication():
        problem = artifact_storage_problem()
    assert "refuses writes (AccessDenied)" in problem and "s3:PutObject" in problem
    assert bucket_keys(s3_server, s3_artifacts) == []


@pytest.fixture
def missing_bucket_env(s3_server, tmp_path):
    return subprocess_env(
        drop=("DEBUG",), LABELSITE_VAR_DIR=str(tmp_path), DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        SECRET_KEY="x" * 60, **s3_env(s3_server, "no-such-bucket"),
    )  # fmt: skip


def test_check_deploy_fails_on_a_missing_bucket(missing_bucket_env):
    out = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy"], cwd=ROOT, env=missing_bucket_env,
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode != 0
    assert "config.E002" in out.stderr and "'no-such-bucket'" in out.stderr and "does not exist" in out.stderr


def test_a_worker_refuses_to_start_on_a_missing_bucket(missing_bucket_env):
    env = {**missing_bucket_env, "CELERY_BROKER_URL": "filesystem://"}
    out = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "config", "worker", "--pool", "solo", "--queues", "default",
         "--without-gossip", "--without-mingle", "--without-heartbeat"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode != 0
    text = out.stdout + out.stderr
    assert "Worker not started" in text and "'no-such-bucket'" in text and "does not exist" in text


def test_a_large_artifact_is_read_through_a_file_on_disk_not_memory(s3_artifacts, s3_server):
    payload = np.random.default_rng(0).bytes(S3_SPOOL_MAX_BYTES + 4096)
    artifact_replace("big/blob.bin", ContentFile(payload))
    assert hashlib.sha256(bucket_bytes(s3_server, s3_artifacts, "big/blob.bin")).digest() == (
        hashlib.sha256(payload).digest()
    )
    with artifact_storage().open("big/blob.bin", "rb") as handle:
        assert handle.read(7) == payload[:7]
        assert handle.file._rolled  # the SpooledTemporaryFile spilled to disk past S3_SPOOL_MAX_BYTES


def test_replace_and_fetch_round_trip_through_the_bucket(s3_artifacts, s3_server, tmp_path):
    assert artifact_replace("checkpoints/job-1/a.pt", ContentFile(b"first")) == "checkpoints/job-1/a.pt"
    assert artifact_replace("checkpoints/job-1/a.pt", ContentFile(b"second")) == "checkpoints/job-1/a.pt"
    assert bucket_keys(s3_server, s3_artifacts) == ["checkpoints/job-1/a.pt"]
    local = artifact_fetch("checkpoints/job-1/a.pt", tmp_path / "scratch" / "deep" / "a.pt")
    assert local.read_bytes() == b"second"


def test_an_sae_is_stored_in_the_bucket_and_loaded_from_a_scratch_copy(s3_artifacts, s3_server, tmp_path, db):
    import torch
    from sae_lens import StandardSAE, StandardSAEConfig

    from compute.models import SAE, LanguageModel
    from compute.services import registry

    torch.manual_seed(3)
    lens = StandardSAE(StandardSAEConfig(d_in=8, d_sae=24))
    lens.save_model(tmp_path / "trained")
    lm = LanguageModel.objects.create(name="tiny", source="local", location="unused")
    record = SAE.objects.create(name="s3 sae", method="gsae", status="ready", language_model=lm,
                                hook_name="blocks.0.hook_resid_post", d_in=8, d_sae=24)  # fmt: skip
    record.artifact_path = registry.sae_save_artifacts(sae=record, folder=tmp_path / "trained")
    record.save()
    for name in ("cfg.json", "sae_weights.safetensors"):
        key = f"{record.artifact_path}/{name}"
        assert bucket_bytes(s3_server, s3_artifacts, key) == (tmp_path / "trained" / name).read_bytes()
    scratch = tmp_path / "scratch"
    loaded = registry.sae_load(sae=record, device="cpu", scratch=scratch)
    assert (scratch / f"sae-{record.pk}" / "sae_weights.safetensors").is_file()
    for name, value in lens.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name


def test_an_uploaded_corpus_lives_in_the_bucket_and_is_read_from_it(s3_artifacts, s3_server, tmp_path, db):
    from compute.services import registry

    documents = [f"Document {i} about the surface of planet {i}." for i in range(5)]
    upload = SimpleUploadedFile("planets.txt", "\n\n".join(documents).encode())
    corpus = registry.corpus_register(name="planets", kind="domain", source="upload", upload=upload)
    assert corpus.upload.name in bucket_keys(s3_server, s3_artifacts)
    assert list(registry.corpus_texts(corpus=corpus, scratch=tmp_path / "scratch")) == documents
    stamp = registry.corpus_stamp(corpus=corpus)
    replacement = SimpleUploadedFile("planets.txt", b"Only this one now.")
    again = registry.corpus_register(name="planets", kind="domain", source="upload", upload=replacement)
    assert again.pk == corpus.pk and again.upload.name != corpus.upload.name  # a new key: the old one untouched
    assert registry.corpus_stamp(corpus=again) != stamp  # so token counts of the old file are not reused
    assert list(registry.corpus_texts(corpus=again, scratch=tmp_path / "scratch2")) == ["Only this one now."]


def test_per_feature_arrays_round_trip_through_the_bucket(s3_artifacts, s3_server):
    from compute.selectors.measurements import measurement_arrays
    from compute.services.studies import _save_npz

    arrays = {"freq_domain": np.linspace(0, 1, 50), "max_cos_decoder": np.arange(50) / 7}
    key = _save_npz("studies/1/sae-1.npz", arrays)
    assert key in bucket_keys(s3_server, s3_artifacts)
    back = measurement_arrays(key)
    assert set(back) == set(arrays)
    for name, value in arrays.items():
        np.testing.assert_array_equal(back[name], value.astype(np.float32))

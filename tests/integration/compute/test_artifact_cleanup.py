"""Deleting a corpus or an SAE deletes its files from artifact storage: the storage is listed before and after."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from compute.models import SAE
from compute.services.registry import SAE_FILES, corpus_register, sae_artifact_folder, sae_save_artifacts
from tests.integration.labelsite.factories import registry_create

pytestmark = pytest.mark.django_db


def _listing(folder) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def test_deleting_a_corpus_or_an_sae_leaves_nothing_in_storage(artifacts, tmp_path, django_capture_on_commit_callbacks):
    keep = corpus_register(name="keep", kind="domain", source="upload", upload=SimpleUploadedFile("a.txt", b"keep\n"))
    gone = corpus_register(name="gone", kind="domain", source="upload", upload=SimpleUploadedFile("b.txt", b"gone\n"))
    sae = registry_create(names=("doomed-sae",)).saes[0]
    local = tmp_path / "sae"
    local.mkdir()
    for name in SAE_FILES:
        (local / name).write_bytes(b"weights")
    SAE.objects.filter(pk=sae.pk).update(artifact_path=sae_save_artifacts(sae=sae, folder=local))
    folder = sae_artifact_folder(sae)
    assert _listing(artifacts) == sorted([keep.upload.name, gone.upload.name, *(f"{folder}/{n}" for n in SAE_FILES)])

    with django_capture_on_commit_callbacks(execute=True):
        gone.delete()
    assert _listing(artifacts) == sorted([keep.upload.name, *(f"{folder}/{n}" for n in SAE_FILES)])
    with django_capture_on_commit_callbacks(execute=True):
        SAE.objects.get(pk=sae.pk).delete()
    assert _listing(artifacts) == [keep.upload.name]
    assert not (artifacts / folder).exists()

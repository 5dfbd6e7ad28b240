"""Decomposition pages (typed proposal -> measure -> chart and table -> summary) and the live probe, end to end
through the admin's browser requests; the probe answered by a real ProbeWorker on another thread."""

from __future__ import annotations

import threading

import pytest
import torch

from compute.jobs import job_run
from compute.ml.decomposition import GENERAL_CONTROLS
from compute.models import Corpus, DashboardSet, Decomposition, FeatureDashboard, Job, ProbeRequest
from compute.services.probe import ProbeWorker, probe_submit
from tests.factories import random_sae, tiny_language_model

HOOK = "blocks.1.hook_resid_post"
FEATURE = 2
TYPED = """physics
+ the theory of relativity
+ quantum mechanics lectures
+ E equals m c squared
- a physical therapy session

Germany
+ born in Ulm, Germany
+ the German language
+ Berlin in the 1920s
- german shepherd dogs
"""


@pytest.fixture
def feature(tmp_path, artifacts):
    lm = tiny_language_model(tmp_path / "tiny-model", hook=HOOK)
    sae = random_sae(artifacts, lm=lm, name="tiny-sae", method="direct", d_sae=8)
    corpus = Corpus.objects.create(name="notes", kind="domain", source="files", location=str(tmp_path / "x.txt"))
    dset = DashboardSet.objects.create(sae=sae, corpus=corpus, status="ready", n_features=8)
    FeatureDashboard.objects.bulk_create(
        FeatureDashboard(dashboard_set=dset, feature_index=i, max_activation=0.5, payload=b"") for i in range(8)
    )
    return {"sae": sae, "corpus": corpus, "artifacts": artifacts}


def url(feature, tail):
    return f"/compute/saes/{feature['sae'].pk}/dashboards/{feature['corpus'].pk}/features/{FEATURE}/{tail}"


@pytest.mark.django_db
def test_typed_decomposition_measured_charted_and_summarised(admin_client, feature):
    page = admin_client.get(url(feature, "decompositions/"))
    assert page.status_code == 200 and b"New decomposition" in page.content
    bad = admin_client.post(url(feature, "decompositions/"), {"description": "Einstein", "source": "manual",
                            "n_components": 5, "n_phrases": 3, "components_text": "physics\n+ only one"})  # fmt: skip
    assert bad.status_code == 400 and b"at least 3" in bad.content
    assert not Decomposition.objects.exists()

    response = admin_client.post(url(feature, "decompositions/"), {"description": "Albert Einstein", "source": "manual",
                                 "n_components": 5, "n_phrases": 3, "components_text": TYPED})  # fmt: skip
    decomposition = Decomposition.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/compute/decompositions/{decomposition.pk}/"
    assert [c["name"] for c in decomposition.components] == ["physics", "Germany"]

    admin_client.post(f"/compute/decompositions/{decomposition.pk}/measure/")
    admin_client.post(f"/compute/decompositions/{decomposition.pk}/measure/")  # double click
    [job] = Job.objects.filter(kind="measure_decompositions")
    assert job_run(job_id=job.pk, attempt=job.attempt) == "succeeded"

    detail = admin_client.get(f"/compute/decompositions/{decomposition.pk}/")
    body = detail.content.decode()
    assert detail.status_code == 200
    assert "<svg" in body and "max activation / corpus max (fraction)" in body
    assert body.count("<td>phrase</td>") == 6 and body.count("<td>near miss</td>") == 2
    assert body.count("general control</td>") == len(GENERAL_CONTROLS)
    decomposition.refresh_from_db()
    assert decomposition.get_verdict_display() in body
    png = admin_client.get(f"/compute/decompositions/{decomposition.pk}/figure.png")
    assert png.status_code == 200 and png["Content-Type"] == "image/png" and png.content[:4] == b"\x89PNG"

    summary = admin_client.get("/compute/decompositions/")
    assert summary.status_code == 200 and b"Classes per SAE" in summary.content and b"tiny-sae" in summary.content


@pytest.mark.django_db
def test_labellers_cannot_open_decomposition_pages(labeller_client, feature):
    assert labeller_client.get("/compute/decompositions/").status_code == 403
    assert labeller_client.post(url(feature, "probe/"), {"text": "hello"}).status_code == 403


@pytest.mark.django_db
def test_probe_worker_answers_like_brute_force(feature):
    from sae_lens import SAE as LensSAE

    from compute.ml.lm import load_language_model

    probe = probe_submit(sae=feature["sae"], feature_index=FEATURE, text="Einstein was born in Ulm.")
    worker = ProbeWorker(device="cpu")
    assert worker.run_once() is True and worker.run_once() is False
    probe.refresh_from_db()
    assert probe.status == "done"
    loaded = load_language_model(source="local", location=feature["sae"].language_model.location, device="cpu")
    lens = LensSAE.load_from_disk(feature["artifacts"] / feature["sae"].artifact_path)
    ids = loaded.tokenizer("Einstein was born in Ulm.", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        _, cache = loaded.model.run_with_cache(
            torch.tensor([[loaded.tokenizer.bos_token_id, *ids]]), names_filter=[HOOK]
        )
        expected = lens.encode(cache[HOOK])[0, 1:, FEATURE].tolist()
    assert probe.result["values"] == pytest.approx(expected, abs=1e-4)
    assert "".join(probe.result["tokens"]) == "Einstein was born in Ulm."


@pytest.mark.django_db(transaction=True)
def test_live_probe_page_with_a_worker_running(admin_client, feature, settings):
    worker = ProbeWorker(device="cpu")
    worker.load(feature["sae"])  # warm, as `probe_worker --warm` does
    thread = threading.Thread(target=worker.run, kwargs={"stop_after_s": 20}, daemon=True)
    thread.start()
    response = admin_client.post(url(feature, "probe/"), {"text": "relativity " * 100}, HTTP_HX_REQUEST="true")
    body = response.content.decode()
    assert response.status_code == 200, body
    assert 'id="probe-result"' in body and "tokens active" in body
    assert "cut to the first" in body  # 1,100 bytes > PROBE_MAX_TOKENS byte-level tokens
    empty = admin_client.post(url(feature, "probe/"), {"text": "   "})
    assert empty.status_code == 400
    thread.join()


@pytest.mark.django_db
def test_probe_without_a_worker_says_how_to_start_one(admin_client, feature, settings):
    settings.PROBE_WAIT_S = 0.3
    response = admin_client.post(url(feature, "probe/"), {"text": "hello"})
    assert response.status_code == 400 and b"manage.py probe_worker" in response.content
    assert ProbeRequest.objects.get().status == "expired"

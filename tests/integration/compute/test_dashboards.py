"""Dashboards end to end on a tiny random model and a random sae_lens SAE: job, storage, rendering, pages, exports."""

from __future__ import annotations

import json
import re

import pytest
import torch

from compute.jobs import job_run
from compute.models import SAE, Corpus, DashboardSet, FeatureDashboard, JobStatus
from compute.selectors.dashboard_html import dashboard_html
from compute.selectors.dashboards import dashboards_ready, feature_frequencies
from compute.services.dashboards import dashboard_build
from tests.factories import random_sae, tiny_language_model

pytestmark = pytest.mark.django_db

HOOK = "blocks.1.hook_resid_post"
D_SAE = 48
DEAD = 7
PARAMS = {"max_tokens": 32 * 16, "context_size": 32, "batch_size": 4, "top_k": 5, "feature_chunk": 20}
PARAGRAPHS = [
    "The patient was given 5 mg of warfarin daily.\nINR was checked weekly.",
    "Stocks fell sharply on Monday as investors weighed the news.",
    "def add(a, b):\n\treturn a + b",
    "The patient was given 5 mg of warfarin daily.\nINR was checked weekly.",  # a duplicated document
    "Rain is expected across the north of the country by the evening.",
] * 12


@pytest.fixture
def setup(tmp_path, artifacts):
    lm = tiny_language_model(tmp_path / "tiny-model", hook=HOOK)
    record = random_sae(artifacts, lm=lm, name="tiny-ssae-secret", method="ssae", d_sae=D_SAE, dead=[DEAD])
    corpus_file = tmp_path / "domain.txt"
    corpus_file.write_text("\n\n".join(PARAGRAPHS))
    corpus = Corpus.objects.create(name="domain-notes", kind="domain", source="files", location=str(corpus_file))
    from sae_lens import SAE as LensSAE

    lens_sae = LensSAE.load_from_disk(artifacts / record.artifact_path)
    return {"sae": record, "corpus": corpus, "lens_sae": lens_sae, "model_dir": tmp_path / "tiny-model",
            "corpus_file": corpus_file}  # fmt: skip


def _built(setup):
    job = dashboard_build(sae_id=setup["sae"].pk, corpus_id=setup["corpus"].pk, params=PARAMS)
    assert job_run(job_id=job.pk, attempt=job.attempt) == JobStatus.SUCCEEDED, job.error
    return job


def _brute_force(setup):
    """All activations of the same token windows at once, encoded in one go."""
    from compute.ml.activations import iter_activation_batches
    from compute.ml.corpora import iter_texts, token_windows
    from compute.ml.lm import load_language_model

    loaded = load_language_model(source="local", location=str(setup["model_dir"]), device="cpu")
    windows = list(token_windows(iter_texts("files", str(setup["corpus_file"])), loaded.tokenizer, 32, max_windows=16))
    batches = list(iter_activation_batches(loaded, windows, hook_name=HOOK, batch_size=16))
    tokens = torch.cat([b.tokens for b in batches])
    mask = torch.cat([b.mask for b in batches])
    with torch.no_grad():
        feats = setup["lens_sae"].encode(torch.cat([b.acts for b in batches]))  # [n_win, 32, d_sae]
    return tokens, mask, feats * mask[..., None], loaded


def test_job_builds_dashboards_equal_to_brute_force(setup):
    job = _built(setup)
    sae, corpus = setup["sae"], setup["corpus"]
    assert dashboards_ready(sae_id=sae.pk, corpus_id=corpus.pk)
    dset = DashboardSet.objects.get(sae=sae, corpus=corpus)
    assert dset.job_id == job.pk and dset.n_features == D_SAE
    tokens, mask, feats, loaded = _brute_force(setup)
    assert dset.n_tokens == int(mask.sum())
    want = ((feats > 0).sum((0, 1)).double() / mask.sum()).tolist()
    assert feature_frequencies(sae_id=sae.pk, corpus_id=corpus.pk) == pytest.approx(want)
    assert want[DEAD] == 0 and dset.n_dead == sum(1 for w in want if w == 0)
    rows = {r.feature_index: r for r in FeatureDashboard.objects.filter(dashboard_set=dset)}
    flat = feats.reshape(-1, D_SAE)
    for f in range(D_SAE):
        assert rows[f].max_activation == pytest.approx(float(flat[:, f].max()), rel=1e-5)
        data = rows[f].data
        if want[f]:
            best = data["top"][0]
            seq, pos = divmod(int(flat[:, f].argmax()), 32)
            assert (best["s"], best["p"]) == (seq, pos)
            shown = "".join(data["strings"][t] for t in best["t"])
            lo = max(0, pos - 24)
            assert shown == "".join(loaded.to_str_tokens(tokens[seq, lo : pos + 9]))
            assert tokens[seq, pos] not in loaded.special_token_ids  # BOS/EOS never a max token
            texts = ["".join(data["strings"][t] for t in ex["t"]) for ex in data["top"]]
            assert len(texts) == len(set(texts))  # duplicated documents shown once


def test_build_is_idempotent_and_reused(setup):
    sae, corpus = setup["sae"], setup["corpus"]
    first = dashboard_build(sae_id=sae.pk, corpus_id=corpus.pk, params=PARAMS)
    assert dashboard_build(sae_id=sae.pk, corpus_id=corpus.pk).pk == first.pk  # queued: same job
    assert not dashboards_ready(sae_id=sae.pk, corpus_id=corpus.pk)
    assert feature_frequencies(sae_id=sae.pk, corpus_id=corpus.pk) is None
    assert job_run(job_id=first.pk, attempt=1) == JobStatus.SUCCEEDED
    assert dashboard_build(sae_id=sae.pk, corpus_id=corpus.pk).pk == first.pk  # succeeded: same job
    assert FeatureDashboard.objects.count() == D_SAE
    first.delete()  # the job record is gone, the dashboards are not
    again = dashboard_build(sae_id=sae.pk, corpus_id=corpus.pk)
    assert dashboards_ready(sae_id=sae.pk, corpus_id=corpus.pk)
    assert job_run(job_id=again.pk, attempt=1) == JobStatus.SUCCEEDED
    again.refresh_from_db()
    assert again.result["reused_set"] == DashboardSet.objects.get(sae=sae).pk
    assert FeatureDashboard.objects.count() == D_SAE


def test_missing_weights_fail_with_a_plain_message(setup):
    SAE.objects.filter(pk=setup["sae"].pk).update(artifact_path="saes/nowhere")
    job = dashboard_build(sae_id=setup["sae"].pk, corpus_id=setup["corpus"].pk, params=PARAMS)
    assert job_run(job_id=job.pk, attempt=1) == JobStatus.FAILED
    job.refresh_from_db()
    assert "no cfg.json" in job.error
    assert DashboardSet.objects.get(job=job).status == DashboardSet.Status.FAILED
    assert dashboard_build(sae_id=setup["sae"].pk, corpus_id=setup["corpus"].pk).pk != job.pk  # can try again


def test_bad_params_fail_before_any_work(setup):
    job = dashboard_build(sae_id=setup["sae"].pk, corpus_id=setup["corpus"].pk, params={"top_k": 0})
    assert job_run(job_id=job.pk, attempt=1) == JobStatus.FAILED
    job.refresh_from_db()
    assert "top_k must be a whole number" in job.error


def test_dashboard_html_admin_blind_and_dead(setup):
    _built(setup)
    sae, corpus = setup["sae"], setup["corpus"]
    live = next(i for i, f in enumerate(feature_frequencies(sae_id=sae.pk, corpus_id=corpus.pk)) if f > 0)
    admin = dashboard_html(sae_id=sae.pk, corpus_id=corpus.pk, feature_index=live, blind=False)
    assert "tiny-ssae-secret" in admin and f"feature {live}" in admin and HOOK in admin
    assert 'class="tok max"' in admin and "Fires on" in admin and "<svg" in admin
    blind = dashboard_html(sae_id=sae.pk, corpus_id=corpus.pk, feature_index=live, blind=True)
    assert 'class="tok max"' in blind
    for secret in ("tiny-ssae-secret", "Specialized", HOOK, f"feature {live}", "domain-notes"):
        assert secret not in blind
    assert not re.search(r"\b(id|data-[\w-]+)=", blind)
    dead = dashboard_html(sae_id=sae.pk, corpus_id=corpus.pk, feature_index=DEAD, blind=True)
    assert "Never fires on the" in dead and 'class="tok' not in dead
    missing = dashboard_html(sae_id=sae.pk, corpus_id=corpus.pk + 99, feature_index=0, blind=True)
    assert "not built yet" in missing


def test_admin_pages_and_exports(setup, admin_client, bob):
    from django.test import Client

    labeller_client = Client()
    labeller_client.force_login(bob)
    _built(setup)
    sae, corpus = setup["sae"], setup["corpus"]
    base = f"/compute/saes/{sae.pk}/dashboards/"
    assert admin_client.get(base).status_code == 200
    browser = admin_client.get(f"{base}{corpus.pk}/?sort=frequency")
    assert browser.status_code == 200 and b"Features of tiny-ssae-secret" in browser.content
    page = admin_client.get(f"{base}{corpus.pk}/features/3/")
    assert page.status_code == 200 and b"feature 3" in page.content
    assert admin_client.get(f"{base}{corpus.pk}/?feature=2").status_code == 302
    ours = admin_client.get(f"{base}{corpus.pk}/features/3.json").json()
    assert ours["feature_index"] == 3 and ours["sae"]["name"] == "tiny-ssae-secret"
    row = FeatureDashboard.objects.get(dashboard_set__sae=sae, feature_index=3)
    assert ours["n_firing"] == row.n_firing
    feature = admin_client.get(f"{base}{corpus.pk}/features/3.json?style=neuronpedia").json()
    top = [a for a in feature["activations"] if a["bin_min"] == -1]
    assert len(top) == len(ours["top_examples"])
    for act in top:
        assert len(act["tokens"]) == len(act["values"])
        assert act["values"][act["qualifying_token_index"]] == pytest.approx(max(act["values"]))
    assert feature["frac_nonzero"] == pytest.approx(row.n_firing / setup_tokens(sae, corpus))
    assert sum(feature["freq_hist_data_bar_heights"]) == row.n_firing
    assert feature["pos_str"] == [t for t, _ in ours["logits"]["pos"]]
    batch = json.loads(
        b"".join(admin_client.get(f"{base}{corpus.pk}/export.jsonl?style=neuronpedia").streaming_content)
    )
    assert [f["feature_index"] for f in batch["features"]] == list(range(D_SAE))
    assert batch["features"][3] == feature and batch["sae_set"] == sae.name
    lines = b"".join(admin_client.get(f"{base}{corpus.pk}/export.jsonl").streaming_content).splitlines()
    assert [json.loads(line)["feature_index"] for line in lines] == list(range(D_SAE))
    assert admin_client.get(f"{base}{corpus.pk}/features/3.json?style=xml").status_code == 400
    assert labeller_client.get(f"{base}{corpus.pk}/features/3/").status_code == 403
    live = next(i for i, f in enumerate(feature_frequencies(sae_id=sae.pk, corpus_id=corpus.pk)) if f > 0)
    histogram = admin_client.get(f"{base}{corpus.pk}/features/{live}/").content.decode()
    assert "activation-histogram" in histogram and "activation value" in histogram and "log scale" not in histogram
    logged = admin_client.get(f"{base}{corpus.pk}/features/{live}/?log=1").content.decode()
    assert "tokens (log scale)" in logged
    assert labeller_client.get(f"{base}{corpus.pk}/features/3.json").status_code == 403


def setup_tokens(sae, corpus) -> int:
    from compute.models import DashboardSet

    return DashboardSet.objects.get(sae=sae, corpus=corpus).n_tokens


def test_frequency_is_said_plainly():
    from compute.selectors.dashboard_html import _frequency_sentence

    assert _frequency_sentence(3, 1_200_000) == "Fires on 3 of 1.2M tokens (0.00025%)."
    assert _frequency_sentence(0, 52_000) == "Never fires on the 52k tokens of this corpus."
    assert _frequency_sentence(1500, 2000) == "Fires on 1.5k of 2k tokens (75%)."


def test_full_size_dashboard_renders_every_token_once(setup):
    """20 top examples and 10 bins x 5 samples of 33 tokens, as a real SmolLM2 dashboard has (its render time
    is `python manage.py bench render`)."""
    from compute.benchmarks.render import FULL_SIZE_TOKENS, full_size_row

    dset = DashboardSet.objects.create(
        sae=setup["sae"], corpus=setup["corpus"], status="ready", n_tokens=1_200_000, n_features=1, config={"top_k": 20}
    )
    row = full_size_row()
    row.dashboard_set = dset
    row.save()
    html = dashboard_html(sae_id=setup["sae"].pk, corpus_id=setup["corpus"].pk, feature_index=0, blind=True)
    assert FULL_SIZE_TOKENS == 70 * 33 and html.count('class="tok') == FULL_SIZE_TOKENS


def test_control_characters_and_whitespace_are_shown_not_emitted():
    from compute.selectors.dashboard_html import _token_html

    html = _token_html("\x00a\n\t<b>", 1.0, 2.0, True)
    assert "\x00" not in html and "\n" not in html and "\t" not in html
    assert "\\x00" in html and "↵" in html and "⇥" in html and "&lt;b&gt;" in html
    assert 'class="tok max"' in html and "rgba(255,120,0,0.47)" in html

"""The dashboard build form's estimate follows the settings as they are typed (htmx), and queues the build."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from compute.models import SAE, Corpus, Job, JobKind, LanguageModel

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_estimate_updates_as_settings_change_then_queues(page, login, alice):
    lm = LanguageModel.objects.create(name="lm-a", source="package", location="x")
    sae = SAE.objects.create(name="an-sae", method=SAE.Method.DIRECT, status=SAE.Status.READY, language_model=lm,
                             hook_name="blocks.1.hook_resid_post", d_in=16, d_sae=64)  # fmt: skip
    corpus = Corpus.objects.create(name="books", kind="domain", source="demo", location="d")
    login(alice)
    page.goto(f"/compute/saes/{sae.pk}/dashboards/")
    page.get_by_role("link", name="Build…").click()
    storage = page.locator('tr[data-corpus="books"] [data-figure="storage_bytes"]')
    tokens = page.locator('tr[data-corpus="books"] [data-figure="model_tokens"]')
    # defaults: 64 rows x (20 + 10 x 5 examples x 33 tokens x 8 bytes + 2 x 10 logits x 8) = 1,192,960 bytes
    expect(storage).to_have_text("1.1\xa0MB")
    expect(tokens).to_have_text("262,144")
    page.fill("#id_top_k", "10")  # 64 x (60 x 33 x 8 + 160) = 1,024,000 bytes
    expect(storage).to_have_text("1000.0\xa0KB")
    page.fill("#id_max_tokens", "1000")  # 1000 // 128 = 7 windows
    expect(tokens).to_have_text("896")
    page.fill("#id_top_k", "0")
    expect(page.locator("#estimate .error")).to_have_text("Ensure this value is greater than or equal to 1.")
    expect(storage).to_have_count(0)
    page.fill("#id_top_k", "10")
    expect(storage).to_have_text("1000.0\xa0KB")
    page.get_by_role("button", name="Queue build").click()
    page.wait_for_url("**/compute/jobs/*/")
    job = Job.objects.get(kind=JobKind.BUILD_DASHBOARDS)
    assert job.params["corpus_id"] == corpus.pk and job.params["top_k"] == 10 and job.params["max_tokens"] == 1000

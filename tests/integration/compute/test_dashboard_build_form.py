"""The dashboard build form: every setting shown, the cost estimated from what is recorded, checked by hand."""

from __future__ import annotations

import re
from html import unescape

import pytest

from compute.ml.config import DashboardJobConfig, options_of
from compute.models import SAE, Corpus, DashboardSet, FeatureDashboard, Job, JobKind, JobStatus, LanguageModel
from compute.selectors.dashboard_cost import dashboard_build_estimate

pytestmark = pytest.mark.django_db

SETTINGS = {
    "max_tokens": "100000", "context_size": "64", "batch_size": "5", "feature_chunk": "32",
    "top_k": "10", "ctx_before": "4", "ctx_after": "5", "n_quantile_bins": "2", "per_bin": "3", "n_logit_tokens": "0",
}  # fmt: skip


@pytest.fixture
def recorded(db):
    """An SAE (16 -> 64) on a model with two past builds on cpu and one finished set; two corpora to build it on,
    one where its build is queued."""
    lm = LanguageModel.objects.create(name="lm-a", source="package", location="x")
    other_lm = LanguageModel.objects.create(name="lm-b", source="package", location="y")
    kw = {"method": SAE.Method.DIRECT, "status": SAE.Status.READY, "hook_name": "blocks.1.hook_resid_post"}
    sae = SAE.objects.create(name="new-sae", language_model=lm, d_in=16, d_sae=64, **kw)
    old = SAE.objects.create(name="old-sae", language_model=lm, d_in=16, d_sae=100, **kw)
    stranger = SAE.objects.create(name="other-model-sae", language_model=other_lm, d_in=16, d_sae=100, **kw)
    # counted at context 128 for this model: 10,000 tokens -> 10,000 // 63 = 158 windows of 64
    books = Corpus.objects.create(
        name="books", kind="domain", source="demo", location="d",
        token_counts={"lm-a": {"documents": 9, "tokens": 10_000, "train_windows": 70, "eval_windows": 8,
                               "train_tokens": 8960, "eval_tokens": 1024, "context_size": 128}},
    )  # fmt: skip
    web = Corpus.objects.create(name="web", kind="general", source="demo", location="g")  # never counted
    done = Corpus.objects.create(name="done", kind="general", source="demo", location="h")
    builds = [  # (context_size, scored tokens, seconds of model pass, of feature pass, to load)
        (128, 127_000, 50.0, 20.0, 4.0),
        (64, 63_000, 30.0, 10.0, 2.0),
    ]
    for context, n_tokens, act_s, dash_s, load_s in builds:
        Job.objects.create(
            kind=JobKind.BUILD_DASHBOARDS, status=JobStatus.SUCCEEDED, device="cpu",
            params={"sae_id": old.pk, "corpus_id": done.pk, "context_size": context},
            result={"n_tokens": n_tokens, "n_features": 100, "activations_s": act_s, "dashboards_s": dash_s,
                    "load_s": load_s},
        )  # fmt: skip
    Job.objects.create(  # another model's build is not this model's speed
        kind=JobKind.BUILD_DASHBOARDS, status=JobStatus.SUCCEEDED, device="cuda",
        params={"sae_id": stranger.pk, "corpus_id": done.pk},
        result={"n_tokens": 10**6, "n_features": 100, "activations_s": 1.0, "dashboards_s": 1.0, "load_s": 1.0},
    )  # fmt: skip
    dset = DashboardSet.objects.create(
        sae=old, corpus=done, status=DashboardSet.Status.READY, n_features=2,
        config={"top_k": 20, "ctx_before": 24, "ctx_after": 8, "n_quantile_bins": 10, "per_bin": 5, "n_logit_tokens": 10},
    )  # fmt: skip
    for index, size in enumerate((1864, 5592)):  # mean 3,728 stored bytes for 18,640 raw: compression 0.2
        FeatureDashboard.objects.create(dashboard_set=dset, feature_index=index, payload=b"x" * size)
    queued = Job.objects.create(kind=JobKind.BUILD_DASHBOARDS, params={"sae_id": sae.pk, "corpus_id": done.pk})
    DashboardSet.objects.create(sae=sae, corpus=done, job=queued)  # being built: not offered again
    return {"sae": sae, "books": books, "web": web, "done": done}


def _hand_speed():
    model_tokens = 127_000 * 128 / 127 + 63_000 * 64 / 63  # the BOS of every window ran too
    return {
        "load_s": (4.0 + 2.0) / 2,
        "model_tokens_per_s": model_tokens / (50.0 + 30.0),
        "feature_tokens_per_s": (127_000 + 63_000) * 100 / (20.0 + 10.0),
    }


def test_estimate_matches_a_hand_computation(recorded):
    config = DashboardJobConfig.from_params({k: int(v) for k, v in SETTINGS.items()})
    estimate = dashboard_build_estimate(
        sae=recorded["sae"], corpora=[recorded["books"], recorded["web"]], config=config
    )
    [speed] = estimate.speeds  # cpu only: the cuda build was of another model
    hand = _hand_speed()
    assert speed.device == "cpu" and speed.builds == 2
    assert speed.load_s == pytest.approx(hand["load_s"])
    assert speed.model_tokens_per_s == pytest.approx(hand["model_tokens_per_s"])
    assert speed.feature_tokens_per_s == pytest.approx(hand["feature_tokens_per_s"])
    assert estimate.compression == pytest.approx(3728 / 18_640)
    books, web = estimate.corpora
    assert books.counted and books.cost.windows == 158 and books.cost.model_tokens == 10_112
    assert books.cost.forward_passes == 32
    assert not web.counted and web.cost.windows == 1562 and web.cost.forward_passes == 313  # the budget bounds it
    assert books.cost.row_bytes == 256 and books.cost.storage_bytes == 64 * 256
    seconds = hand["load_s"] + 10_112 / hand["model_tokens_per_s"] + 158 * 63 * 64 / hand["feature_tokens_per_s"]
    assert books.times[0][1] == pytest.approx(seconds)
    assert estimate.totals["model_tokens"] == 10_112 + 1562 * 64


def _cells(page: str, corpus: str) -> dict[str, str]:
    row = re.search(rf'<tr data-corpus="{corpus}">(.*?)</tr>', page, re.S).group(1)
    return {k: unescape(re.sub(r"<[^>]+>", " ", v)).split() for k, v in re.findall(r'data-figure="(\w+)">(.*?)</td>', row, re.S)}  # fmt: skip


def test_page_shows_every_setting_and_the_estimate(admin_client, recorded):
    sae = recorded["sae"]
    url = f"/compute/saes/{sae.pk}/dashboards/build/"
    page = admin_client.get(url, {**SETTINGS, "corpora": [recorded["books"].pk]}).content.decode()
    listed = re.search(r'<dl class="facts build-settings">(.*?)</dl>', page, re.S).group(1)
    for opt in options_of(DashboardJobConfig):  # each setting with the value the job will get
        assert re.search(rf"<dt[^>]*>{opt.title}</dt><dd>{int(SETTINGS[opt.name]):,}</dd>", listed), opt.name
    cells = _cells(page, "books")
    assert cells["model_tokens"] == ["10,112"] and cells["forward_passes"] == ["32"] and cells["rows"] == ["64"]
    assert cells["storage_bytes"] == ["16.0", "KB"]  # 64 rows x 256 bytes
    hand = _hand_speed()
    seconds = hand["load_s"] + 10_112 / hand["model_tokens_per_s"] + 158 * 63 * 64 / hand["feature_tokens_per_s"]
    assert cells["seconds"] == [f"{seconds:.0f}", "s", "on", "cpu"]
    # the finished corpus is not offered; the unbuilt ones are
    offered = re.findall(r'name="corpora" value="(\d+)"', page)
    assert offered == [str(recorded["books"].pk), str(recorded["web"].pk)]


def test_without_a_past_build_there_is_no_time(admin_client, recorded):
    Job.objects.all().delete()
    page = admin_client.get(f"/compute/saes/{recorded['sae'].pk}/dashboards/build/").content.decode()
    assert _cells(page, "books")["seconds"] == ["no", "measured", "speed", "yet"]
    defaults = DashboardJobConfig()
    assert f"<dd>{defaults.max_tokens:,}</dd>" in page  # the first visit shows the defaults


def test_the_sets_page_links_to_the_form_with_the_corpus_chosen(admin_client, recorded):
    sae = recorded["sae"]
    sets = admin_client.get(f"/compute/saes/{sae.pk}/dashboards/").content.decode()
    link = f"/compute/saes/{sae.pk}/dashboards/build/?corpus={recorded['web'].pk}"
    assert f'href="{link}"' in sets
    page = admin_client.get(link).content.decode()
    assert re.findall(r'<tr data-corpus="(\w+)">', page) == ["web"]
    assert re.search(rf'value="{recorded["web"].pk}"[^>]*checked', page)


@pytest.mark.parametrize("htmx", [False, True])
def test_a_bad_setting_shows_one_error_and_no_estimate(admin_client, recorded, htmx):
    headers = {"HTTP_HX_REQUEST": "true"} if htmx else {}
    response = admin_client.get(
        f"/compute/saes/{recorded['sae'].pk}/dashboards/build/",
        {**SETTINGS, "corpora": [recorded["books"].pk], "top_k": "0"},
        **headers,
    )
    page = response.content.decode()
    assert page.count("Ensure this value is greater than or equal to 1.") == 1
    assert "data-corpus=" not in page
    assert ("<html" in page) is not htmx  # htmx gets the estimate partial alone


def test_a_setting_the_job_would_refuse_is_refused_by_the_form_once(admin_client, recorded):
    response = admin_client.post(
        f"/compute/saes/{recorded['sae'].pk}/dashboards/build/",
        {**SETTINGS, "corpora": [recorded["books"].pk], "max_tokens": "10"},
    )
    assert response.status_code == 200
    assert not Job.objects.filter(params__sae_id=recorded["sae"].pk, params__corpus_id=recorded["books"].pk).exists()
    assert response.content.decode().count("Ensure this value is greater than or equal to 64.") == 1


def test_queueing_builds_each_corpus_with_the_settings(admin_client, recorded, django_capture_on_commit_callbacks):
    sae = recorded["sae"]
    with django_capture_on_commit_callbacks() as queued:
        response = admin_client.post(
            f"/compute/saes/{sae.pk}/dashboards/build/",
            {**SETTINGS, "corpora": [recorded["books"].pk, recorded["web"].pk]},
        )
    assert response.status_code == 302 and response["Location"] == f"/compute/saes/{sae.pk}/dashboards/"
    jobs = Job.objects.filter(params__sae_id=sae.pk).exclude(params__corpus_id=recorded["done"].pk).order_by("pk")
    assert [j.params["corpus_id"] for j in jobs] == [recorded["books"].pk, recorded["web"].pk] and len(queued) == 2
    expected = {k: int(v) for k, v in SETTINGS.items()}
    assert all({k: j.params[k] for k in expected} == expected for j in jobs)
    # both are now queued: the form offers neither again
    page = admin_client.get(f"/compute/saes/{sae.pk}/dashboards/build/").content.decode()
    assert "Every corpus has finished or queued dashboards" in page


def test_an_sae_that_is_not_ready_cannot_be_queued(admin_client, recorded):
    sae = recorded["sae"]
    SAE.objects.filter(pk=sae.pk).update(status=SAE.Status.TRAINING)
    response = admin_client.post(
        f"/compute/saes/{sae.pk}/dashboards/build/", {**SETTINGS, "corpora": [recorded["books"].pk]}, follow=True
    )
    assert "dashboards need a ready SAE" in response.content.decode()
    assert not Job.objects.filter(params__sae_id=sae.pk, params__corpus_id=recorded["books"].pk).exists()

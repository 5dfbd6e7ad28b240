"""Decomposition proposals (fake LLM endpoint on loopback, typed text), the batched measurement job on a tiny
random model and SAE, checked against one-phrase-at-a-time brute force, and bad input."""

from __future__ import annotations

import pytest
import torch

from compute.jobs import job_run
from compute.ml.decomposition import GENERAL_CONTROLS, Thresholds, classify, components_to_text
from compute.models import Corpus, DashboardSet, Decomposition, FeatureDashboard, Job, JobStatus
from compute.services.decomposition import (
    DecompositionError,
    decomposition_create_manual,
    decomposition_edit,
    decomposition_propose,
    decompositions_measure,
)
from tests.factories import random_sae, tiny_language_model
from tests.llm_server import GARBAGE, good

pytestmark = pytest.mark.django_db

HOOK = "blocks.1.hook_resid_post"
FEATURE = 3
CORPUS_MAX = 0.8


def proposal(n_components=5, n_phrases=3):
    return {
        "components": [
            {
                "name": f"part {c}",
                "phrases": [f"phrase {c}.{p} about the thing" for p in range(n_phrases)],
                "near_misses": [f"near miss {c}.{p}" for p in range(n_phrases)],
            }
            for c in range(n_components)
        ]
    }


@pytest.fixture
def setup(tmp_path, artifacts, settings, llm_server):
    settings.LLM_BASE_URL = llm_server.base_url
    settings.LLM_MODEL = "fake-gpt"
    settings.LLM_RETRIES = 1
    settings.LLM_BACKOFF_S = 0.01
    lm = tiny_language_model(tmp_path / "tiny-model", hook=HOOK)
    sae = random_sae(artifacts, lm=lm, name="tiny-sae", method="direct", d_sae=16, dead=[5])
    corpus = Corpus.objects.create(name="notes", kind="domain", source="files", location=str(tmp_path / "x.txt"))
    dset = DashboardSet.objects.create(sae=sae, corpus=corpus, status="ready", n_features=16)
    FeatureDashboard.objects.bulk_create(
        FeatureDashboard(dashboard_set=dset, feature_index=i, max_activation=0.0 if i == 5 else CORPUS_MAX, payload=b"")
        for i in range(16)
    )
    return {"sae": sae, "corpus": corpus, "server": llm_server, "artifacts": artifacts}


def run(job: Job) -> Job:
    status = job_run(job_id=job.pk, attempt=job.attempt)
    job.refresh_from_db()
    assert status == job.status
    return job


def brute_force_max(setup, text: str) -> float:
    """The feature's max over the phrase's tokens (BOS excluded), one phrase at a time, straight through sae_lens."""
    from sae_lens import SAE as LensSAE

    from compute.ml.lm import load_language_model

    loaded = load_language_model(source="local", location=setup["sae"].language_model.location, device="cpu")
    lens = LensSAE.load_from_disk(setup["artifacts"] / setup["sae"].artifact_path)
    ids = loaded.tokenizer(text, add_special_tokens=False)["input_ids"][:48]
    tokens = torch.tensor([[loaded.tokenizer.bos_token_id, *ids]])
    with torch.no_grad():
        _, cache = loaded.model.run_with_cache(tokens, names_filter=[HOOK])
        return float(lens.encode(cache[HOOK])[0, 1:, FEATURE].max())


def propose(setup, **kwargs) -> Decomposition:
    return decomposition_propose(
        sae=setup["sae"], corpus=setup["corpus"], feature_index=FEATURE, description="Albert Einstein",
        source="llm", **kwargs,
    )  # fmt: skip


def test_llm_proposal_then_batched_measurement(setup):
    setup["server"].reply(good(proposal()))
    decomposition = propose(setup)
    assert propose(setup).pk == decomposition.pk  # a double click queues nothing more
    assert Job.objects.filter(kind="propose_decomposition").count() == 1
    assert run(decomposition.job).status == JobStatus.SUCCEEDED
    decomposition.refresh_from_db()
    assert decomposition.status == "draft" and len(decomposition.components) == 5
    assert decomposition.warnings == []
    assert decomposition.llm_call.data == proposal() and decomposition.llm_call.model == "fake-gpt"
    assert "Albert Einstein" in setup["server"].requests[0]["json"]["messages"][1]["content"]

    job = run(decompositions_measure(decompositions=[decomposition]))
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert job.result["texts"] == 5 * 6 + len(GENERAL_CONTROLS)
    decomposition.refresh_from_db()
    m = decomposition.measurement
    assert decomposition.status == "measured" and m["corpus_max"] == CORPUS_MAX
    for component in m["components"][:2]:
        for entry in component["phrases"][:2] + component["near_misses"][:1]:
            expected = brute_force_max(setup, entry["text"])
            assert entry["max"] == pytest.approx(expected, abs=1e-4)
            assert entry["rel_max"] == pytest.approx(expected / CORPUS_MAX, abs=1e-4)
            assert len(entry["values"]) == len(entry["tokens"]) and "<|im_start|>" not in entry["tokens"]
    expected_verdict = classify(
        [
            {"name": c["name"], "phrase_maxima": [p["max"] for p in c["phrases"]],
             "control_maxima": [p["max"] for p in c["near_misses"]]}
            for c in m["components"]
        ],
        [g["max"] for g in m["general"]],
        corpus_max=CORPUS_MAX,
        thresholds=Thresholds(),
    )  # fmt: skip
    assert decomposition.verdict == expected_verdict["class"] == m["verdict"]["class"]
    assert decomposition.share == pytest.approx(expected_verdict["share"])


def test_garbage_from_the_llm_stores_nothing(setup):
    setup["server"].default = GARBAGE
    decomposition = propose(setup)
    job = run(decomposition.job)
    assert job.status == JobStatus.FAILED and "No usable proposal" in job.error and "no valid JSON" in job.error
    decomposition.refresh_from_db()
    assert decomposition.status == "failed" and decomposition.components == []
    assert len(setup["server"].requests) == 2  # asked again once (LLM_RETRIES=1)


def test_fewer_phrases_than_asked_is_a_warning_too_few_is_an_error(setup):
    setup["server"].reply(good(proposal(n_components=3, n_phrases=3)))
    decomposition = propose(setup, n_components=5, n_phrases=5)
    assert run(decomposition.job).status == JobStatus.SUCCEEDED
    decomposition.refresh_from_db()
    assert "3 sub-components of the 5 asked for." in decomposition.warnings
    assert "'part 0': 3 phrases of the 5 asked for." in decomposition.warnings

    setup["server"].default = good(proposal(n_phrases=2))  # below the floor of 3: rejected by the schema
    failed = decomposition_propose(
        sae=setup["sae"], corpus=setup["corpus"], feature_index=FEATURE, description="other", source="llm"
    )
    assert run(failed.job).status == JobStatus.FAILED
    failed.refresh_from_db()
    assert failed.components == [] and "minItems" not in failed.error  # a readable message, not a dump
    assert "phrases" in failed.error


def test_typed_components_edit_and_a_stale_measurement_is_dropped(setup):
    text = components_to_text(proposal(n_components=2)["components"])
    decomposition = decomposition_create_manual(
        sae=setup["sae"], corpus=setup["corpus"], feature_index=FEATURE, description="Einstein", components_text=text
    )
    assert decomposition.source == "manual" and decomposition.components == proposal(n_components=2)["components"]
    job = decompositions_measure(decompositions=[decomposition])
    edited = decomposition_edit(decomposition=decomposition, components_text=text + "\n+ one more phrase here")
    assert edited.version == 2 and edited.status == "draft"
    assert run(job).result == {"measured": 0, "stale": 1, "texts": 0}
    edited.refresh_from_db()
    assert edited.status == "draft" and edited.measurement == {}
    assert len(edited.components[1]["phrases"]) == 4


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"components_text": "physics\n+ a\n+ b"}, "at least 3"),
        ({"components_text": "+ a phrase first"}, "before any sub-component name"),
        ({"components_text": "physics\n+ a\n+ b\n+ " + "long " * 60}, "longer than 200 characters"),
        ({"description": "   "}, "Give the feature's description"),
        ({"feature_index": 5}, "never fired"),
        ({"feature_index": 99}, "features 0 to 15"),
    ],
)
def test_bad_input_is_refused_with_a_clear_message(setup, change, message):
    args = {"sae": setup["sae"], "corpus": setup["corpus"], "feature_index": FEATURE, "description": "Einstein",
            "components_text": "physics\n+ a\n+ b\n+ c\n- physical"}  # fmt: skip
    with pytest.raises(DecompositionError, match=message):
        decomposition_create_manual(**{**args, **change})
    assert not Decomposition.objects.exists()


def test_no_endpoint_configured_or_no_dashboard(setup, settings):
    settings.LLM_BASE_URL = ""
    with pytest.raises(DecompositionError, match="LLM_BASE_URL"):
        propose(setup)
    other = Corpus.objects.create(name="web", kind="general", source="files", location="/nowhere")
    with pytest.raises(DecompositionError, match="build it first"):
        decomposition_propose(
            sae=setup["sae"], corpus=other, feature_index=FEATURE, description="Einstein", source="local"
        )

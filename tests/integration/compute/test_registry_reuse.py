"""A worker process keeps the model it loaded for its next job, and a corpus's token count is stored once:
both are reused until their files change."""

from __future__ import annotations

import os
from collections import OrderedDict

import pytest

import compute.ml.corpora
import compute.ml.lm
from compute.models import SAE, Evaluation, JobStatus
from compute.services import registry
from tests.integration.compute.test_evaluation_service import evaluate
from tests.integration.compute.test_training_service import SCIENCE, base_params, run, setup, tiny_model_dir  # noqa: F401


@pytest.fixture
def loads(monkeypatch) -> list[str]:
    """Every model load of this process, from an empty cache (other tests' models are not kept)."""
    monkeypatch.setattr(registry, "_LOADED", OrderedDict())
    calls: list[str] = []
    real = compute.ml.lm.load_language_model

    def counted(**kwargs):
        calls.append(kwargs["location"])
        return real(**kwargs)

    monkeypatch.setattr(compute.ml.lm, "load_language_model", counted)
    return calls


def gsae_only(setup, **extra):  # noqa: F811
    return base_params(setup, methods=["gsae"], gsae_tokens=2000, **extra)


def test_a_second_job_in_the_same_process_reuses_the_loaded_model(setup, loads):  # noqa: F811
    job = run(gsae_only(setup))
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert len(loads) == 1
    gsae = SAE.objects.get(job=job)

    first = evaluate(gsae, setup)
    assert first.status == JobStatus.SUCCEEDED, first.error
    assert len(loads) == 1  # the evaluation ran on the model the training loaded

    # The kept model is the model as loaded: a fresh load gives the same evaluation.
    registry._LOADED.clear()
    fresh = evaluate(gsae, setup)
    assert len(loads) == 2
    kept, loaded = (Evaluation.objects.get(pk=j.result["evaluation"]).results for j in (first, fresh))
    assert kept["loss_recovered"]["patched"] == pytest.approx(loaded["loss_recovered"]["patched"], rel=1e-6)
    assert kept["loss_recovered"]["clean"] == pytest.approx(loaded["loss_recovered"]["clean"], rel=1e-6)

    # New weights at the same path are loaded again, not served from memory.
    config = setup["model"].location + "/config.json"
    stat = os.stat(config)
    os.utime(config, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert evaluate(gsae, setup).status == JobStatus.SUCCEEDED
    assert len(loads) == 3


def test_a_corpus_is_counted_once_and_again_when_its_file_changes(setup, loads, monkeypatch):  # noqa: F811
    counted = []
    real = compute.ml.corpora.count_tokens

    def counting(texts, tokenizer, context_size, **kwargs):
        counted.append(context_size)
        return real(texts, tokenizer, context_size, **kwargs)

    monkeypatch.setattr(compute.ml.corpora, "count_tokens", counting)

    def direct_count(path) -> tuple[int, int]:
        """Byte-level tokens: one per byte of each paragraph, plus its EOS."""
        paragraphs = [p for p in path.read_text(encoding="utf-8").split("\n\n") if p.strip()]
        return len(paragraphs), sum(len(p.encode()) + 1 for p in paragraphs)

    assert run(gsae_only(setup, domain_corpus_id=None)).status == JobStatus.SUCCEEDED
    assert len(counted) == 1  # the general corpus: the only one this run reads
    web = setup["web"]
    web.refresh_from_db()
    stored = registry.corpus_token_counts(corpus=web, language_model=setup["model"])
    assert (stored["documents"], stored["tokens"]) == direct_count(setup["tmp"] / "web.txt")
    assert stored["train_windows"] + stored["eval_windows"] == stored["tokens"] // 31  # windows of BOS + 31

    assert run(gsae_only(setup, domain_corpus_id=None, name_prefix="again")).status == JobStatus.SUCCEEDED
    assert len(counted) == 1  # stored: not counted again

    (setup["tmp"] / "web.txt").write_text("\n\n".join([SCIENCE] * 25), encoding="utf-8")
    web.refresh_from_db()
    assert registry.corpus_token_counts(corpus=web, language_model=setup["model"]) is None
    assert run(gsae_only(setup, domain_corpus_id=None, name_prefix="new-text")).status == JobStatus.SUCCEEDED
    assert len(counted) == 2
    web.refresh_from_db()
    stored = registry.corpus_token_counts(corpus=web, language_model=setup["model"])
    assert (
        (stored["documents"], stored["tokens"])
        == direct_count(setup["tmp"] / "web.txt")
        == (25, 25 * (len(SCIENCE.encode()) + 1))
    )
    assert len(loads) == 1  # three training runs, one model load

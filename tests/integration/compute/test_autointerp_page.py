"""The automated-interpretability page shows the explanations themselves, says why features got none, and
warns when the scorer answered the same way every time (its 0.5 then measures nothing)."""

from __future__ import annotations

from html import unescape

import pytest

from compute.models import Explanation, ExplanationScore, Job, JobStatus
from compute.services.autointerp import autointerp_start
from tests.integration.compute.test_autointerp_jobs import DIGIT_FEATURES, _run, dset, endpoint  # noqa: F401

pytestmark = pytest.mark.django_db
SILENT = [10, 11, 12]  # plain windows: the feature never fires there


@pytest.fixture
def explained(dset, endpoint):  # noqa: F811
    job = autointerp_start(sae_id=dset.sae_id, corpus_id=dset.corpus_id, feature_indices=[*DIGIT_FEATURES, *SILENT])
    assert _run(job) == JobStatus.SUCCEEDED, Job.objects.get(pk=job.pk).error
    return Job.objects.get(pk=job.pk)


def test_explanations_are_on_the_page_and_left_out_features_explained(explained, admin_client):
    autos = Explanation.objects.filter(source="auto")
    assert sorted(autos.values_list("feature__feature_index", flat=True)) == DIGIT_FEATURES
    page = unescape(admin_client.get("/compute/autointerp/").content.decode())
    assert "Automated explanations: synthetic-direct on science (4 features)" in page
    table = page[page.index("Automated explanations:") :]
    assert table.count("<td>digits</td>") == len(DIGIT_FEATURES)
    assert f"Left out: {len(SILENT)} never fire on this corpus" in page
    assert "The scorer measured nothing" not in page


def test_a_scorer_that_always_answers_no_is_flagged(explained, admin_client):
    scores = ExplanationScore.objects.all()
    assert scores.count() == 2 * len(DIGIT_FEATURES)
    # what a scorer answering "no" to every sample records: every prediction 0, so no true or false positive
    for score in scores:
        positives = score.tp + score.fn
        score.predictions = [0] * len(score.predictions)
        score.tp, score.fp, score.fn, score.tn = 0, 0, positives, score.n - positives
        score.balanced_accuracy = 0.5
        score.save()
    page = unescape(admin_client.get("/compute/autointerp/").content.decode())
    assert "The scorer measured nothing for synthetic-direct on science" in page
    assert f'"no" {scores.count()} times' in page

    # one honest score among them: no longer all constant, but the constant ones are still counted
    honest = scores.first()
    honest.tp, honest.fn = honest.fn, 0
    honest.save()
    page = unescape(admin_client.get("/compute/autointerp/").content.decode())
    assert "The scorer measured nothing" not in page
    assert f"{scores.count() - 1} of {scores.count()} scores come from a scorer that answered the same way" in page

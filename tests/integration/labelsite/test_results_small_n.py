"""Results of a campaign of a few features: every statistic says how many features it stands on, those below
the stated minimum are withheld or marked, numbers share one format, and charts name questions by their
prompts and clip no interval."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from compute.models import DashboardSet, FeatureDashboard
from labelsite.selectors.result_figures import means_figure, measured_figure
from labelsite.selectors.results import campaign_results
from labelsite.statistics import MIN_FEATURES
from tests.integration.labelsite.factories import campaign_draft, campaign_open_offline, judge_all

FEATURES = 3  # per source: below MIN_FEATURES


@pytest.fixture
def small(registry, bob, carol):
    campaign = campaign_open_offline(
        campaign_draft(registry=registry, labellers=[bob, carol], features=FEATURES, overlap=2)
    )
    judge_all(campaign, [bob, carol])
    for sae in registry.saes:
        for corpus, scale in ((registry.domain, 0.01), (registry.general, 0.002)):
            dset = DashboardSet.objects.create(sae=sae, corpus=corpus, status="ready", n_features=sae.d_sae)
            FeatureDashboard.objects.bulk_create(
                FeatureDashboard(dashboard_set=dset, feature_index=i, frequency=scale * (i % 7 + 1), payload=b"")
                for i in range(sae.d_sae)
            )
    return campaign


def test_correlations_and_comparisons_below_the_minimum_are_flagged(small):
    assert FEATURES < MIN_FEATURES
    results = campaign_results(campaign=small, n_resamples=200)
    correlations = [c for c in results["measured"]["spearman"] if c["n"]]
    assert correlations and all(c["n"] == FEATURES and c["below_minimum"] for c in correlations)
    comparisons = [c for s in results["scores"] for c in s["comparisons"]]
    assert comparisons and all((c["n_a"], c["n_b"], c["below_minimum"]) == (3, 3, True) for c in comparisons)


def test_the_page_withholds_them_and_marks_means_and_numbers_share_one_format(admin_client, small):
    html = admin_client.get(reverse("manage:campaign-results", args=[small.pk])).content.decode()
    measured = html[html.index('id="measured"') :]
    measured = measured[: measured.index("</table>")]
    assert measured.count(f"withheld (n &lt; {MIN_FEATURES})") == measured.count("<tr>") - 1  # every row but the head
    comparisons = html[html.index('id="comparisons"') :]
    assert f"withheld (fewer than {MIN_FEATURES} features in a source)" in comparisons[: comparisons.index("</table>")]
    scores = html[html.index('id="scores"') :]
    assert 'class="few"' in scores and f"* over fewer than {MIN_FEATURES} features" in scores
    # one format: no number in any table cell carries more than 3 significant digits
    cells = re.findall(r"<td[^>]*>(.*?)</td>", html, re.S)
    decimals = [m for cell in cells for m in re.findall(r"(?<![\w.])-?\d+\.\d+", re.sub(r"<[^>]+>", " ", cell))]
    assert decimals
    for number in decimals:
        digits = number.lstrip("-").replace(".", "").lstrip("0")
        assert len(digits) <= 3, number


def _drawn(fig):
    fig.draw_without_rendering()
    return fig


def test_charts_use_prompts_and_never_clip_an_interval(small):
    results = campaign_results(campaign=small, n_resamples=200)
    fig = _drawn(means_figure(results))
    ax = fig.axes[0]
    ticks = [t.get_text().replace("\n", " ") for t in ax.get_xticklabels()]
    assert ticks == [s["prompt"] for s in results["scores"]]
    highest = max(
        e["estimate"]["high"] for s in results["scores"] for e in s["per_source"].values() if e["estimate"]["high"]
    )
    assert ax.get_ylim()[1] > highest
    # the legend sits outside the plotting area: it covers no bar or interval
    legend = ax.get_legend().get_window_extent()
    assert not legend.overlaps(ax.get_window_extent())

    fig = _drawn(measured_figure(results))
    for ax in fig.axes:
        texts = [t.get_text() for t in ax.get_legend().get_texts()]
        assert texts and all(f"n = {FEATURES} < {MIN_FEATURES}: ρ withheld" in t for t in texts)
        assert not ax.get_legend().get_window_extent().overlaps(ax.get_window_extent())
        assert "_score" not in ax.get_title() and "_score" not in ax.get_ylabel()

"""A synthetic campaign with known answers: the results, exports and API against independent computations."""

from __future__ import annotations

import csv
import io
import json
import statistics

import krippendorff
import numpy as np
import pyarrow.parquet as pq
import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from scipy.stats import spearmanr
from sklearn.metrics import cohen_kappa_score

from compute.models import DashboardSet, FeatureDashboard
from labelsite.models import Assignment, Campaign, Item, Judgment
from labelsite.selectors.exports import labeller_pseudonym
from labelsite.selectors.results import campaign_results
from labelsite.services.assignment import assignment_next, assignment_skip
from labelsite.services.campaigns import campaign_close
from labelsite.services.judgments import judgment_submit
from tests.integration.labelsite.factories import campaign_draft, campaign_open_offline

pytestmark = pytest.mark.django_db

FEATURES = 8
TRICKY = '=SUM(1)\nline two, "quoted" — ünïcode'


def _answers(method: str, feature: int, labeller: str) -> dict:
    """Source A (direct) is specific (3); source B (ssae) is generic (0 or 1); carol is stricter by one on
    every third feature; bob flags even features of A as nice."""
    base = 3 if method == "direct" else feature % 2
    score = max(base - 1, 0) if labeller == "carol" and feature % 3 == 0 else base
    return {
        "domain_explanation": TRICKY if feature % 5 == 0 else f"about feature {feature}",
        "domain_score": score,
        "general_explanation": "",
        "general_score": 1 if method == "direct" else (feature + (labeller == "carol")) % 4,
        "nice": labeller == "bob" and method == "direct" and feature % 2 == 0,
        "comment": "",
    }


@pytest.fixture
def dave(db):
    return get_user_model().objects.create_user("dave", "dave@example.org", "x")


@pytest.fixture
def known(registry, bob, carol, dave) -> Campaign:
    campaign = campaign_open_offline(
        campaign_draft(registry=registry, labellers=[dave, bob, carol], overlap=2, features=FEATURES, seed=5)
    )
    for reason in ("unreadable", "unreadable", "no idea"):
        held = assignment_next(campaign_id=campaign.pk, labeller=dave)
        assignment_skip(item_code=Item.objects.get(pk=held.item_id).code, labeller=dave, reason=reason)
    for n, user in enumerate((bob, carol)):
        while (held := assignment_next(campaign_id=campaign.pk, labeller=user)) is not None:
            item = Item.objects.select_related("source__sae").get(pk=held.item_id)
            judgment_submit(
                item_code=item.code,
                labeller=user,
                answers=_answers(item.source.sae.method, item.feature_index, user.username),
                time_spent_ms=1000 * (item.feature_index + 1) + n,
                panel_order="domain_first",
            )
    for sae in registry.saes:
        for corpus, scale in ((registry.domain, 0.01), (registry.general, 0.002)):
            dset = DashboardSet.objects.create(sae=sae, corpus=corpus, status="ready", n_features=sae.d_sae)
            FeatureDashboard.objects.bulk_create(
                FeatureDashboard(dashboard_set=dset, feature_index=i, frequency=scale * ((i * 7) % 11 + 1), payload=b"")
                for i in range(sae.d_sae)
            )
    return campaign


def _db_scores(campaign, key: str) -> dict[str, list]:
    out: dict[str, list] = {}
    for j in Judgment.objects.filter(campaign=campaign).select_related("item__source__sae"):
        out.setdefault(j.item.source.sae.method, []).append(j.answers[key])
    return out


def _label(results, method):
    return next(s["label"] for s in results["sources"] if s["method"] == method)


def test_known_answer_campaign_results(known, registry):
    results = campaign_results(campaign=known, n_resamples=500)
    assert results["judgments"] == Judgment.objects.count() == 2 * 2 * FEATURES
    scores = {s["key"]: s for s in results["scores"]}
    assert set(scores) == {"domain_score", "general_score"}
    direct, ssae = _label(results, "direct"), _label(results, "ssae")
    for key in scores:
        db = _db_scores(known, key)
        for method, label in (("direct", direct), ("ssae", ssae)):
            entry = scores[key]["per_source"][label]
            assert entry["estimate"]["mean"] == pytest.approx(statistics.fmean(db[method]), abs=1e-4)
            assert entry["estimate"]["low"] <= entry["estimate"]["mean"] <= entry["estimate"]["high"]
            assert entry["estimate"]["resampled"] == "features and labellers"
            assert {lv: d["count"] for lv, d in entry["distribution"].items()} == {
                str(s): db[method].count(s) for s in range(4)
            }
            # every labeller judged every item: the labeller-adjusted mean is the raw mean
            assert entry["adjusted_mean"] == pytest.approx(statistics.fmean(db[method]), abs=1e-4)
    (comparison,) = scores["domain_score"]["comparisons"]
    assert {comparison["a"], comparison["b"]} == {direct, ssae}
    sign = 1 if comparison["a"] == direct else -1
    assert comparison["cliffs_delta"] == sign * 1.0  # every direct feature outscores every ssae feature
    assert comparison["p_value"] < 0.01


def test_nice_skips_and_time(known):
    results = campaign_results(campaign=known, n_resamples=200)
    (nice,) = results["flags"]
    direct = nice["per_source"][_label(results, "direct")]
    flagged = {j.item_id for j in Judgment.objects.filter(campaign=known) if j.answers["nice"]}
    # The draw depends on the SAE's row id, so count the even direct features it drew (bob flags those).
    even = Item.objects.filter(campaign=known, source__sae__method="direct").values_list("feature_index", flat=True)
    even = sum(1 for i in even if i % 2 == 0)
    assert direct["features_yes"] == len(flagged) == even
    assert direct["yes"] == even and direct["judgments"] == 2 * FEATURES
    assert direct["share"]["mean"] == pytest.approx(even / (2 * FEATURES))  # one of two judgments per flagged one
    assert nice["per_source"][_label(results, "ssae")]["features_yes"] == 0
    assert results["skips"]["reasons"] == [{"reason": "unreadable", "count": 2}, {"reason": "no idea", "count": 1}]
    skipped_total = sum(s["skipped"] for s in results["skips"]["per_source"].values())
    assert skipped_total == Assignment.objects.filter(status="skipped").count() == 3
    times = list(Judgment.objects.values_list("time_spent_ms", flat=True))
    assert results["time"]["median_s"] == round(statistics.median(times) / 1000, 1)
    dave_row = next(r for r in results["per_labeller"] if r["labeller"] == "dave")
    assert dave_row["skipped"] == 3 and dave_row["judgments"] == 0


def test_per_labeller_shows_the_stricter_rater(known):
    results = campaign_results(campaign=known, n_resamples=200)
    rows = {r["labeller"]: r["questions"]["domain_score"] for r in results["per_labeller"]}
    judged = {
        (j.item_id, j.labeller.username): j.answers["domain_score"] for j in Judgment.objects.select_related("labeller")
    }
    items = {i for i, _ in judged}
    brute = statistics.fmean(judged[(i, "carol")] - judged[(i, "bob")] for i in items)
    assert rows["carol"]["vs_others"] == pytest.approx(brute, abs=1e-3) and brute < 0
    assert rows["bob"]["vs_others"] == pytest.approx(-brute, abs=1e-3)
    assert rows["bob"]["shared_items"] == 2 * FEATURES


def test_agreement_equals_the_krippendorff_package_and_sklearn(known):
    results = campaign_results(campaign=known, n_resamples=200)
    section = next(a for a in results["agreement"] if a["key"] == "domain_score")
    judged = list(Judgment.objects.select_related("labeller").order_by("item_id"))
    items = sorted({j.item_id for j in judged})
    raters = ["bob", "carol"]
    data = np.full((2, len(items)), np.nan)
    for j in judged:
        data[raters.index(j.labeller.username), items.index(j.item_id)] = j.answers["domain_score"]
    expected = krippendorff.alpha(reliability_data=data, value_domain=[0, 1, 2, 3], level_of_measurement="ordinal")
    assert section["alpha"]["alpha"] == pytest.approx(expected, abs=1e-4)
    assert section["alpha"]["low"] <= section["alpha"]["alpha"] <= section["alpha"]["high"]
    (pair,) = section["pairs"]
    assert pair["shared"] == len(items)
    assert pair["percent_agreement"] == pytest.approx(100 * np.mean(data[0] == data[1]), abs=0.01)
    kappa = cohen_kappa_score(data[0].astype(int), data[1].astype(int), labels=[0, 1, 2, 3], weights="quadratic")
    assert pair["kappa"] == pytest.approx(kappa, abs=1e-4)


def test_measured_vs_rated_against_scipy(known):
    results = campaign_results(campaign=known, n_resamples=200)
    label = _label(results, "direct")
    rows = [f for f in results["measured"]["features"] if f["source"] == label]
    assert len(rows) == FEATURES
    for row in rows:
        i = row["feature_index"]
        d, g = 0.01 * ((i * 7) % 11 + 1), 0.002 * ((i * 7) % 11 + 1)
        assert row["freq_domain"] == pytest.approx(d) and row["freq_general"] == pytest.approx(g)
        assert row["log_odds"] == pytest.approx(np.log(d / (1 - d)) - np.log(g / (1 - g)), abs=1e-6)
    label = _label(results, "ssae")
    rows = [f for f in results["measured"]["features"] if f["source"] == label]
    expected = spearmanr([r["freq_domain"] for r in rows], [r["general_score"] for r in rows]).statistic
    got = next(
        c
        for c in results["measured"]["spearman"]
        if c["source"] == label and c["question"] == "general_score" and c["measure"] == "freq_domain"
    )
    assert got["rho"] == pytest.approx(expected, abs=1e-4) and got["n"] == FEATURES


def _db_rows(campaign) -> list[dict]:
    """The expected export rows, computed from the models directly."""
    rows = []
    for j in Judgment.objects.filter(campaign=campaign).select_related("item__source__sae").order_by("pk"):
        rows.append(
            {
                "item_code": j.item.code,
                "status": "judged",
                "sae": j.item.source.sae.name,
                "feature_index": j.item.feature_index,
                "labeller": labeller_pseudonym(j.labeller_id),
                **{k: j.answers[k] for k in ("domain_explanation", "domain_score", "nice", "general_score")},
                "time_spent_ms": j.time_spent_ms,
                "panel_order": j.panel_order,
                "created_at": j.created_at,
            }
        )
    for a in Assignment.objects.filter(campaign=campaign, status="skipped").order_by("pk"):
        rows.append({"item_code": a.item.code, "status": "skipped", "skip_reason": a.skip_reason})
    return rows


def _check(read: list[dict], expected: list[dict], convert) -> None:
    assert len(read) == len(expected)
    for got, want in zip(read, expected, strict=True):
        for key, value in want.items():
            assert convert(key, got[key]) == value, (key, got[key], value)


def test_exports_read_back_equal_the_database(admin_client, known):
    from datetime import datetime

    expected = _db_rows(known)
    base = f"/api/manage/campaigns/{known.pk}/judgments"

    response = admin_client.get(f"{base}.csv")
    assert response.streaming
    text = b"".join(response.streaming_content).decode()
    rows = list(csv.DictReader(io.StringIO(text)))

    def from_csv(key, value):
        if key in ("domain_score", "general_score", "feature_index", "time_spent_ms"):
            return int(value)
        if key == "nice":
            return value == "true"
        if key == "created_at":
            return datetime.fromisoformat(value)
        if key == "domain_explanation" and value.startswith("'"):
            return value[1:]  # the documented guard against spreadsheet formulas
        return value

    _check(rows, expected, from_csv)
    assert rows[0]["campaign"] == known.name and "bob" not in text and "carol" not in text

    response = admin_client.get(f"{base}.jsonl")
    lines = [json.loads(line) for line in b"".join(response.streaming_content).decode().splitlines()]
    _check(lines, expected, lambda k, v: datetime.fromisoformat(v) if k == "created_at" else v)

    response = admin_client.get(f"{base}.parquet")
    table = pq.read_table(io.BytesIO(b"".join(response.streaming_content)))
    _check(table.to_pylist(), expected, lambda k, v: v)
    assert table.schema.field("domain_score").type == "int64" and table.schema.field("nice").type == "bool"

    named = b"".join(admin_client.get(f"{base}.csv?identities=1").streaming_content).decode()
    assert "bob" in named and "carol" in named


def test_paginated_judgments_match_the_export(admin_client, known):
    page = admin_client.get(f"/api/manage/campaigns/{known.pk}/judgments/?limit=5&offset=5").json()
    assert page["count"] == Judgment.objects.count()
    expected = [r for r in _db_rows(known) if r["status"] == "judged"][5:10]
    assert [r["item_code"] for r in page["results"]] == [r["item_code"] for r in expected]


def test_results_page_figures_and_breakdown(admin_client, known, registry):
    html = admin_client.get(reverse("manage:campaign-results", args=[known.pk])).content.decode()
    for sae in registry.saes:
        assert sae.name in html
    assert html.count("<svg") >= 4 and "Cliff" in html and "Krippendorff" in html
    for name in ("means", "breakdown", "flags", "measured", "labellers"):
        for fmt, magic in (("png", b"\x89PNG"), ("svg", b"<?xml")):
            response = admin_client.get(f"/api/manage/campaigns/{known.pk}/figures/{name}.{fmt}")
            assert response.status_code == 200 and response.content.startswith(magic), (name, fmt)
    rows = list(
        csv.DictReader(
            io.StringIO(admin_client.get(f"/api/manage/campaigns/{known.pk}/breakdown.csv").content.decode())
        )
    )
    assert len(rows) == 4 and {r["question"] for r in rows} == {"domain_score", "general_score"}
    body = admin_client.get(f"/api/manage/campaigns/{known.pk}/breakdown.json").json()
    assert body["campaign"]["id"] == known.pk and "feature_means" not in body["scores"][0]
    api = admin_client.get(f"/api/manage/campaigns/{known.pk}/results/").json()
    assert all(row["labeller"].startswith("L-") for row in api["per_labeller"])


RESULT_PATHS = (
    "/api/manage/campaigns/{id}/results/",
    "/api/manage/campaigns/{id}/judgments/",
    "/api/manage/campaigns/{id}/judgments.csv",
    "/api/manage/campaigns/{id}/judgments.jsonl",
    "/api/manage/campaigns/{id}/judgments.parquet",
    "/api/manage/campaigns/{id}/breakdown.csv",
    "/api/manage/campaigns/{id}/breakdown.json",
    "/api/manage/campaigns/{id}/figures/means.png",
    "/api/manage/campaigns/{id}/figures/breakdown.svg",
)


def test_every_result_endpoint_refuses_labellers_and_anonymous(client, known, bob):
    paths = [p.format(id=known.pk) for p in RESULT_PATHS]
    for path in paths:
        assert client.get(path).status_code == 401, path
    page = reverse("manage:campaign-results", args=[known.pk])
    assert client.get(page)["Location"].startswith(reverse("login"))
    client.force_login(bob)
    for path in [*paths, page]:
        assert client.get(path).status_code == 403, path


def test_hidden_mapping_refuses_results_until_closed(admin_client, registry, bob):
    campaign = campaign_open_offline(campaign_draft(registry=registry, labellers=[bob], hide_mapping_until_closed=True))
    for path in RESULT_PATHS:
        response = admin_client.get(path.format(id=campaign.pk))
        assert response.status_code == 409, path
        assert "until it is closed" in response.content.decode()
    campaign_close(campaign_id=campaign.pk)
    assert admin_client.get(f"/api/manage/campaigns/{campaign.pk}/results/").status_code == 200

"""Decomposition questions in a campaign: the labeller sees the feature's measured sub-components (blind) and
answers per sub-component; the answers are stored and exported like every other judgment."""

from __future__ import annotations

import pytest
from django.urls import reverse

from compute.models import Decomposition
from labelsite.models import Item, Judgment
from labelsite.questions import default_questions
from labelsite.services.audit import campaign_audit
from labelsite.services.campaigns import items_render_decompositions
from tests.integration.labelsite.factories import campaign_draft, campaign_open_offline

pytestmark = pytest.mark.django_db

PARTS = {"key": "genuine_parts", "type": "per_component", "prompt": "A genuine part of this feature?",
         "required": True, "panel": None,
         "options": [{"value": "yes", "label": "Yes"}, {"value": "no", "label": "No"},
                     {"value": "unsure", "label": "Unsure"}]}  # fmt: skip
CLASS = {"key": "decomposition_class", "type": "choice", "prompt": "Overall", "required": False, "panel": None,
         "options": [{"value": "cleanly", "label": "Decomposes cleanly"}, {"value": "partly", "label": "Partly"},
                     {"value": "not", "label": "Does not decompose"}]}  # fmt: skip


def measured(sae, feature_index: int) -> Decomposition:
    def phrase(text: str, value: float) -> dict:
        return {"text": text, "tokens": [text], "values": [value], "max": value, "rel_max": value / 2, "n_active": 1,
                "total": value, "rel_total": value / 2, "cut": False}  # fmt: skip

    components = [
        {"name": name, "phrases": [phrase(f"{name} {i}", 1.0 + i) for i in range(3)], "near_misses": []}
        for name in ("physics", "Germany")
    ]
    verdict = {"class": "partly", "share": 0.5, "n_activating": 1, "n_components": 2, "general_level": 0.0,
               "thresholds": {"activation": 0.3, "margin": 0.1, "clean_share": 0.8, "partly_share": 0.4},
               "components": [{"name": c["name"], "level": 1.0, "activates": True} for c in components]}  # fmt: skip
    return Decomposition.objects.create(
        sae=sae, corpus_id=_corpus(), feature_index=feature_index,
        description="SECRET-DESCRIPTION", source="manual", status="measured", corpus_max=2.0,
        components=[{"name": c["name"], "phrases": [p["text"] for p in c["phrases"]], "near_misses": []}
                    for c in components],
        measurement={"corpus_max": 2.0, "components": components, "general": [], "verdict": verdict},
        verdict="partly", share=0.5,
    )  # fmt: skip


def _corpus():
    from compute.models import Corpus

    return Corpus.objects.get(name="math-books").pk


def test_labeller_answers_per_sub_component_blind(registry, bob, labeller_client):
    campaign = campaign_open_offline(
        campaign_draft(
            registry=registry,
            labellers=[bob],
            features=2,
            questions=[*default_questions(groups=["domain"]), PARTS, CLASS],
        )  # fmt: skip
    )
    items = list(Item.objects.filter(campaign=campaign).select_related("source"))
    for item in items[:-1]:
        measured(item.source.sae, item.feature_index)
    assert items_render_decompositions(campaign=campaign) == len(items) - 1
    assert Item.objects.get(pk=items[-1].pk).decomposition_html == ""  # no measured decomposition: no panel
    # The blinding audit looks at the sub-components panel too (its presence and content are observables).
    audit = campaign_audit(campaign_id=campaign.pk)
    observables = audit.presentation.observables + audit.content.observables
    assert any(o["observable"].startswith("decomposition.") for o in observables)
    code = labeller_client.post(reverse("label:next", args=[campaign.pk]))["Location"].rstrip("/").rsplit("/", 1)[1]
    with_parts = Item.objects.select_related("source").get(code=code)
    if not with_parts.components:  # the one item without a decomposition came first: take the next
        labeller_client.post(reverse("label:skip", args=[code]), {"reason": "no parts"})
        code = labeller_client.post(reverse("label:next", args=[campaign.pk]))["Location"].rstrip("/").rsplit("/", 1)[1]
        with_parts = Item.objects.select_related("source").get(code=code)
    assert with_parts.components == ["physics", "Germany"]
    # Blind: neither the SAE, nor the feature index, nor the description reaches the panel.
    for secret in (with_parts.source.sae.name, "SECRET-DESCRIPTION", "/compute/", with_parts.source.sae.method):
        assert secret not in with_parts.decomposition_html

    page = labeller_client.get(reverse("label:item", args=[with_parts.code]))
    html = page.content.decode()
    assert page.status_code == 200
    assert "Proposed sub-components" in html and 'name="genuine_parts__0"' in html and 'name="genuine_parts__1"' in html
    form = {"domain_explanation": "x", "domain_score": "2", "decomposition_class": "partly", "time_spent_ms": "10"}
    missing = labeller_client.post(reverse("label:item", args=[with_parts.code]), {**form, "genuine_parts__0": "yes"})
    assert missing.status_code == 200 and "answer for &#x27;Germany&#x27;" in missing.content.decode()
    done = labeller_client.post(
        reverse("label:item", args=[with_parts.code]), {**form, "genuine_parts__0": "yes", "genuine_parts__1": "unsure"}
    )
    assert done.status_code == 302
    judgment = Judgment.objects.get(item=with_parts)
    assert judgment.answers["genuine_parts"] == {"physics": "yes", "Germany": "unsure"}
    assert judgment.answers["decomposition_class"] == "partly"

    revisit = labeller_client.get(reverse("label:item", args=[with_parts.code])).content.decode()
    assert 'name="genuine_parts__1" value="unsure" required checked' in revisit

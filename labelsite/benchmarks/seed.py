"""Fill a database with a large open campaign: the load behind `bench web` and the constant-query test."""

from __future__ import annotations

import random
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from labelsite.models import Assignment, Campaign, CampaignSAE, Item, Judgment

EXAMPLE_TOKENS = [
    "the",
    "derivative",
    "of",
    "x",
    "squared",
    "is",
    "two",
    "x",
    "so",
    "the",
    "slope",
    "at",
    "one",
    "is",
    "two",
]


def panel_html(n_examples: int) -> str:
    """A blind panel of `n_examples` context rows, rendered as labellers get them (labelsite.services.panels)."""
    from labelsite.services.panels import Context, context_html

    tokens = [" " + w for w in (EXAMPLE_TOKENS * 3)[:33]]  # a dashboard context: 24 before the peak, 8 after
    relative = [(j * 7 % 10) / 10 for j in range(len(tokens))]
    rows = "".join(
        context_html(Context(tokens=tokens, relative=relative, value=1.0, seq=i, start=0), magnitudes=False)
        for i in range(n_examples)
    )
    return f'<div class="dash blind-panel"><h3>Strongest activations</h3><ul class="examples">{rows}</ul></div>'


def seed_labelling_load(
    *,
    items: int = 10_000,
    judgments: int = 50_000,
    seed_labellers: int = 10,
    load_labellers: int = 20,
    panel_examples: int = 15,
    name: str = "Load test",
) -> dict:
    """An open campaign of `items` items over two SAEs with `judgments` judgments already made.

    Overlap k is one more than the judgments per item, so every item still has one free slot for the
    `load_labellers` (who have judged nothing yet). Returns ids the load needs.
    """
    from compute.models import SAE, Corpus, LanguageModel

    per_item = -(-judgments // items)
    if per_item > seed_labellers:
        raise ValueError(f"{judgments} judgments over {items} items need at least {per_item} seed labellers.")
    rng = random.Random(0)
    users = get_user_model()
    with transaction.atomic():
        lm = LanguageModel.objects.create(name=f"{name}-lm".lower().replace(" ", "-"), source="package", location="x")
        domain = Corpus.objects.create(name=f"{lm.name}-d", kind="domain", source="demo", location="d")
        general = Corpus.objects.create(name=f"{lm.name}-g", kind="general", source="demo", location="g")
        d_sae = max(items, 2)
        saes = [
            SAE.objects.create(
                name=f"{lm.name}-{m}", method=m, status="ready", language_model=lm, hook_name="h", d_in=8, d_sae=d_sae
            )
            for m in ("direct", "ssae")
        ]
        seeders = [users.objects.create_user(f"{lm.name}-seed-{i}") for i in range(seed_labellers)]
        loaders = [users.objects.create_user(f"{lm.name}-load-{i}") for i in range(load_labellers)]
        campaign = Campaign.objects.create(
            name=name,
            domain_corpus=domain,
            general_corpus=general,
            overlap=per_item + 1,
            status=Campaign.Status.OPEN,
            guidelines="Score **subject-specificity**.",
        )
        campaign.labellers.set(seeders + loaders)
        sources = [CampaignSAE.objects.create(campaign=campaign, sae=s, n_features=items // 2) for s in saes]
        html = panel_html(panel_examples)
        rows = [
            Item(
                campaign=campaign,
                source=sources[i % 2],
                feature_index=i,
                overlap=per_item + 1,
                domain_html=html,
                general_html=html,
            )
            for i in range(items)
        ]
        rng.shuffle(rows)
        Item.objects.bulk_create(rows, batch_size=2000)
        item_ids = list(Item.objects.filter(campaign=campaign).values_list("pk", flat=True))
        now = timezone.now()
        assignments, made = [], []
        counts: dict[int, int] = {}
        for n in range(judgments):
            item_id = item_ids[n % items]
            # round r = n // items gives each item distinct labellers, rotated so the work is spread evenly
            labeller = seeders[(n // items + n % items) % seed_labellers]
            counts[item_id] = counts.get(item_id, 0) + 1
            assignments.append(
                Assignment(
                    campaign=campaign,
                    item_id=item_id,
                    labeller=labeller,
                    status="done",
                    leased_at=now,
                    expires_at=now + timedelta(hours=1),
                )
            )
            made.append(
                Judgment(
                    campaign=campaign,
                    item_id=item_id,
                    labeller=labeller,
                    answers={
                        "domain_explanation": "seeded",
                        "domain_score": rng.randint(0, 3),
                        "general_explanation": "",
                        "general_score": rng.randint(0, 3),
                        "nice": False,
                        "comment": "",
                    },
                    time_spent_ms=rng.randint(5000, 90000),
                )
            )
        Assignment.objects.bulk_create(assignments, batch_size=5000)
        Judgment.objects.bulk_create(made, batch_size=5000)
        by_count: dict[int, list[int]] = {}
        for item_id, c in counts.items():
            by_count.setdefault(c, []).append(item_id)
        for c, ids in by_count.items():
            for start in range(0, len(ids), 900):
                Item.objects.filter(pk__in=ids[start : start + 900]).update(slots_taken=c, judgment_count=c)
    return {"campaign_id": campaign.pk, "load_labeller_ids": [u.pk for u in loaders], "overlap": per_item + 1}

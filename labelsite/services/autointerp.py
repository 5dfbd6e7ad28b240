"""Score a campaign's human explanations beside automated ones (compute's autointerp jobs).

Per source SAE and per panel (domain explanations on the domain corpus, general explanations on the
general corpus), one job explains the campaign's features and scores every explanation of them; the
human explanations travel as job parameters, so compute never reads labelsite.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from compute.jobs import JobInputError
from compute.models import Job, JobKind, JobStatus
from compute.services.autointerp import autointerp_start
from labelsite.models import Campaign, Item, Judgment
from labelsite.services import LabelError

PANELS = ("domain", "general")


def judgment_answer(judgment: Judgment, key: str) -> Any:
    """A judgment's answer to a question key (questions as data, or the original columns)."""
    answers = getattr(judgment, "answers", None)
    if isinstance(answers, dict) and key in answers:
        return answers[key]
    return getattr(judgment, key, None)


def human_explanations(*, campaign: Campaign, source_id: int, panel: str) -> list[dict[str, Any]]:
    """The labellers' explanations of one source's features from one panel, as autointerp entries."""
    entries = []
    judgments = Judgment.objects.filter(campaign=campaign, item__source_id=source_id, item__kind=Item.Kind.REGULAR)
    for judgment in judgments.select_related("item"):
        text = judgment_answer(judgment, f"{panel}_explanation")
        if not isinstance(text, str) or not text.strip():
            continue
        entries.append(
            {
                "feature_index": judgment.item.feature_index,
                "ref": f"campaign:{campaign.pk}/judgment:{judgment.pk}/{panel}",
                "text": text.strip(),
                "score": judgment_answer(judgment, f"{panel}_score"),
                "campaign_id": campaign.pk,
            }
        )
    return entries


def campaign_autointerp_start(*, campaign_id: int, created_by=None) -> tuple[list[Job], list[str]]:
    """Start (or find running) the explain-and-score jobs of a campaign; returns (jobs, what was skipped and why).

    A job already queued or running for the same source and corpus is returned instead of a second one,
    so a double click starts nothing twice.
    """
    with transaction.atomic():
        campaign = (
            Campaign.objects.select_for_update().select_related("domain_corpus", "general_corpus").get(pk=campaign_id)
        )
        if not Item.objects.filter(campaign=campaign).exists():
            raise LabelError("This campaign has no items yet: open it first.")
        jobs, skipped = [], []
        for source in campaign.sources.select_related("sae"):
            regular = Item.objects.filter(source=source, kind=Item.Kind.REGULAR)
            indices = sorted(regular.values_list("feature_index", flat=True))
            for panel in PANELS:
                corpus = campaign.domain_corpus if panel == "domain" else campaign.general_corpus
                active = Job.objects.filter(
                    kind=JobKind.AUTOINTERP,
                    status__in=[JobStatus.QUEUED, JobStatus.RUNNING],
                    params__campaign_id=campaign.pk,
                    params__sae_id=source.sae_id,
                    params__corpus_id=corpus.pk,
                ).first()
                if active is not None:
                    jobs.append(active)
                    continue
                try:
                    jobs.append(
                        autointerp_start(
                            sae_id=source.sae_id,
                            corpus_id=corpus.pk,
                            feature_indices=indices,
                            human=human_explanations(campaign=campaign, source_id=source.pk, panel=panel),
                            campaign_id=campaign.pk,
                            created_by=created_by,
                        )
                    )
                except JobInputError as exc:
                    skipped.append(f"{source.sae.name} on {corpus.name}: {exc}")
        if not jobs:
            raise LabelError("Nothing to explain: " + " ".join(skipped))
    return jobs, skipped

"""The demo's main job: a small domain-SAE study run end to end on the offline model and corpora.

Train a GSAE on the general corpus and a Direct SAE and an SSAE on the domain corpus (one job),
then build small dashboards and open a blind campaign over both domain SAEs, as in the study.
Token budgets are small so a laptop CPU finishes in minutes; the real study needs far more tokens.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from compute.models import SAE, Corpus, Job, JobStatus, LanguageModel
from labelsite.models import Campaign
from labelsite.services import LabelError
from labelsite.services.campaigns import SourceSpec, campaign_create, campaign_open

DEMO_CAMPAIGN = "Demo: domain features, blind"
DEMO_PREFIX = "demo"
DEMO_TRAINING: dict[str, Any] = {
    "methods": ["gsae", "direct", "ssae"],
    "gsae_tokens": 60_000,
    "domain_tokens": 30_000,
    "l1_coefficients": [1.0],
    "name_prefix": DEMO_PREFIX,
}
DEMO_DASHBOARD_TOKENS = 16_384
DEMO_GUIDELINES = """\
For each feature, read the top activations on the **domain** text (scientific prose) and on **general** text.
Write what the feature responds to in each, and score how subject-specific each explanation is.
Mark features you find particularly *nice*. You do not know which SAE a feature comes from: that is the point.
"""


def demo_training_start(
    *, model: LanguageModel, general: Corpus, domain: Corpus, created_by=None, overrides: dict | None = None
) -> Job:
    """The demo's training job: the queued, running or succeeded one if there is one, else a new one."""
    from compute.services.training import training_start

    existing = (
        Job.objects.filter(params__name_prefix=DEMO_PREFIX, kind="train_saes")
        .exclude(status__in=[JobStatus.FAILED, JobStatus.CANCELLED])
        .first()
    )
    if existing is not None:
        return existing
    params = {
        **DEMO_TRAINING,
        "language_model_id": model.pk,
        "general_corpus_id": general.pk,
        "domain_corpus_id": domain.pk,
        **(overrides or {}),
    }
    return training_start(params=params, created_by=created_by)


def demo_campaign_open(
    *, job: Job, general: Corpus, domain: Corpus, labeller_ids: Iterable[int], created_by=None,
    n_features: int = 20, dashboard_tokens: int = DEMO_DASHBOARD_TOKENS,
) -> Campaign:  # fmt: skip
    """After the demo training job succeeded: a blind campaign over its Direct SAE and SSAE.

    Small dashboard builds are queued first; the campaign then reuses them and opens by itself when
    the last one succeeds. Idempotent: an existing demo campaign is returned as it is.
    """
    from compute.services.dashboards import dashboard_build

    existing = Campaign.objects.filter(name=DEMO_CAMPAIGN).first()
    if existing is not None:
        return existing
    if job.status != JobStatus.SUCCEEDED:
        raise LabelError(f"The demo training job {job.pk} is {job.status}, not succeeded.")
    saes = list(SAE.objects.filter(job=job, method__in=[SAE.Method.DIRECT, SAE.Method.SSAE], status=SAE.Status.READY))
    if len(saes) < 2:
        raise LabelError(f"Job {job.pk} left no usable Direct SAE and SSAE to compare.")
    for sae in saes:
        for corpus in (domain, general):
            dashboard_build(
                sae_id=sae.pk, corpus_id=corpus.pk, created_by=created_by, params={"max_tokens": dashboard_tokens}
            )
    campaign = campaign_create(
        name=DEMO_CAMPAIGN,
        domain_corpus_id=domain.pk,
        general_corpus_id=general.pk,
        sources=[SourceSpec(sae_id=sae.pk, n_features=min(n_features, sae.d_sae)) for sae in saes],
        labeller_ids=labeller_ids,
        guidelines=DEMO_GUIDELINES,
        min_frequency=1e-4,  # skip features that (almost) never fire on the domain text
        sampling=Campaign.Sampling.MATCHED,  # both SAEs contribute the same log-frequency distribution
        created_by=created_by,
    )
    return campaign_open(campaign_id=campaign.pk, user=created_by)

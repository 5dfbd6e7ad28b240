"""The demo's main job: the whole domain-SAE study run end to end, one stage after another, resumable.

Stages (each reuses what an earlier run finished, so re-running never duplicates and an interrupted
demo resumes where it stopped):
  train      GSAE on the general corpus + finetune, Direct and SSAE on the domain corpus, a small
             sparsity sweep, from one shared model pass (one train_saes job)
  study      the study of that run, evaluated (loss recovered, rarity, novelty: one evaluate_study job)
  dashboards for the SAEs the campaign and the explanations use, on both corpora
  explain    automated explanations (and detection/fuzzing scores) for a handful of features
  decompose  decomposition probes (sub-components proposed by the LLM from those explanations, measured)
  campaign   a blind campaign over Direct and SSAE, matched sampling, overlap 2, opened after its audit

Only services of the features are called; this module only decides what to ask for next.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from compute.models import SAE, Corpus, Job, JobKind, JobStatus, LanguageModel
from labelsite.models import Campaign
from labelsite.selectors.demo import FAILED, demo_study, demo_training_job
from labelsite.services import LabelError

DEMO_CAMPAIGN = "Demo: domain features, blind"
DEMO_PREFIX = "demo"
# CPU budgets: docs/benchmarks.md says what they take on 2 cores and the figures they give.
DEMO_TRAINING: dict[str, Any] = {
    "methods": ["gsae", "finetune", "direct", "ssae"],
    "gsae_tokens": 40_000,
    "domain_tokens": 20_000,
    "l1_coefficients": [1.0, 2.0],  # at 3.0 the SSAE collapses (L0 0.38 on SmolLM2, flagged by its health)
    "name_prefix": DEMO_PREFIX,
}
DEMO_STUDY_OPTIONS: dict[str, Any] = {"eval_tokens": 2_048, "frequency_tokens": 8_192}
DEMO_DASHBOARD_TOKENS = 8_192
DEMO_GUIDELINES = """\
For each feature, read the top activations on the **domain** text (scientific prose) and on **general** text.
Write what the feature responds to in each, and score how subject-specific each explanation is.
Mark features you find particularly *nice*. You do not know which SAE a feature comes from: that is the point.
"""
STAGES = ["train", "study", "dashboards", "explain", "decompose", "campaign"]
# Stages whose failed job stops the demo; explanations and decompositions are reported and the demo goes on.
STRICT_STAGES = ("train", "study", "dashboards")


@dataclass
class DemoConfig:
    """What the demo runs on and how much; defaults are the CPU demo."""

    model_id: int
    general_id: int
    domain_id: int
    training: dict[str, Any] = field(default_factory=lambda: dict(DEMO_TRAINING))
    gsae_id: int | None = None  # a pretrained GSAE (sae-lens release): the run trains no GSAE then
    study_options: dict[str, Any] = field(default_factory=lambda: dict(DEMO_STUDY_OPTIONS))
    dashboard_params: dict[str, Any] = field(default_factory=lambda: {"max_tokens": DEMO_DASHBOARD_TOKENS})
    n_features: int = 20  # per campaign source
    overlap: int = 2
    n_explain: int = 2  # features explained per campaign source
    n_decompose: int = 1  # of those, decomposed (per source)
    decomposition: dict[str, int] = field(default_factory=lambda: {"n_components": 3, "n_phrases": 3})
    # One held-out context per quantile bin for scoring: 8 prompts per explanation, not 24 (the local model
    # generates on the CPU, some 10-20 s per prompt).
    autointerp_config: dict[str, Any] | None = field(default_factory=lambda: {"test_per_bin": 1})
    campaign_name: str = DEMO_CAMPAIGN


@dataclass
class StageState:
    name: str
    done: bool = False
    jobs: list[Job] = field(default_factory=list)
    note: str = ""
    error: str = ""

    @property
    def progress(self) -> float:
        if self.done:
            return 1.0
        if not self.jobs:
            return 0.0
        return sum(1.0 if j.status == JobStatus.SUCCEEDED else j.progress for j in self.jobs) / len(self.jobs)

    @property
    def message(self) -> str:
        running = [j for j in self.jobs if not j.is_finished]
        return self.error or (running[0].message if running else self.note)


# What a stage that did not finish means for the rest of the demo, in the words the terminal prints.
STAGE_MEANING = {
    "train": "no SAEs were trained, so the study, the dashboards and the campaign wait for them",
    "study": "the SAEs are trained, but the study's figures (loss recovered, rarity, novelty) are not computed",
    "dashboards": "the SAEs and the study are ready; the campaign's features have no dashboards yet, so it waits",
    "explain": "the automated explanations are missing; the rest of the demo does not need them",
    "decompose": "the decomposition probes are missing; the rest of the demo does not need them",
    "campaign": "everything is computed, but the blind campaign is not open to labellers yet",
}


class DemoError(LabelError):
    """A stage cannot go on (a job failed, an input is unusable): the message says which and where.

    `stage` names the stage (set by `Demo.step`), `path` the page to open next (a job's or the campaign's),
    `fix` the one thing to do there.
    """

    def __init__(self, message: str, *, stage: str = "", path: str = "", fix: str = "") -> None:
        super().__init__(message)
        self.stage, self.path, self.fix = stage, path, fix

    @property
    def meaning(self) -> str:
        return STAGE_MEANING.get(self.stage, "")


def _failed(jobs: Iterable[Job]) -> None:
    for job in jobs:
        if job.status in FAILED:
            first = (job.error or job.message).split("\n\n")[0]  # its traceback stays on the job's page
            raise DemoError(
                f"Job {job.pk} ({job.kind}) {job.status}: {first}".strip()[:400],
                path=f"/compute/jobs/{job.pk}/",
                fix="read the job's error on its page, fix what it names, then press Retry there "
                "(or run `make demo` again)",
            )


def _settled(jobs: list[Job]) -> bool:
    for job in jobs:
        job.refresh_from_db()
    _failed(jobs)
    return all(j.status == JobStatus.SUCCEEDED for j in jobs)


class Demo:
    """One step at a time: `step()` asks for the next stage's work, returns every stage's state."""

    def __init__(self, config: DemoConfig, *, admin=None, labeller_ids: Iterable[int] = ()) -> None:
        self.config = config
        self.admin = admin
        self.labeller_ids = list(labeller_ids)
        self.states = {name: StageState(name) for name in STAGES}

    # ------------------------------------------------------------------ records of earlier runs
    @property
    def prefix(self) -> str:
        return str(self.config.training.get("name_prefix") or DEMO_PREFIX)

    def training_job(self) -> Job | None:
        return demo_training_job(self.prefix)

    def study(self):
        return demo_study(self.prefix)

    def compared_saes(self) -> list[SAE]:
        """The campaign's sources: the Direct SAE and the SSAE of the sweep's first sparsity."""
        job = self.training_job()
        saes = SAE.objects.filter(job=job, status=SAE.Status.READY).order_by("pk")
        picked = []
        for method in (SAE.Method.DIRECT, SAE.Method.SSAE):
            sae = saes.filter(method=method).first()
            if sae is None:
                raise DemoError(f"Training job {job.pk if job else '-'} left no ready {method} SAE.")
            picked.append(sae)
        return picked

    # ------------------------------------------------------------------ stages
    def _train(self, state: StageState) -> bool:
        from compute.services.training import training_start

        job = self.training_job()
        if job is None:
            params = {
                **self.config.training,
                "language_model_id": self.config.model_id,
                "general_corpus_id": self.config.general_id,
                "domain_corpus_id": self.config.domain_id,
            }
            if self.config.gsae_id:
                params["gsae_id"] = self.config.gsae_id
                params["methods"] = [m for m in params["methods"] if m != "gsae"]
            job = training_start(params=params, created_by=self.admin)
        state.jobs = [job]
        state.note = f"job {job.pk}"
        return _settled(state.jobs)

    def _study(self, state: StageState) -> bool:
        from compute.services.studies import study_create_from_job, study_evaluate_start

        study = self.study() or study_create_from_job(
            job=self.training_job(), created_by=self.admin, options=self.config.study_options
        )
        request = study_evaluate_start(study=study, created_by=self.admin)
        state.note = f"study {study.pk}"
        if request.job is None:
            return True
        state.jobs = [request.job]
        return _settled(state.jobs)

    def _dashboard_pairs(self) -> list[tuple[int, int]]:
        return [
            (sae.pk, corpus)
            for sae in self.compared_saes()
            for corpus in (self.config.domain_id, self.config.general_id)
        ]

    def _dashboards(self, state: StageState) -> bool:
        from compute.services.dashboards import dashboard_build

        state.jobs = [
            dashboard_build(sae_id=s, corpus_id=c, created_by=self.admin, params=self.config.dashboard_params)
            for s, c in self._dashboard_pairs()
        ]
        state.note = f"{len(state.jobs)} sets"
        return _settled(state.jobs)

    def _explain_job(self, sae: SAE) -> Job:
        """The demo's explanation job for `sae`: an earlier run's unless it failed, else a new one."""
        from compute.services.autointerp import autointerp_start

        job = (
            Job.objects.filter(kind=JobKind.AUTOINTERP, params__demo=self.prefix, params__sae_id=sae.pk)
            .exclude(status__in=FAILED)
            .first()
        )
        if job is None:
            job = autointerp_start(
                sae_id=sae.pk,
                corpus_id=self.config.domain_id,
                n_random=self.config.n_explain,
                config=self.config.autointerp_config,
                created_by=self.admin,
            )
            Job.objects.filter(pk=job.pk).update(params={**job.params, "demo": self.prefix})
        return job

    def _explain(self, state: StageState) -> bool:
        # This run's jobs once queued: one that fails is reported below, never queued again by the next step.
        if not state.jobs:
            state.jobs = [self._explain_job(sae) for sae in self.compared_saes()]
        jobs = state.jobs
        state.note = f"{self.config.n_explain} features x {len(jobs)} SAEs"
        for job in jobs:
            job.refresh_from_db()
        failed = [j for j in jobs if j.status in FAILED]
        if failed:  # explanations are a side show: the campaign goes on; the next run retries them
            state.error = f"job {failed[0].pk} {failed[0].status}: {(failed[0].error or failed[0].message)[:160]}"
        return all(j.is_finished for j in jobs)

    def _explanations(self) -> list[tuple[SAE, int, str]]:
        """(SAE, feature, automated explanation) for the features to decompose, in a stable order."""
        from compute.models import Explanation

        out = []
        for sae in self.compared_saes():
            rows = (
                Explanation.objects.filter(
                    source=Explanation.Source.AUTO,
                    feature__dashboard_set__sae=sae,
                    feature__dashboard_set__corpus_id=self.config.domain_id,
                )
                .order_by("feature__feature_index", "pk")
                .values_list("feature__feature_index", "text")
            )
            seen: dict[int, str] = {}
            for index, text in rows:
                seen.setdefault(index, text)
            out += [(sae, index, text) for index, text in list(seen.items())[: self.config.n_decompose]]
        return out

    def _decompose(self, state: StageState) -> bool:
        from compute.models import Decomposition
        from compute.services.decomposition import decomposition_propose, decompositions_measure

        corpus = Corpus.objects.get(pk=self.config.domain_id)
        # The configured endpoint when there is one (as for the explanations), else the local instruct model.
        source = Decomposition.Source.LLM if settings.LLM_BASE_URL else Decomposition.Source.LOCAL
        decompositions = []
        for sae, index, text in self._explanations():
            # A failed proposal is kept, not retried by every run (its page has Retry): the local 135M model
            # often writes no usable JSON.
            found = (
                Decomposition.objects.filter(sae=sae, corpus=corpus, feature_index=index, source=source)
                .order_by("pk")
                .first()
            )
            decompositions.append(
                found
                or decomposition_propose(
                    sae=sae,
                    corpus=corpus,
                    feature_index=index,
                    description=text[:300],
                    source=source,
                    created_by=self.admin,
                    **self.config.decomposition,
                )
            )
        jobs = [d.job for d in decompositions if d.job is not None]
        state.jobs = jobs
        state.note = f"{len(decompositions)} features"
        for job in jobs:
            job.refresh_from_db()
        if not all(j.is_finished for j in jobs):
            return False
        for d in decompositions:
            d.refresh_from_db()
        failed = [d for d in decompositions if d.status == Decomposition.Status.FAILED]
        draft = [d for d in decompositions if d.status == Decomposition.Status.DRAFT]
        if draft:
            state.jobs = [*jobs, decompositions_measure(decompositions=draft, created_by=self.admin)]
            return False
        if any(d.status in (Decomposition.Status.PROPOSING, Decomposition.Status.MEASURING) for d in decompositions):
            return False
        if failed:
            state.error = f"{len(failed)} of {len(decompositions)} failed (e.g. {failed[0].error[:120]})"
        return True

    def _campaign(self, state: StageState) -> bool:
        from labelsite.services.campaigns import OPEN_JOB_KIND, SourceSpec, campaign_create, campaign_open_start

        campaign = Campaign.objects.filter(name=self.config.campaign_name).first()
        if campaign is None:
            campaign = campaign_create(
                name=self.config.campaign_name,
                domain_corpus_id=self.config.domain_id,
                general_corpus_id=self.config.general_id,
                sources=[
                    SourceSpec(sae_id=sae.pk, n_features=min(self.config.n_features, sae.d_sae))
                    for sae in self.compared_saes()
                ],
                labeller_ids=self.labeller_ids,
                guidelines=DEMO_GUIDELINES,
                overlap=self.config.overlap,
                sampling=Campaign.Sampling.MATCHED,
                min_frequency=1e-4,  # skip features that (almost) never fire on the domain text
                created_by=self.admin,
            )
        state.note = f"campaign {campaign.pk}"
        if campaign.status == Campaign.Status.OPEN:
            return True
        page = f"/manage/campaigns/{campaign.pk}/"
        if campaign.status == Campaign.Status.DRAFT and campaign.prepare_error:
            raise DemoError(
                f"Campaign {campaign.pk} did not open: {campaign.prepare_error}",
                path=page,
                fix="read why on the campaign's page (as admin) and open it from there once you have decided",
            )
        job = campaign.build_jobs.filter(kind=OPEN_JOB_KIND).order_by("-pk").first()
        if job is not None and job.status in FAILED:
            raise DemoError(
                f"Opening campaign {campaign.pk} failed: {job.error or job.message}",
                path=f"/compute/jobs/{job.pk}/",
                fix="read the job's error on its page and press Retry there (or run `make demo` again)",
            )
        if job is None or job.status == JobStatus.SUCCEEDED:  # not asked yet, or it waited for dashboards
            job = campaign_open_start(campaign_id=campaign.pk, user=self.admin) or job
        state.jobs = [job] if job is not None else []
        return False

    # ------------------------------------------------------------------ driving
    def step(self) -> dict[str, StageState]:
        """Advance as far as finished work allows; raise DemoError when a stage failed."""
        handlers: dict[str, Callable[[StageState], bool]] = {
            "train": self._train,
            "study": self._study,
            "dashboards": self._dashboards,
            "explain": self._explain,
            "decompose": self._decompose,
            "campaign": self._campaign,
        }
        for name in STAGES:
            state = self.states[name]
            if state.done:
                continue
            try:
                if name in STRICT_STAGES and state.jobs:
                    # A job that failed since the last step stops the demo: asking the stage again would
                    # replace it with a new job (as a re-run of the demo does, on purpose) and loop.
                    _settled(state.jobs)
                state.done = handlers[name](state)
            except Exception as exc:
                from config.errors import ServiceError

                if not isinstance(exc, ServiceError):
                    raise
                state.error = str(exc)
                fix = getattr(exc, "fix", "") or "change what it names (the demo's options) and run `make demo` again"
                raise DemoError(f"{name}: {exc}", stage=name, path=getattr(exc, "path", ""), fix=fix) from exc
            if not state.done:
                break
        return self.states

    @property
    def finished(self) -> bool:
        return all(s.done for s in self.states.values())

    def campaign(self) -> Campaign | None:
        return Campaign.objects.filter(name=self.config.campaign_name).first()


def demo_config(
    *, model: LanguageModel, general: Corpus, domain: Corpus, overrides: dict[str, Any] | None = None, **fields: Any
) -> DemoConfig:
    """The CPU demo's settings on these records; `overrides` replace training options (tokens, hook, sweep)."""
    config = DemoConfig(model_id=model.pk, general_id=general.pk, domain_id=domain.pk, **fields)
    config.training.update(overrides or {})
    return config

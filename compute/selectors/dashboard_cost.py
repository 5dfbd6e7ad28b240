"""What a dashboard build will cost, before it is queued: the settings' arithmetic (`DashboardJobConfig.cost`)
over what the project has recorded: the corpus's token counts for the model, and the speed and stored size of
past builds of the same model (per device, the kind of worker that ran them). Nothing is invented: without a
past build there is no time, and sizes are given raw."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db.models import Avg
from django.db.models.functions import Length

from compute.ml.config import ConfigError, DashboardCost, DashboardJobConfig, DashboardSpeed, options_of
from compute.models import SAE, Corpus, DashboardSet, FeatureDashboard, Job, JobKind, JobStatus, LanguageModel

RECENT_BUILDS = 10  # past builds per device that a speed is measured on
SIZE_SAMPLE_ROWS = 2000  # rows of the latest set whose stored size is measured


@dataclass(frozen=True)
class CorpusEstimate:
    corpus: Corpus
    cost: DashboardCost
    counted: bool  # the corpus's tokens are counted for this model (else the budget bounds the tokens)
    times: list[tuple[DashboardSpeed, float]] = field(default_factory=list)  # (speed, seconds) per measured device


@dataclass(frozen=True)
class BuildEstimate:
    config: DashboardJobConfig
    corpora: list[CorpusEstimate]
    speeds: list[DashboardSpeed]
    compression: float | None

    @property
    def settings(self) -> list[tuple[str, object, str]]:
        """(title, value, help) of every setting the build will use, as the job will read them."""
        return [(opt.title, getattr(self.config, opt.name), opt.help) for opt in options_of(DashboardJobConfig)]

    @property
    def totals(self) -> dict[str, int]:
        keys = ("model_tokens", "forward_passes", "rows", "storage_bytes", "cache_bytes")
        return {key: sum(getattr(c.cost, key) for c in self.corpora) for key in keys}

    @property
    def total_times(self) -> list[tuple[DashboardSpeed, float]]:
        """Per measured device, the time of all the builds one after another (one gpu worker runs them)."""
        return [(speed, sum(c.times[i][1] for c in self.corpora)) for i, speed in enumerate(self.speeds)]


def corpus_windows(*, corpus: Corpus, language_model: LanguageModel, context_size: int) -> int | None:
    """Windows of `context_size` tokens the corpus holds for this model; None until its tokens are counted.

    Counts made at another context size give the windows of the same text: every window is BOS followed by
    `context_size - 1` text tokens (EOS separators included), the last partial one dropped.
    """
    counts = corpus.token_counts.get(language_model.name)
    if not counts:
        return None
    if counts.get("context_size") == context_size:
        return int(counts["train_windows"]) + int(counts["eval_windows"])
    return int(counts["tokens"]) // (context_size - 1)


def dashboard_speeds(*, language_model: LanguageModel) -> list[DashboardSpeed]:
    """Per device, the throughput of the latest successful builds of SAEs on this model (most builds first)."""
    sae_ids = list(SAE.objects.filter(language_model=language_model).values_list("pk", flat=True))
    jobs = (
        Job.objects.filter(
            kind=JobKind.BUILD_DASHBOARDS,
            status=JobStatus.SUCCEEDED,
            params__sae_id__in=sae_ids,
            result__has_key="activations_s",
        )
        .exclude(device="")
        .order_by("-finished_at", "-pk")
        .only("device", "params", "result")
    )
    by_device: dict[str, list[Job]] = {}
    for job in jobs:
        runs = by_device.setdefault(job.device, [])
        if len(runs) < RECENT_BUILDS:
            runs.append(job)
    speeds = []
    for device, runs in by_device.items():
        model_tokens = feature_tokens = model_s = feature_s = load_s = 0.0
        for job in runs:
            result = job.result
            context = int(job.params.get("context_size") or DashboardJobConfig.context_size)
            # result["n_tokens"] counts scored tokens; the model also ran the BOS of every window.
            model_tokens += result["n_tokens"] * context / (context - 1)
            feature_tokens += result["n_tokens"] * result["n_features"]
            model_s += result["activations_s"]
            feature_s += result["dashboards_s"]
            load_s += result.get("load_s", 0.0)
        if model_s > 0 and feature_s > 0:
            speeds.append(
                DashboardSpeed(
                    device=device,
                    builds=len(runs),
                    load_s=load_s / len(runs),
                    model_tokens_per_s=model_tokens / model_s,
                    feature_tokens_per_s=feature_tokens / feature_s,
                )
            )
    return sorted(speeds, key=lambda s: (-s.builds, s.device))


def dashboard_compression(*, language_model: LanguageModel) -> float | None:
    """Stored bytes per raw byte (`DashboardJobConfig.raw_row_bytes`) of the latest finished set on this model."""
    dset = (
        DashboardSet.objects.filter(sae__language_model=language_model, status=DashboardSet.Status.READY)
        .order_by("-finished_at", "-pk")
        .first()
    )
    if dset is None:
        return None
    try:
        config = DashboardJobConfig.from_params(dset.config)
    except ConfigError:
        return None
    sample = FeatureDashboard.objects.filter(dashboard_set=dset).order_by("feature_index")[:SIZE_SAMPLE_ROWS]
    mean = FeatureDashboard.objects.filter(pk__in=sample.values("pk")).aggregate(m=Avg(Length("payload")))["m"]
    return float(mean) / config.raw_row_bytes if mean else None


def dashboard_build_estimate(*, sae: SAE, corpora: list[Corpus], config: DashboardJobConfig) -> BuildEstimate:
    """The cost of building `sae`'s dashboards on each corpus with `config`, from what is recorded."""
    lm = sae.language_model
    speeds = dashboard_speeds(language_model=lm)
    compression = dashboard_compression(language_model=lm)
    rows = []
    for corpus in corpora:
        windows = corpus_windows(corpus=corpus, language_model=lm, context_size=config.context_size)
        cost = config.cost(d_in=sae.d_in, d_sae=sae.d_sae, windows_available=windows, compression=compression)
        times = [
            (speed, config.cost(d_in=sae.d_in, d_sae=sae.d_sae, windows_available=windows, speed=speed).seconds)
            for speed in speeds
        ]
        rows.append(CorpusEstimate(corpus=corpus, cost=cost, counted=windows is not None, times=times))
    return BuildEstimate(config=config, corpora=rows, speeds=speeds, compression=compression)

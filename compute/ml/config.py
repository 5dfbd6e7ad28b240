"""One typed configuration per job kind: training, evaluation, dashboards.

Each is a frozen dataclass whose fields carry their default, bounds and help text; the training
form, the management commands' options, the API's serializer and the job handlers' checks are all
derived from these declarations (`options_of`), so a default or a bound lives in one place.
`from_params` turns a job's JSON params into a config or raises `ConfigError` naming the field and
what to fix; `to_params` is its inverse. Imports neither torch nor Django: the web process uses it.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from compute.ml.choices import (
    ARCHITECTURE_LABELS,
    ARCHITECTURES,
    DOMAIN_METHODS,
    HOOK_RE,
    K_ARCHITECTURES,
    METHOD_LABELS,
    METHODS,
    PRECISIONS,
    SWEEP_FIELDS,
)

MAX_CONTEXT_SIZE = 8192
MAX_TOKENS = 10**10
FLOAT32_BYTES = 4
GIB = 2**30


class ConfigError(ValueError):
    """A parameter that cannot work; `field` names it (None when several fields clash)."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Option:
    """What a config field accepts: its type (int, float or str), bounds, choices, and how to explain it."""

    name: str
    type: type
    default: Any
    help: str
    label: str
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    choice_labels: Mapping[str, str] | None = None
    many: bool = False  # a list of values (1 to max_items)
    max_items: int = 1
    pattern: str = ""  # for str fields: what the whole value must match (blank allowed)
    pattern_help: str = ""

    @property
    def title(self) -> str:
        """How forms and pages name the option: its label, else its name in words."""
        return self.label or self.name.replace("_", " ").capitalize()

    @property
    def cli_flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def check(self, raw: Any) -> Any:
        """The value as the config holds it (a tuple for lists); ConfigError saying what to fix."""
        if raw is None:
            return self.default
        if not self.many:
            return self._one(raw)
        if isinstance(raw, str) and self.choices:
            raw = [raw]
        if not isinstance(raw, list | tuple) or not 1 <= len(raw) <= self.max_items:
            among = f" from {', '.join(self.choices)}" if self.choices else ""
            raise ConfigError(
                f"{self.name} must be a list of 1 to {self.max_items} values{among}; got {raw!r}.", field=self.name
            )
        values = tuple(self._one(value) for value in raw)
        if self.choices:  # a set of names, kept in their canonical order
            values = tuple(c for c in self.choices if c in values)
        return values

    def _one(self, value: Any) -> Any:
        if self.type is int:
            if isinstance(value, bool) or not isinstance(value, int) or not self.low <= value <= self.high:
                raise ConfigError(
                    f"{self.name} must be a whole number from {self.low} to {self.high}; got {value!r}.",
                    field=self.name,
                )
            return value
        if self.type is float:
            ok = isinstance(value, int | float) and not isinstance(value, bool) and self.low < value <= self.high
            if not ok:
                raise ConfigError(
                    f"{self.name} must be a number above {self.low:g} and at most {self.high:g}; got {value!r}.",
                    field=self.name,
                )
            return float(value)
        if not isinstance(value, str):
            raise ConfigError(f"{self.name} must be text; got {value!r}.", field=self.name)
        if self.choices and value not in self.choices:
            raise ConfigError(f"{self.name} must be one of {', '.join(self.choices)}; got {value!r}.", field=self.name)
        if self.pattern and value and not re.fullmatch(self.pattern, value):
            raise ConfigError(f"{self.name}: {self.pattern_help}; got {value!r}.", field=self.name)
        return value


def option(
    default: Any,
    *,
    help: str,
    label: str = "",
    low: float | None = None,
    high: float | None = None,
    choices: tuple[str, ...] = (),
    choice_labels: Mapping[str, str] | None = None,
    max_items: int = 0,
    pattern: str = "",
    pattern_help: str = "",
) -> Any:
    """A dataclass field declaring one option (its type is that of the default, or of its first item)."""
    many = isinstance(default, tuple)
    sample = default[0] if many else default
    meta = {
        "type": type(sample),
        "help": help,
        "label": label,
        "low": low,
        "high": high,
        "choices": choices,
        "choice_labels": choice_labels,
        "many": many,
        "max_items": max_items or (len(choices) if choices else 1),
        "pattern": pattern,
        "pattern_help": pattern_help,
    }
    return field(default=default, metadata={"option": meta})


def options_of(cls: type) -> list[Option]:
    """The declared options of a config class, in declaration order."""
    return [Option(name=f.name, default=f.default, **f.metadata["option"]) for f in dataclasses.fields(cls)]


C = TypeVar("C", bound="JobConfig")


class JobConfig:
    """Shared behaviour of the job configs (subclasses are frozen dataclasses declared with `option`)."""

    @classmethod
    def from_params(cls: type[C], params: Mapping[str, Any]) -> C:
        """The config of a job's params (other keys, such as record ids, are ignored); ConfigError otherwise."""
        values = {opt.name: opt.check(params.get(opt.name)) for opt in options_of(cls)}
        config = cls(**values)
        config.check()
        return config

    def to_params(self) -> dict[str, Any]:
        """JSON-ready values (lists for tuples): `from_params(config.to_params()) == config`."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    def check(self) -> None:
        """Rules between fields; raise ConfigError."""


# ----------------------------------------------------------------------------- training


def outlier_norm_option() -> Any:
    """The one declaration of the outlier-norm rule shared by training, evaluation and studies."""
    return option(
        10.0,
        help="Leave out positions whose activation norm is above this multiple of the median norm of their batch "
        "(massive activations, as BOS is left out); they are counted and reported. A large value keeps them all.",
        label="Outlier norm factor",
        low=1.0,
        high=1e12,
    )


def sae_training_bytes(*, d_in: int, d_sae: int, minibatch_tokens: int) -> int:
    """Memory for training one SAE in float32: weights, gradients and Adam's two moments, plus a
    minibatch's pre-activations, activations and their gradients [minibatch_tokens, d_sae]."""
    parameters = 2 * d_in * d_sae + d_sae + d_in
    return FLOAT32_BYTES * (4 * parameters + 4 * minibatch_tokens * d_sae)


def sae_inference_bytes(*, d_in: int, d_sae: int, minibatch_tokens: int) -> int:
    """Memory for a frozen SAE (the GSAE of an SSAE run): its weights and one minibatch's activations."""
    return FLOAT32_BYTES * (2 * d_in * d_sae + d_sae + d_in + 2 * minibatch_tokens * d_sae)


def machine_memory_bytes() -> int:
    """Physical memory of this machine (the default bound on a run's SAE memory)."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


@dataclass(frozen=True)
class TrainingConfig(JobConfig):
    """A train_saes job: a GSAE on general text and/or GSAE-finetune, Direct SAE and SSAE on a domain corpus."""

    methods: tuple[str, ...] = option(
        ("finetune", "direct", "ssae"), help="Which SAEs to train.", choices=METHODS, choice_labels=METHOD_LABELS
    )
    architecture: str = option(
        "standard", help="SAE architecture.", choices=ARCHITECTURES, choice_labels=ARCHITECTURE_LABELS
    )
    hook_name: str = option(
        "",
        help="Hook to read activations at. Blank: the GSAE's hook, else the model's mid-depth blocks.N.hook_resid_post.",
        pattern=HOOK_RE.pattern,
        pattern_help="not a hook name (e.g. blocks.6.hook_resid_post)",
    )
    l1_coefficients: tuple[float, ...] = option(
        (0.3, 1.0, 3.0),
        help="L1 coefficients of the standard sweep (one SAE per value and method).",
        label="L1 coefficients (standard sweep)",
        low=0.0,
        high=1e6,
        max_items=12,
    )
    ks: tuple[int, ...] = option(
        (8, 16, 32),
        help="k values of the TopK or BatchTopK sweep.",
        label="k values (TopK / BatchTopK sweep)",
        low=1,
        high=65536,
        max_items=12,
    )
    l0_coefficients: tuple[float, ...] = option(
        (0.3, 1.0, 3.0),
        help="L0 coefficients of the JumpReLU sweep (one SAE per value and method).",
        label="L0 coefficients (JumpReLU sweep)",
        low=0.0,
        high=1e6,
        max_items=12,
    )
    gsae_l1_coefficient: float = option(1.0, help="L1 coefficient of a standard GSAE.", low=0.0, high=1e6)
    gsae_k: int = option(32, help="k of a TopK or BatchTopK GSAE.", low=1, high=65536)
    gsae_l0_coefficient: float = option(1.0, help="L0 coefficient of a JumpReLU GSAE.", low=0.0, high=1e6)
    gsae_expansion: int = option(16, help="GSAE features per activation dimension.", low=1, high=1_000_000)
    domain_expansion: int = option(
        2, help="Direct SAE and SSAE features per activation dimension.", low=1, high=1_000_000
    )
    lr: float = option(3e-3, help="Adam learning rate.", label="Learning rate", low=0.0, high=1.0)
    lr_warm_up_percent: int = option(
        2, help="Share of the run's tokens (%) over which the learning rate rises linearly to lr.", low=0, high=100
    )
    lr_decay_percent: int = option(
        20,
        help="Share of the run's tokens (%) at its end over which the learning rate falls linearly to 0.",
        low=0,
        high=100,
    )
    sparsity_warm_up_percent: int = option(
        5,
        help="Share of the run's tokens (%) over which the L1 / L0 coefficient rises linearly from 0.",
        label="Sparsity warm-up percent",
        low=0,
        high=100,
    )
    grad_clip_norm: float = option(1.0, help="Gradients are clipped to this norm each step.", low=0.0, high=1e12)
    outlier_norm_factor: float = outlier_norm_option()
    finetune_lr: float = option(1e-4, help="Learning rate of GSAE-finetune.", label="Fine-tune learning rate", low=0.0, high=1.0)  # fmt: skip
    gsae_tokens: int = option(100_000, help="Tokens to train the GSAE on.", low=1, high=MAX_TOKENS)
    domain_tokens: int = option(50_000, help="Tokens to train the domain SAEs on.", low=1, high=MAX_TOKENS)
    eval_tokens: int = option(
        4_096, help="Tokens of the eval split each new SAE is measured on (0: none).", low=0, high=MAX_TOKENS
    )
    context_size: int = option(128, help="Tokens per window (BOS included).", low=2, high=MAX_CONTEXT_SIZE)
    batch_size: int = option(8, help="Windows per model forward pass.", low=1, high=4096)
    minibatch_tokens: int = option(512, help="Tokens per SAE optimiser step.", low=1, high=1_000_000)
    seed: int = option(0, help="Seed of initialisation and shuffling.", low=0, high=2**32 - 1)
    name_prefix: str = option(
        "",
        help="Prefix of the new SAEs' names (blank: job<id>).",
        pattern=r"[\w.-]{1,60}",
        pattern_help="use letters, digits, '.', '-' and '_' (at most 60)",
    )
    precision: str = option(
        "auto",
        help="SAE training matmuls: auto = bfloat16 where the hardware has it natively, else float32.",
        choices=PRECISIONS,
    )

    GSAE_METHODS: ClassVar[tuple[str, ...]] = ("finetune", "ssae")  # domain methods built on a GSAE

    @property
    def domain_methods(self) -> list[str]:
        return [m for m in self.methods if m in DOMAIN_METHODS]

    @property
    def sweep_key(self) -> str:
        return SWEEP_FIELDS[self.architecture]

    @property
    def sweep(self) -> tuple[float, ...] | tuple[int, ...]:
        """The sparsity values of this architecture's sweep."""
        return getattr(self, self.sweep_key)

    @property
    def total_tokens(self) -> int:
        total = self.gsae_tokens if "gsae" in self.methods else 0
        return total + (self.domain_tokens if self.domain_methods else 0)

    def memory_bytes(self, *, d_in: int, gsae_d_sae: int | None = None) -> tuple[int, str]:
        """Peak SAE memory of the run (the larger of its two phases) and what dominates it, in words.

        `gsae_d_sae` is the width of an existing GSAE (default: the one this run trains).
        """
        mb = self.minibatch_tokens
        gsae_width = gsae_d_sae or self.gsae_expansion * d_in
        phases: list[tuple[int, str]] = []
        if "gsae" in self.methods:
            phases.append(
                (
                    sae_training_bytes(d_in=d_in, d_sae=gsae_width, minibatch_tokens=mb),
                    f"a GSAE of {gsae_width:,} features (gsae_expansion {self.gsae_expansion} x {d_in})",
                )
            )
        if self.domain_methods:
            total = 0
            if any(m in self.GSAE_METHODS for m in self.domain_methods):
                total += sae_inference_bytes(d_in=d_in, d_sae=gsae_width, minibatch_tokens=mb)
            widths = [gsae_width if m == "finetune" else self.domain_expansion * d_in for m in self.domain_methods]
            total += len(self.sweep) * sum(sae_training_bytes(d_in=d_in, d_sae=w, minibatch_tokens=mb) for w in widths)
            phases.append(
                (
                    total,
                    f"{len(self.sweep) * len(widths)} domain SAEs of up to {max(widths):,} features "
                    f"(domain_expansion {self.domain_expansion} x {d_in}) beside a GSAE of {gsae_width:,}",
                )
            )
        return max(phases) if phases else (0, "nothing")

    def check(self) -> None:
        if self.lr_warm_up_percent + self.lr_decay_percent > 100:
            raise ConfigError(
                "lr_warm_up_percent and lr_decay_percent together must not exceed 100.", field="lr_decay_percent"
            )

    def check_memory(self, *, d_in: int, limit_bytes: int, gsae_d_sae: int | None = None) -> None:
        """ConfigError naming the memory the run would need when it exceeds limit_bytes."""
        need, what = self.memory_bytes(d_in=d_in, gsae_d_sae=gsae_d_sae)
        if need > limit_bytes:
            raise ConfigError(
                f"This run would need about {need / GIB:,.1f} GiB of memory for {what}, more than the "
                f"{limit_bytes / GIB:,.1f} GiB available: lower the expansion factors, the number of sparsity "
                "values or minibatch_tokens."
            )

    def check_widths(self, *, d_in: int) -> None:
        """A TopK or BatchTopK k must not exceed the number of features of the SAE it is for."""
        if self.architecture not in K_ARCHITECTURES:
            return
        domain = [m for m in self.domain_methods if m != "finetune"]
        if domain and max(self.ks) > self.domain_expansion * d_in:
            raise ConfigError(
                f"k {max(self.ks)} exceeds the {self.domain_expansion * d_in} features of the domain SAEs.", field="ks"
            )
        if "gsae" in self.methods and self.gsae_k > self.gsae_expansion * d_in:
            raise ConfigError(
                f"gsae_k {self.gsae_k} exceeds the {self.gsae_expansion * d_in} features of the GSAE.", field="gsae_k"
            )


# ----------------------------------------------------------------------------- evaluation


@dataclass(frozen=True)
class EvaluationConfig(JobConfig):
    """An evaluate_sae job: reconstruction and loss recovered on a corpus, frequencies on general text, novelty."""

    eval_tokens: int = option(16_384, help="Tokens for reconstruction and loss recovered.", low=1, high=10**9)
    frequency_tokens: int = option(
        32_768, help="General-text tokens for feature frequencies (0: skip).", low=0, high=10**9
    )
    context_size: int = option(128, help="Tokens per window (BOS included).", low=2, high=MAX_CONTEXT_SIZE)
    batch_size: int = option(8, help="Windows per model forward pass.", low=1, high=4096)
    outlier_norm_factor: float = outlier_norm_option()


@dataclass(frozen=True)
class StudyConfig(JobConfig):
    """An evaluate_study job's budgets: every SAE of a study in one model pass per corpus."""

    eval_tokens: int = option(16_384, help="Held-out domain tokens for losses and reconstruction.", low=1, high=10**9)
    # 131,072 frequency tokens resolve frequencies down to ~7.6e-6 (the figure draws the limit).
    frequency_tokens: int = option(131_072, help="General-text tokens for feature frequencies.", low=1, high=MAX_TOKENS)
    context_size: int = option(128, help="Tokens per window (BOS included).", low=2, high=MAX_CONTEXT_SIZE)
    batch_size: int = option(8, help="Windows per model forward pass.", low=1, high=4096)
    outlier_norm_factor: float = outlier_norm_option()


@dataclass(frozen=True)
class AutoInterpJobConfig(JobConfig):
    """An autointerp job's batching (its explainer settings are compute.ml.autointerp's)."""

    batch_size: int = option(
        8,
        help="Features explained and scored per batch (the job resumes after the last finished batch).",
        low=1,
        high=1000,
    )


# ----------------------------------------------------------------------------- decompositions


@dataclass(frozen=True)
class DecompositionProposeConfig(JobConfig):
    """A propose_decomposition job: how many sub-components and phrases to ask the LLM for."""

    n_components: int = option(5, help="Sub-components to ask for.", low=1, high=12)
    n_phrases: int = option(3, help="Phrases (and near misses) per sub-component.", low=3, high=10)


# ----------------------------------------------------------------------------- dashboards


@dataclass(frozen=True)
class DashboardJobConfig(JobConfig):
    """A build_dashboards job: every feature of one SAE on one corpus."""

    max_tokens: int = option(262_144, help="Corpus tokens to read (train and eval alike).", low=64, high=10**9)
    context_size: int = option(128, help="Tokens per window (BOS included).", low=8, high=MAX_CONTEXT_SIZE)
    batch_size: int = option(16, help="Windows per model forward pass.", low=1, high=4096)
    feature_chunk: int = option(16_384, help="Features encoded per pass over the cached activations.", low=1, high=10**7)  # fmt: skip
    top_k: int = option(20, help="Top-activating examples per feature.", low=1, high=200)
    ctx_before: int = option(24, help="Tokens shown before an example's peak.", low=0, high=256)
    ctx_after: int = option(8, help="Tokens shown after an example's peak.", low=0, high=256)
    n_quantile_bins: int = option(10, help="Activation-quantile bins to sample examples from.", low=1, high=50)
    per_bin: int = option(5, help="Examples per quantile bin.", low=1, high=50)
    n_logit_tokens: int = option(10, help="Output-logit tokens listed each way.", low=0, high=100)

    RENDER_KEYS: ClassVar[tuple[str, ...]] = (
        "top_k",
        "ctx_before",
        "ctx_after",
        "n_quantile_bins",
        "per_bin",
        "n_logit_tokens",
    )  # what compute.ml.dashboards.DashboardConfig takes

    def render_options(self) -> dict[str, int]:
        return {key: getattr(self, key) for key in self.RENDER_KEYS}

    @property
    def width(self) -> int:
        """Tokens in one example window: before the peak, the peak, after it."""
        return self.ctx_before + 1 + self.ctx_after

    @property
    def examples_per_feature(self) -> int:
        """Example windows stored per feature at most: the top-k and the quantile samples."""
        return self.top_k + self.n_quantile_bins * self.per_bin

    @property
    def raw_row_bytes(self) -> int:
        """A feature's numbers before packing and compression: token id (int32) and value (float32) of every
        example token, and the id and value of each output-logit token listed (both ways)."""
        return self.examples_per_feature * self.width * 8 + 2 * self.n_logit_tokens * 8

    def cost(
        self,
        *,
        d_in: int,
        d_sae: int,
        windows_available: int | None,
        speed: DashboardSpeed | None = None,
        compression: float | None = None,
    ) -> DashboardCost:
        """What a build of one SAE (d_in -> d_sae) on one corpus will cost with these settings.

        `windows_available`: windows of `context_size` tokens the corpus holds for this model (None: not counted
        yet, the budget is the bound). `speed`: throughput measured on past builds (None: no time given).
        `compression`: stored bytes per raw byte measured on past builds (None: the raw size is given).
        """
        windows = max(1, self.max_tokens // self.context_size)  # as compute.ml.activations.window_stream reads
        if windows_available is not None:
            windows = min(windows, max(1, windows_available))
        model_tokens = windows * self.context_size
        scored_tokens = windows * (self.context_size - 1)  # BOS starts every window and is never scored
        batch_tokens = self.batch_size * self.context_size
        chunk = min(self.feature_chunk, d_sae)
        row_bytes = round(self.raw_row_bytes * (compression or 1.0))
        seconds = None
        if speed is not None:
            seconds = (
                speed.load_s
                + model_tokens / speed.model_tokens_per_s
                + scored_tokens * d_sae / speed.feature_tokens_per_s
            )
        return DashboardCost(
            windows=windows,
            model_tokens=model_tokens,
            scored_tokens=scored_tokens,
            forward_passes=-(-windows // self.batch_size),
            feature_chunks=-(-d_sae // chunk),
            rows=d_sae,
            row_bytes=row_bytes,
            row_bytes_measured=compression is not None,
            storage_bytes=d_sae * row_bytes,
            memory_bytes=dashboard_memory_bytes(
                d_in=d_in, d_sae=d_sae, batch_tokens=batch_tokens, chunk=chunk, config=self
            ),
            cache_bytes=model_tokens * (FLOAT32_BYTES * d_in + 8 + 1),
            seconds=seconds,
        )


DASHBOARD_LOG_BINS = 512  # compute.ml.dashboards.N_LOG_BINS: the fixed log histogram kept per feature (int64)


def dashboard_memory_bytes(*, d_in: int, d_sae: int, batch_tokens: int, chunk: int, config: DashboardJobConfig) -> int:
    """Memory of the feature pass beside the language model, float32: the frozen SAE with one batch's pre-activations
    and activations [batch_tokens, d_sae], the batch's model activations [batch_tokens, d_in] and the chunk's masked
    activations [batch_tokens, chunk]; per feature of the chunk, the running top-k (value, position, hash, window of
    token ids and values), the quantile samples (priority, value, position, window) and the log histogram."""
    window = config.width * (8 + FLOAT32_BYTES)
    per_example = 8 + FLOAT32_BYTES + 8 + window
    per_feature = (
        config.top_k * per_example + config.n_quantile_bins * config.per_bin * per_example + DASHBOARD_LOG_BINS * 8
    )
    sae = sae_inference_bytes(d_in=d_in, d_sae=d_sae, minibatch_tokens=batch_tokens)
    return sae + FLOAT32_BYTES * batch_tokens * (d_in + chunk) + chunk * per_feature


@dataclass(frozen=True)
class DashboardSpeed:
    """Throughput measured on past builds of the same model on one kind of worker (device)."""

    device: str
    builds: int
    load_s: float  # loading the SAE and the model
    model_tokens_per_s: float  # the model pass: window tokens run per second
    feature_tokens_per_s: float  # the feature pass: (scored token, feature) pairs per second


@dataclass(frozen=True)
class DashboardCost:
    """The estimate of one build (see `DashboardJobConfig.cost`)."""

    windows: int
    model_tokens: int
    scored_tokens: int
    forward_passes: int
    feature_chunks: int
    rows: int
    row_bytes: int
    row_bytes_measured: bool
    storage_bytes: int
    memory_bytes: int
    cache_bytes: int  # the activation cache on the worker's scratch disk
    seconds: float | None


# ----------------------------------------------------------------------------- LLM judge


@dataclass(frozen=True)
class JudgeJobConfig(JobConfig):
    """A judge_campaign job: the LLM answers a campaign's score and choice questions on its blind panels
    (greedily: the same panels and model give the same answers)."""

    max_tokens: int = option(200, help="Tokens the judge may answer with, per item.", low=20, high=4000)
    batch_size: int = option(20, help="Items read from the database at a time.", low=1, high=1000)


# ----------------------------------------------------------------------------- synthetic worlds


@dataclass(frozen=True)
class SyntheticWorldConfig(JobConfig):
    """A synthetic world (sae-lens's `sae_lens.synthetic`): true feature directions in `hidden_dim` dimensions,
    general features firing at Zipfian base rates everywhere, and domain features firing often on the domain
    corpus D and (almost) never on the general corpus. Registered as a model and two corpora."""

    general_features: int = option(2048, help="True features that fire on all text.", low=1, high=10**6)
    domain_features: int = option(256, help="True features that fire on the domain corpus D.", low=1, high=10**6)
    hidden_dim: int = option(128, help="Dimensions of the activations (the model's d_model).", low=2, high=65536)
    general_max_prob: float = option(0.2, help="Firing probability of the commonest general feature.", low=0.0, high=1.0)  # fmt: skip
    general_min_prob: float = option(0.002, help="Firing probability of the rarest general feature.", low=0.0, high=1.0)  # fmt: skip
    zipf_exponent: float = option(1.0, help="Exponent of the general features' Zipfian rates.", low=0.0, high=10.0)
    domain_prob: float = option(0.03, help="Firing probability of each domain feature on D.", low=0.0, high=1.0)
    domain_prob_general: float = option(
        1e-5, help="Firing probability of each domain feature on general text (almost never).", low=0.0, high=1.0
    )
    magnitude_mean: float = option(1.0, help="Mean magnitude of a firing feature.", low=0.0, high=1e3)
    magnitude_std: float = option(0.25, help="Standard deviation of a firing feature's magnitude.", low=0.0, high=1e3)
    general_documents: int = option(4096, help="Documents of the general corpus.", low=1, high=10**8)
    domain_documents: int = option(2048, help="Documents of the domain corpus D.", low=1, high=10**8)
    document_tokens: int = option(128, help="Samples (tokens) per document.", low=1, high=10**6)
    seed: int = option(0, help="Seed of the feature directions and of every sample.", low=0, high=2**31 - 1)

    def check(self) -> None:
        if self.general_min_prob >= self.general_max_prob:
            raise ConfigError("general_min_prob must be below general_max_prob.", field="general_min_prob")
        if self.domain_prob_general > self.domain_prob:
            raise ConfigError(
                "domain_prob_general must not exceed domain_prob: domain features fire mostly on D.",
                field="domain_prob_general",
            )

    @property
    def num_features(self) -> int:
        return self.general_features + self.domain_features

"""Training the SAEs of the domain-specific study with sae-lens's SAE classes.

- GSAE: an SAE trained on general text (or loaded pretrained).
- GSAE-finetune: the GSAE's weights trained further on the domain corpus D (low learning rate).
- Direct SAE: a fresh, smaller SAE trained on D.
- SSAE: a small SAE that encodes x and is trained toward x - GSAE(x) with the GSAE frozen; at
  evaluation its output is added to the GSAE's.

One model pass feeds every SAE of a run (`train_saes`): each activation batch is shown to all
trainers, and the frozen GSAE's reconstruction, which the SSAEs need as their target, is computed
once per batch. Activations are scaled by one factor per run so that their mean norm is
sqrt(d_in) (sae-lens's "expected_average_only_in"), which makes L1 coefficients transferable
across models; the factor is folded into the weights before saving, so a saved SAE works on raw
activations.
"""

from __future__ import annotations

import copy
import math
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch
from sae_lens import SAE
from sae_lens.saes.batchtopk_sae import BatchTopKTrainingSAE, BatchTopKTrainingSAEConfig
from sae_lens.saes.jumprelu_sae import JumpReLUTrainingSAE, JumpReLUTrainingSAEConfig
from sae_lens.saes.matryoshka_batchtopk_sae import (
    MatryoshkaBatchTopKTrainingSAE,
    MatryoshkaBatchTopKTrainingSAEConfig,
)
from sae_lens.saes.sae import SAEMetadata, TrainingSAE, TrainStepInput
from sae_lens.saes.standard_sae import StandardTrainingSAE, StandardTrainingSAEConfig
from sae_lens.saes.topk_sae import TopKTrainingSAE, TopKTrainingSAEConfig
from torch import Tensor

from compute.ml.activations import ActivationBatch, OutlierCount
from compute.ml.choices import (
    ARCHITECTURES,
    BATCHTOPK_ARCHITECTURES,
    DOMAIN_METHODS,
    K_ARCHITECTURES,
    PRECISIONS,
    SWEEP_FIELDS,
    matryoshka_widths,
)
from compute.ml.config import TrainingConfig
from compute.ml.saes import save_sparsity

DEFAULT = TrainingConfig()  # the defaults of every training option, declared once in compute.ml.config


def autocast_dtype(device: str, precision: str = DEFAULT.precision) -> torch.dtype | None:
    """The dtype SAE matmuls run in under autocast (parameters, optimiser state and losses stay float32),
    or None for plain float32.

    "auto" picks bfloat16 where the hardware computes it natively (CUDA GPUs with bf16, CPUs with
    AVX512-BF16 or AMX), where SAE matmuls run several times faster, and float32 elsewhere (emulated
    bfloat16 would be slower).
    """
    if precision not in PRECISIONS:
        raise TrainingInputError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}.")
    if precision == "float32":
        return None
    if precision == "bfloat16":
        return torch.bfloat16
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    if device == "cpu":
        native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
        return torch.bfloat16 if native else None
    return None


def _autocast(like: Tensor, dtype: torch.dtype | None):
    """An autocast context for the device `like` lives on, disabled when dtype is None."""
    return torch.autocast(device_type=like.device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None)


class TrainingInputError(ValueError):
    """Inputs that cannot work together (caught before any model pass); the message says what to fix."""


@dataclass(frozen=True)
class SAESpec:
    """One SAE to train in a run."""

    key: str  # unique within the run, e.g. "direct-standard-l1=3"
    method: str
    architecture: str
    d_sae: int
    lr: float
    l1_coefficient: float = 1.0  # standard
    k: int = 32  # topk, batchtopk
    l0_coefficient: float = 1.0  # jumprelu

    @property
    def sparsity(self) -> float:
        if self.architecture in K_ARCHITECTURES:
            return float(self.k)
        return self.l0_coefficient if self.architecture == "jumprelu" else self.l1_coefficient

    @property
    def sparsity_label(self) -> str:
        if self.architecture in K_ARCHITECTURES:
            return f"k={self.k}"
        return f"l0={self.l0_coefficient:g}" if self.architecture == "jumprelu" else f"l1={self.l1_coefficient:g}"


def sweep_specs(
    *,
    methods: Iterable[str],
    architecture: str,
    d_in: int,
    expansion: int = DEFAULT.domain_expansion,
    l1_coefficients: Iterable[float] = DEFAULT.l1_coefficients,
    ks: Iterable[int] = DEFAULT.ks,
    l0_coefficients: Iterable[float] = DEFAULT.l0_coefficients,
    lr: float = DEFAULT.lr,
    finetune_lr: float = DEFAULT.finetune_lr,
    gsae_d_sae: int | None = None,
) -> list[SAESpec]:
    """One spec per (domain method, sparsity value): the points of the study's Pareto curves.

    A fine-tune keeps the GSAE's width; the Direct SAE and SSAE get `expansion * d_in` features.
    """
    if architecture not in ARCHITECTURES:
        raise TrainingInputError(f"Unknown architecture {architecture!r}: use {' or '.join(ARCHITECTURES)}.")
    values = list(
        {"ks": ks, "l1_coefficients": l1_coefficients, "l0_coefficients": l0_coefficients}[SWEEP_FIELDS[architecture]]
    )
    if not values:
        raise TrainingInputError("Give at least one sparsity value (an L1 coefficient or a k).")
    specs = []
    for method in methods:
        if method not in DOMAIN_METHODS:
            raise TrainingInputError(f"Unknown domain method {method!r}: use {', '.join(DOMAIN_METHODS)}.")
        if method == "finetune" and gsae_d_sae is None:
            raise TrainingInputError("A GSAE-finetune needs a GSAE: choose one.")
        d_sae = gsae_d_sae if method == "finetune" else expansion * d_in
        for value in values:
            spec = SAESpec(
                key="",
                method=method,
                architecture=architecture,
                d_sae=int(d_sae),
                lr=finetune_lr if method == "finetune" else lr,
                l1_coefficient=float(value) if architecture == "standard" else 1.0,
                k=int(value) if architecture in K_ARCHITECTURES else 32,
                l0_coefficient=float(value) if architecture == "jumprelu" else 1.0,
            )
            specs.append(_with_key(spec))
    if any(s.architecture in K_ARCHITECTURES and s.k > s.d_sae for s in specs):
        raise TrainingInputError("k must not exceed the number of features.")
    return specs


def _with_key(spec: SAESpec) -> SAESpec:
    return SAESpec(**{**spec.__dict__, "key": f"{spec.method}-{spec.architecture}-{spec.sparsity_label}"})


def gsae_spec(
    *,
    architecture: str,
    d_in: int,
    expansion: int = DEFAULT.gsae_expansion,
    l1_coefficient: float = DEFAULT.gsae_l1_coefficient,
    k: int = DEFAULT.gsae_k,
    l0_coefficient: float = DEFAULT.gsae_l0_coefficient,
    lr: float = DEFAULT.lr,
) -> SAESpec:
    if architecture not in ARCHITECTURES:
        raise TrainingInputError(f"Unknown architecture {architecture!r}: use {' or '.join(ARCHITECTURES)}.")
    spec = SAESpec("", "gsae", architecture, expansion * d_in, lr, l1_coefficient, k, l0_coefficient)
    return _with_key(spec)


def make_training_sae(
    spec: SAESpec, *, d_in: int, device: str, metadata: dict[str, Any] | None = None, seed: int = 0
) -> TrainingSAE:
    """A freshly initialised sae-lens training SAE for the spec."""
    meta = SAEMetadata(**(metadata or {}))
    # The SSAE's input (x) and target (x - GSAE(x)) live in different places, so centring the input
    # with the decoder bias would tie them together for no reason.
    common = {
        "d_in": d_in,
        "d_sae": spec.d_sae,
        "device": device,
        "apply_b_dec_to_input": spec.method != "ssae",
        "metadata": meta,
    }
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        if spec.architecture == "topk":
            # Plain TopK (no decoder-norm rescaling) so that the activation scale folds exactly.
            cfg = TopKTrainingSAEConfig(k=spec.k, rescale_acts_by_decoder_norm=False, **common)
            sae: TrainingSAE = TopKTrainingSAE(cfg)
        elif spec.architecture == "batchtopk":
            # k per token on average over the minibatch; saved for inference as JumpReLU with the learnt threshold.
            cfg = BatchTopKTrainingSAEConfig(k=spec.k, rescale_acts_by_decoder_norm=False, **common)
            sae = BatchTopKTrainingSAE(cfg)
        elif spec.architecture == "matryoshka_batchtopk":
            # Nested prefixes each trained to reconstruct alone (sae-lens's Matryoshka BatchTopK).
            cfg = MatryoshkaBatchTopKTrainingSAEConfig(
                k=spec.k, rescale_acts_by_decoder_norm=False, matryoshka_widths=matryoshka_widths(spec.d_sae), **common
            )
            sae = MatryoshkaBatchTopKTrainingSAE(cfg)
        elif spec.architecture == "jumprelu":
            sae = JumpReLUTrainingSAE(JumpReLUTrainingSAEConfig(l0_coefficient=spec.l0_coefficient, **common))
        else:
            sae = StandardTrainingSAE(StandardTrainingSAEConfig(l1_coefficient=spec.l1_coefficient, **common))
    finally:
        torch.random.set_rng_state(state)
    return sae


def training_sae_from(sae: SAE, spec: SAESpec, *, device: str, metadata: dict[str, Any] | None = None) -> TrainingSAE:
    """A training SAE with the weights of an existing (inference) SAE, for fine-tuning."""
    architecture = sae.cfg.architecture()
    # A BatchTopK SAE is saved for inference as JumpReLU (its learnt threshold): it fine-tunes as BatchTopK.
    if architecture != spec.architecture and not (
        architecture == "jumprelu" and spec.architecture in BATCHTOPK_ARCHITECTURES
    ):
        raise TrainingInputError(
            f"The GSAE is a {architecture} SAE: fine-tune it with architecture {architecture!r}, or train it anew."
        )
    source = copy.deepcopy(sae).to(device)
    if architecture == "topk" and getattr(source.cfg, "rescale_acts_by_decoder_norm", False):
        source.fold_W_dec_norm()  # exact for TopK with rescaling; leaves unit-norm decoder rows
    if getattr(source.cfg, "normalize_activations", "none") != "none":
        raise TrainingInputError("Fine-tuning needs a GSAE without built-in activation normalisation.")
    spec = SAESpec(**{**spec.__dict__, "d_sae": sae.cfg.d_sae})
    target = make_training_sae(spec, d_in=sae.cfg.d_in, device=device, metadata=metadata)
    target.cfg.apply_b_dec_to_input = bool(sae.cfg.apply_b_dec_to_input)
    state = {
        name: tensor for name, tensor in source.state_dict().items() if name in ("W_enc", "b_enc", "W_dec", "b_dec")
    }
    missing = {"W_enc", "b_enc", "W_dec", "b_dec"} - set(state)
    if missing:
        raise TrainingInputError(f"The GSAE has no {', '.join(sorted(missing))}: it cannot be fine-tuned.")
    with torch.no_grad():
        for name, tensor in state.items():
            getattr(target, name).data.copy_(tensor)
        if architecture == "jumprelu":
            threshold = source.state_dict()["threshold"]  # [d_sae]
            if spec.architecture == "jumprelu":
                target.threshold.data.copy_(threshold)
            else:
                target.topk_threshold.fill_(float(threshold.mean()))
    return target


@dataclass(frozen=True)
class Schedule:
    """How the learning rate and the sparsity coefficient move over a run, and the gradient-norm clip.

    sae-lens's shapes (its `get_lr_scheduler` with a constant main phase, its `CoefficientScheduler`, its clip of
    the gradient norm), measured in shares of the run's tokens rather than steps, since our minibatches vary in
    size: the learning rate rises linearly over the first `lr_warm_up` of the tokens, stays at lr, and falls
    linearly to 0 over the last `lr_decay`; the L1 / L0 coefficient rises linearly from 0 over the first
    `sparsity_warm_up`.
    """

    lr_warm_up: float = DEFAULT.lr_warm_up_percent / 100
    lr_decay: float = DEFAULT.lr_decay_percent / 100
    sparsity_warm_up: float = DEFAULT.sparsity_warm_up_percent / 100
    grad_clip_norm: float = DEFAULT.grad_clip_norm

    @classmethod
    def of(cls, config: TrainingConfig) -> Schedule:
        return cls(
            lr_warm_up=config.lr_warm_up_percent / 100,
            lr_decay=config.lr_decay_percent / 100,
            sparsity_warm_up=config.sparsity_warm_up_percent / 100,
            grad_clip_norm=config.grad_clip_norm,
        )

    def lr_factor(self, *, done: int, step: int, total: int) -> float:
        """The learning rate's multiplier for the step that trains on tokens done+1 .. done+step of total."""
        factor = _ramp(done + step, self.lr_warm_up * total)
        if self.lr_decay > 0:
            factor = min(factor, (total - done) / (self.lr_decay * total))
        return max(factor, 0.0)

    def sparsity_factor(self, *, done: int, step: int, total: int) -> float:
        """The sparsity coefficient's multiplier for that step."""
        return _ramp(done + step, self.sparsity_warm_up * total)


def _ramp(tokens: float, over: float) -> float:
    """Linear from 0 to 1 over `over` tokens (1 from the start when over is 0)."""
    return min(1.0, tokens / over) if over > 0 else 1.0


@dataclass
class TrainerStats:
    tokens: int = 0
    steps: int = 0
    loss: float = math.nan
    mse: float = math.nan  # per token, sum over d_in, in scaled units
    fvu: float = math.nan  # fraction of variance unexplained (scale-free), on the last minibatch
    l0: float = math.nan
    dead: int = 0
    mse_initial: float = math.nan
    fvu_initial: float = math.nan

    def as_dict(self) -> dict[str, float | int]:
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in self.__dict__.items()}


class TrainingCurve:
    """Step metrics recorded during training, thinned so at most `max_points` evenly spaced steps are kept."""

    def __init__(self, max_points: int = 256) -> None:
        self.max_points = max_points
        self.every = 1
        self.points: list[dict[str, float | int]] = []

    def add(self, step: int, **metrics: float | int) -> None:
        if step % self.every:
            return
        self.points.append({"step": step, **metrics})
        if len(self.points) > self.max_points:
            self.every *= 2
            self.points = [p for p in self.points if p["step"] % self.every == 0]


class SAETrainer:
    """One SAE, its Adam optimiser, and its running statistics.

    Training happens in scaled units (x * scale); `target` defaults to the input (an ordinary SAE)
    and is x - GSAE(x) for an SSAE.
    """

    def __init__(
        self,
        spec: SAESpec,
        sae: TrainingSAE,
        *,
        scale: float,
        dead_window_tokens: int = 100_000,
        autocast: torch.dtype | None = None,
        schedule: Schedule | None = None,
        total_tokens: int = 0,
    ) -> None:
        self.spec = spec
        self.sae = sae
        self.scale = scale
        self.autocast = autocast
        self.schedule = schedule or Schedule()
        self.total_tokens = total_tokens  # the run's length the schedule is a share of (0: no schedule)
        self.dead_window_tokens = dead_window_tokens
        self.optimizer = torch.optim.Adam(sae.parameters(), lr=spec.lr, betas=(0.9, 0.999))
        coefficients = sae.get_coefficients()
        self.coefficients = {k: float(v.value if hasattr(v, "value") else v) for k, v in coefficients.items()}
        self.tokens_since_fired = torch.zeros(sae.cfg.d_sae, dtype=torch.long, device=sae.W_dec.device)
        self.fired_count = torch.zeros(sae.cfg.d_sae, dtype=torch.long, device=sae.W_dec.device)  # tokens fired on
        self.stats = TrainerStats()
        self.curve = TrainingCurve()

    def dead_mask(self) -> Tensor:
        """Features that have not fired in the last dead_window_tokens (or ever, early on): [d_sae] bool."""
        window = min(self.dead_window_tokens, max(self.stats.tokens, 1))
        return self.tokens_since_fired >= window

    def step(self, x: Tensor, target: Tensor) -> None:
        """One optimiser step on a minibatch: x, target [n, d_in] in scaled units."""
        sae = self.sae
        sae.train()
        lr_factor = sparsity_factor = 1.0
        if self.total_tokens:
            where = {"done": self.stats.tokens, "step": x.shape[0], "total": self.total_tokens}
            lr_factor = self.schedule.lr_factor(**where)
            sparsity_factor = self.schedule.sparsity_factor(**where)
        for group in self.optimizer.param_groups:
            group["lr"] = self.spec.lr * lr_factor
        with _autocast(x, self.autocast):  # the forward only: backward runs outside autocast
            feature_acts, hidden_pre = sae.encode_with_hidden_pre(x)  # [n, d_sae]
            out = sae.decode(feature_acts)  # [n, d_in]
            mse = (out.float() - target).pow(2).sum(dim=-1).mean()
            step_input = TrainStepInput(
                sae_in=target,
                coefficients={name: value * sparsity_factor for name, value in self.coefficients.items()},
                dead_neuron_mask=self.dead_mask(),
                n_training_steps=self.stats.steps,
                is_logging_step=False,
            )
            aux = sae.calculate_aux_loss(
                step_input=step_input, feature_acts=feature_acts, hidden_pre=hidden_pre, sae_out=out
            )
            aux_total = sum(aux.values()) if isinstance(aux, dict) else aux
            loss = mse + aux_total
            if isinstance(sae, MatryoshkaBatchTopKTrainingSAE):
                # Each inner prefix's reconstruction error, as sae-lens's training_forward_pass adds it.
                for _, inner in sae._iterable_decode(feature_acts):  # [n, d_in] per inner level
                    loss = loss + (inner.float() - target).pow(2).sum(dim=-1).mean()
        if isinstance(sae, BatchTopKTrainingSAE):
            sae.update_topk_threshold(feature_acts.detach())  # what sae-lens's training_forward_pass does
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(sae.parameters(), self.schedule.grad_clip_norm)
        self.optimizer.step()
        with torch.no_grad():
            fired = (feature_acts > 0).any(dim=0)
            self.tokens_since_fired += x.shape[0]
            self.tokens_since_fired[fired] = 0
            self.fired_count += (feature_acts > 0).sum(dim=0)
            variance = (target - target.mean(dim=0)).pow(2).sum(dim=-1).mean().clamp_min(1e-12)
            stats = self.stats
            stats.tokens += x.shape[0]
            stats.steps += 1
            stats.loss = float(loss)
            stats.mse = float(mse)
            stats.fvu = float(mse / variance)
            stats.l0 = float((feature_acts > 0).float().sum(dim=-1).mean())
            if math.isnan(stats.mse_initial):
                stats.mse_initial, stats.fvu_initial = stats.mse, stats.fvu
            stats.dead = int(self.dead_mask().sum())
            self.curve.add(stats.steps, tokens=stats.tokens, loss=stats.loss, mse=stats.mse, fvu=stats.fvu, l0=stats.l0)

    def inference_sae(self) -> SAE:
        """The trained SAE as an sae-lens inference SAE on raw (unscaled) activations."""
        with tempfile.TemporaryDirectory() as tmp:
            path = save_trained_sae(self, Path(tmp))
            return SAE.load_from_disk(path, device=str(self.sae.W_dec.device))


def save_trained_sae(trainer: SAETrainer, path: Path, *, metadata: dict[str, Any] | None = None) -> Path:
    """Write cfg.json + sae_weights.safetensors (sae-lens's format; `SAE.load_from_disk(path)` reads it) and
    sparsity.safetensors (log10 firing frequency over training, as sae-lens's runner saves it).

    cfg.json's metadata records the method, and whatever `metadata` adds (an SSAE's GSAE, the dataset).
    """
    sae = copy.deepcopy(trainer.sae)
    sae.fold_activation_norm_scaling_factor(trainer.scale)  # the saved SAE reads raw activations
    for key, value in {"method": trainer.spec.method, "normalize_activations": "none", **(metadata or {})}.items():
        setattr(sae.cfg.metadata, key, value)
    sae.save_inference_model(path)
    save_sparsity(Path(path), trainer.fired_count.cpu(), trainer.stats.tokens)
    return path


def activation_scale(x: Tensor) -> float:
    """The factor that gives activations x [n, d_in] a mean norm of sqrt(d_in)."""
    mean_norm = float(x.norm(dim=-1).mean())
    if not math.isfinite(mean_norm) or mean_norm <= 0:
        raise TrainingInputError("The activations are all zero or not finite: check the hook and the corpus.")
    return math.sqrt(x.shape[-1]) / mean_norm


@dataclass
class TrainingProgress:
    tokens_done: int
    tokens_total: int
    elapsed_s: float
    saes: dict[str, dict[str, Any]] = field(default_factory=dict)
    outliers: dict[str, Any] = field(default_factory=dict)  # positions left out for outlier norms (OutlierCount)

    @property
    def fraction(self) -> float:
        return min(1.0, self.tokens_done / max(self.tokens_total, 1))


class MinibatchStream:
    """Kept-position activations [n <= minibatch_tokens, d_in], shuffled within each model batch, up to total_tokens.

    `at_batch_end` is true right after the last minibatch of a model batch has been handed out: there the
    stream's position (model batches consumed, tokens handed out, shuffle generator) is all a checkpoint
    needs, and a stream built with that `position` over the batches after it continues identically.
    """

    def __init__(
        self,
        batches: Iterable[ActivationBatch],
        *,
        total_tokens: int,
        minibatch_tokens: int,
        seed: int = 0,
        position: StreamPosition | None = None,
        outlier_norm_factor: float | None = DEFAULT.outlier_norm_factor,
    ) -> None:
        self.total_tokens = total_tokens
        self.minibatch_tokens = minibatch_tokens
        self.generator = torch.Generator().manual_seed(seed)
        self.batches_done = 0
        self.tokens_done = 0
        self.outliers = OutlierCount(outlier_norm_factor)
        if position is not None:
            self.batches_done, self.tokens_done = position.batches_done, position.tokens_done
            self.generator.set_state(position.shuffle_state)
            self.outliers.seen, self.outliers.excluded = position.seen, position.excluded
        self.at_batch_end = False
        self._chunks = self._iterate(iter(batches))
        self._peeked: list[Tensor] = []

    @property
    def position(self) -> StreamPosition:
        return StreamPosition(
            self.batches_done, self.tokens_done, self.generator.get_state(), self.outliers.seen, self.outliers.excluded
        )

    def peek(self) -> Tensor | None:
        """The next minibatch without consuming it (None at the end)."""
        if not self._peeked:
            chunk = next(self._chunks, None)
            if chunk is None:
                return None
            self._peeked.append(chunk)
        return self._peeked[0]

    def __iter__(self) -> Iterator[Tensor]:
        while (chunk := self.peek()) is not None:
            self._peeked.clear()
            yield chunk

    def _iterate(self, batches: Iterator[ActivationBatch]) -> Iterator[Tensor]:
        while self.tokens_done < self.total_tokens:
            batch = next(batches, None)
            if batch is None:
                return
            self.batches_done += 1
            x = self.outliers.filter(batch).flat()  # [n_kept, d_in]
            if x.shape[0] == 0:
                continue
            order = torch.randperm(x.shape[0], generator=self.generator).to(x.device)
            x = x[order]
            starts = range(0, x.shape[0], self.minibatch_tokens)
            for start in starts:
                chunk = x[start : start + self.minibatch_tokens][: self.total_tokens - self.tokens_done]
                if chunk.shape[0] == 0:
                    return
                self.tokens_done += chunk.shape[0]
                self.at_batch_end = start == starts[-1]
                yield chunk
                if self.tokens_done >= self.total_tokens:
                    return


class StreamPosition(NamedTuple):
    batches_done: int  # model batches consumed (a resumed stream starts after them)
    tokens_done: int
    shuffle_state: Tensor  # the minibatch shuffle generator's state
    seen: int = 0  # ordinary positions read so far, before the outlier rule
    excluded: int = 0  # of which left out for outlier norms


@dataclass
class TrainingCheckpoint:
    """Everything needed to continue `run_training` where it stopped, at a model-batch boundary: each SAE's
    weights, optimiser state and statistics, the activation scale, the stream position and torch's RNG."""

    position: StreamPosition
    scale: float
    rng_state: Tensor
    trainers: dict[str, dict[str, Any]]
    elapsed_s: float = 0.0

    @classmethod
    def capture(
        cls, trainers: list[SAETrainer], stream: MinibatchStream, *, scale: float, elapsed_s: float
    ) -> TrainingCheckpoint:
        return cls(
            position=stream.position,
            scale=scale,
            rng_state=torch.random.get_rng_state(),
            trainers={
                t.spec.key: {
                    "sae": t.sae.state_dict(),
                    "optimizer": t.optimizer.state_dict(),
                    "tokens_since_fired": t.tokens_since_fired,
                    "stats": dict(t.stats.__dict__),
                }
                for t in trainers
            },
            elapsed_s=elapsed_s,
        )

    def restore(self, trainers: list[SAETrainer]) -> None:
        missing = {t.spec.key for t in trainers} - set(self.trainers)
        if missing:
            raise TrainingInputError(f"The checkpoint has no state for {', '.join(sorted(missing))}.")
        for trainer in trainers:
            state = self.trainers[trainer.spec.key]
            trainer.sae.load_state_dict(state["sae"])
            trainer.optimizer.load_state_dict(state["optimizer"])
            trainer.tokens_since_fired.copy_(state["tokens_since_fired"])
            trainer.stats = TrainerStats(**state["stats"])
        torch.random.set_rng_state(self.rng_state)

    def save(self, path: Path) -> Path:
        position = self.position
        torch.save(
            {
                "position": list(position),
                "scale": self.scale,
                "rng_state": self.rng_state,
                "trainers": self.trainers,
                "elapsed_s": self.elapsed_s,
            },
            path,
        )
        return path

    @classmethod
    def load(cls, path: Path, *, device: str) -> TrainingCheckpoint:
        data = torch.load(path, map_location=device, weights_only=True)
        batches_done, tokens_done, shuffle_state, *counts = data["position"]  # older checkpoints have no counts
        return cls(
            position=StreamPosition(int(batches_done), int(tokens_done), shuffle_state.cpu(), *map(int, counts)),
            scale=float(data["scale"]),
            rng_state=data["rng_state"].cpu(),
            trainers=data["trainers"],
            elapsed_s=float(data["elapsed_s"]),
        )


class TrainingStopped(Exception):
    """Training stopped on request after saving a checkpoint (the caller hands the work back)."""

    def __init__(self, tokens_done: int) -> None:
        super().__init__(f"stopped after {tokens_done:,} tokens; checkpoint saved")
        self.tokens_done = tokens_done


@dataclass
class CheckpointPolicy:
    """When to save a checkpoint (at the first model-batch boundary after `every_tokens` tokens or `every_s`
    seconds since the last one, or when `stop_requested()`), and how (`save`)."""

    save: Callable[[TrainingCheckpoint], None]
    every_tokens: int | None = None
    every_s: float | None = None
    stop_requested: Callable[[], bool] = lambda: False


def train_saes(
    *,
    trainers: list[SAETrainer],
    stream: MinibatchStream,
    total_tokens: int,
    gsae: SAE | None = None,
    on_progress: Callable[[TrainingProgress], None] | None = None,
    progress_every_s: float = 2.0,
    autocast: torch.dtype | None = None,
    checkpoints: CheckpointPolicy | None = None,
    elapsed_before_s: float = 0.0,
) -> TrainingProgress:
    """Feed every minibatch (raw activations [n, d_in]) to every trainer.

    SSAE trainers get x - gsae(x) as their target; the frozen GSAE runs once per minibatch for all
    of them. `on_progress` is called every progress_every_s seconds and at the end; it may raise
    (e.g. to cancel). With `checkpoints`, a checkpoint is saved as it says, and a stop request
    raises TrainingStopped once one is saved.
    """
    if any(t.spec.method == "ssae" for t in trainers) and gsae is None:
        raise TrainingInputError("An SSAE needs a GSAE whose residual it reconstructs: choose a GSAE.")
    if gsae is not None:
        gsae.eval()
        for parameter in gsae.parameters():
            parameter.requires_grad_(False)
    start = time.monotonic()
    last_report = last_checkpoint = start
    tokens_at_checkpoint = stream.tokens_done

    def report() -> TrainingProgress:
        progress = TrainingProgress(
            tokens_done=stream.tokens_done,
            tokens_total=total_tokens,
            elapsed_s=elapsed_before_s + time.monotonic() - start,
            saes={t.spec.key: t.stats.as_dict() for t in trainers},
            outliers=stream.outliers.as_dict(),
        )
        if on_progress is not None:
            on_progress(progress)
        return progress

    for x in stream:
        residual = None
        if gsae is not None and any(t.spec.method == "ssae" for t in trainers):
            with torch.no_grad(), _autocast(x, autocast):
                residual = x - gsae(x).float()  # [n, d_in]
        for trainer in trainers:
            target = residual if trainer.spec.method == "ssae" else x
            trainer.step(x * trainer.scale, target * trainer.scale)
        now = time.monotonic()
        if now - last_report >= progress_every_s:
            last_report = now
            report()
        if checkpoints is not None and stream.at_batch_end and stream.tokens_done < total_tokens:
            stop = checkpoints.stop_requested()
            if (
                stop
                or (checkpoints.every_tokens and stream.tokens_done - tokens_at_checkpoint >= checkpoints.every_tokens)
                or (checkpoints.every_s and now - last_checkpoint >= checkpoints.every_s)
            ):
                elapsed = elapsed_before_s + now - start
                checkpoints.save(
                    TrainingCheckpoint.capture(trainers, stream, scale=trainers[0].scale, elapsed_s=elapsed)
                )
                last_checkpoint, tokens_at_checkpoint = time.monotonic(), stream.tokens_done
                if stop:
                    raise TrainingStopped(stream.tokens_done)
    return report()


def build_trainer(
    spec: SAESpec,
    *,
    d_in: int,
    scale: float,
    device: str,
    gsae: SAE | None = None,
    seed: int = 0,
    metadata: dict[str, Any] | None = None,
    target_mean: Tensor | None = None,
    autocast: torch.dtype | None = None,
    schedule: Schedule | None = None,
    total_tokens: int = 0,
) -> SAETrainer:
    """A trainer for the spec; a fine-tune starts from the GSAE's weights, moved into scaled units.

    target_mean [d_in] (scaled units), when given, initialises a fresh SAE's decoder bias.
    """
    if spec.method == "finetune":
        if gsae is None:
            raise TrainingInputError("A GSAE-finetune needs a GSAE: choose one.")
        sae = training_sae_from(gsae, spec, device=device, metadata=metadata)
        sae.fold_activation_norm_scaling_factor(1.0 / scale)
    else:
        sae = make_training_sae(spec, d_in=d_in, device=device, metadata=metadata, seed=seed)
        if target_mean is not None:
            # Start the decoder bias at the mean target (as sae-lens's b_dec_init_method="mean"):
            # with few steps, a zero bias leaves every feature to learn the mean first.
            with torch.no_grad():
                sae.b_dec.data.copy_(target_mean.to(sae.b_dec.device, sae.b_dec.dtype))
    return SAETrainer(spec, sae, scale=scale, autocast=autocast, schedule=schedule, total_tokens=total_tokens)


def run_training(
    *,
    batches: Iterable[ActivationBatch],
    specs: list[SAESpec],
    d_in: int,
    total_tokens: int,
    device: str,
    gsae: SAE | None = None,
    minibatch_tokens: int = DEFAULT.minibatch_tokens,
    seed: int = DEFAULT.seed,
    metadata: dict[str, Any] | None = None,
    checkpoints: CheckpointPolicy | None = None,
    resume: TrainingCheckpoint | None = None,
    on_progress: Callable[[TrainingProgress], None] | None = None,
    progress_every_s: float = 2.0,
    precision: str = DEFAULT.precision,
    schedule: Schedule | None = None,
    outlier_norm_factor: float | None = DEFAULT.outlier_norm_factor,
) -> tuple[list[SAETrainer], TrainingProgress]:
    """Train every spec from one stream of activation batches (one model pass for all of them).

    Positions whose norm is above `outlier_norm_factor` times their batch's median are left out (None keeps
    them); the progress's `outliers` says how many. `schedule` moves the learning rate and sparsity coefficient.

    `precision` is the matmul precision of SAE training (see `autocast_dtype`). `checkpoints` says when
    and how to save checkpoints; with `resume` (one of them), training continues from it, and `batches`
    must be the batches after its `position.batches_done` (see `iter_activation_batches(skip_batches=)`):
    on a CPU the result equals an uninterrupted run's.
    """
    autocast = autocast_dtype(device, precision)
    if gsae is None and any(spec.method in ("ssae", "finetune") for spec in specs):
        raise TrainingInputError("An SSAE or GSAE-finetune needs a GSAE: choose a GSAE.")
    if gsae is not None and gsae.cfg.d_in != d_in:
        raise TrainingInputError(
            f"The GSAE reads {gsae.cfg.d_in}-dimensional activations but the hook gives {d_in}: choose a GSAE "
            "trained on this model and hook."
        )
    stream = MinibatchStream(
        batches,
        total_tokens=total_tokens,
        minibatch_tokens=minibatch_tokens,
        seed=seed,
        position=resume.position if resume is not None else None,
        outlier_norm_factor=outlier_norm_factor,
    )
    if resume is not None:
        scale = resume.scale
        means: dict[str, Tensor | None] = {"input": None, "residual": None}  # the checkpoint has the biases
    else:
        first = stream.peek()
        if first is None:
            raise TrainingInputError("The corpus gave no tokens to train on: it is empty or shorter than one context.")
        scale = activation_scale(first)
        means = {"input": first.mean(dim=0) * scale}
        if gsae is not None and any(spec.method == "ssae" for spec in specs):
            with torch.no_grad():
                means["residual"] = (first - gsae(first)).mean(dim=0) * scale
    trainers = [
        build_trainer(
            spec,
            d_in=d_in,
            scale=scale,
            device=device,
            gsae=gsae,
            seed=seed + i,
            metadata=metadata,
            target_mean=means["residual" if spec.method == "ssae" else "input"],
            autocast=autocast,
            schedule=schedule,
            total_tokens=total_tokens,
        )
        for i, spec in enumerate(specs)
    ]
    if resume is not None:
        resume.restore(trainers)

    progress = train_saes(
        trainers=trainers,
        stream=stream,
        total_tokens=total_tokens,
        gsae=gsae,
        on_progress=on_progress,
        progress_every_s=progress_every_s,
        autocast=autocast,
        checkpoints=checkpoints,
        elapsed_before_s=resume.elapsed_s if resume is not None else 0.0,
    )
    return trainers, progress

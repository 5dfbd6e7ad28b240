"""Synthetic worlds: a "language model" whose activations come from sae-lens's `sae_lens.synthetic`, where the true
features are known, so the study's claims can be checked against truth.

A world is a sae-lens `SyntheticModel` (its `FeatureDictionary` holds the true feature directions, [F, d]) with
two firing distributions: on the *general* corpus the general features fire at Zipfian base rates and the domain
features (the last `domain_features` indices) almost never; on the *domain* corpus D the same general features
plus the domain features, which fire often. Every sample is a pure function of its token id:

- token id 0 is BOS, EOS and padding (activation 0, masked out like any special token);
- token id `1 + 2 * index + stream` is sample `index` of stream 0 (general) or 1 (domain), drawn in blocks of
  `BLOCK` samples with a seed made from the world's seed, the stream and the block;

so a corpus is a list of documents naming sample ranges (`"domain 0 128"`), and the ordinary corpus -> windows ->
batches -> activations path (`compute.ml.activations.activation_stream`) reads it unchanged; the true feature
activations of any batch are recomputed from its token ids (`SyntheticWorld.true_features`). There is no
next-token loss: `SyntheticLM.run_with_hooks` returns the hook point itself, and evaluations report explained
variance where a language model has loss recovered.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sae_lens.synthetic import (
    ActivationGenerator,
    ClassificationMetricsCalculator,
    ConstantFiringProbabilityConfig,
    SyntheticModel,
    SyntheticModelConfig,
    feature_uniqueness,
    mean_correlation_coefficient,
    zipfian_firing_probabilities,
)
from sae_lens.util import cosine_similarities
from safetensors.torch import load_file, save_file
from torch import Tensor

from compute.ml.config import SyntheticWorldConfig
from compute.ml.lm import LoadedModel

STREAMS = ("general", "domain")
HOOK_NAME = "blocks.0.hook_resid_post"  # the one hook: the world's activations
SPECIAL_ID = 0  # BOS, EOS and padding
BLOCK = 1024  # samples drawn per seeded block
WORLD_FILE = "world.json"
PROBABILITIES_FILE = "world_probabilities.safetensors"
SUBSETS = ("all", "domain", "general")
RECOVERY_THRESHOLD = 0.9  # decoder cosine at or above which a true feature counts as recovered


class SyntheticWorldError(ValueError):
    """A world folder that cannot be read; the message says what to fix."""


def token_id(stream: str, index: int) -> int:
    return 1 + 2 * index + STREAMS.index(stream)


def stream_probabilities(config: SyntheticWorldConfig) -> dict[str, Tensor]:
    """Each stream's firing probability per true feature: {"general": [F], "domain": [F]}."""
    general = zipfian_firing_probabilities(
        config.general_features,
        exponent=config.zipf_exponent,
        max_prob=config.general_max_prob,
        min_prob=config.general_min_prob,
    )
    return {
        stream: torch.cat([general, torch.full((config.domain_features,), rate)])
        for stream, rate in (("general", config.domain_prob_general), ("domain", config.domain_prob))
    }


class SyntheticWorld:
    """A world's true features and its two streams of samples (drawn on the CPU, block by block, reproducibly)."""

    def __init__(self, config: SyntheticWorldConfig, model: SyntheticModel, probabilities: Mapping[str, Tensor]):
        self.config = config
        self.model = model
        self.generators = {
            stream: ActivationGenerator(
                num_features=config.num_features,
                firing_probabilities=probabilities[stream],
                std_firing_magnitudes=model.activation_generator.std_firing_magnitudes,
                mean_firing_magnitudes=model.activation_generator.mean_firing_magnitudes,
            )
            for stream in STREAMS
        }
        self._blocks: OrderedDict[tuple[int, int], Tensor] = OrderedDict()

    @property
    def directions(self) -> Tensor:
        """The true feature directions: [F, hidden_dim], unit norm."""
        return self.model.feature_dict.feature_vectors.detach()

    @property
    def domain_mask(self) -> Tensor:
        """[F] bool: which true features are domain features."""
        mask = torch.zeros(self.config.num_features, dtype=torch.bool)
        mask[self.config.general_features :] = True
        return mask

    def subsets(self) -> dict[str, Tensor]:
        """Indices of all, domain and general true features."""
        mask = self.domain_mask
        return {
            "all": torch.arange(mask.numel()),
            "domain": mask.nonzero().flatten(),
            "general": (~mask).nonzero().flatten(),
        }

    def documents(self, stream: str, *, documents: int | None = None) -> Iterator[str]:
        """A corpus of the stream: documents naming consecutive sample ranges ("domain 0 128", ...)."""
        n = self.config.general_documents if stream == "general" else self.config.domain_documents
        length = self.config.document_tokens
        for doc in range(n if documents is None else min(documents, n)):
            yield f"{stream} {doc * length} {(doc + 1) * length}"

    def _block(self, stream_no: int, block: int) -> Tensor:
        """True feature activations of one seeded block: [BLOCK, F] (kept for the last few blocks asked for)."""
        key = (stream_no, block)
        cached = self._blocks.get(key)
        if cached is not None:
            self._blocks.move_to_end(key)
            return cached
        seed = int(np.random.SeedSequence([self.config.seed, stream_no, block]).generate_state(1)[0])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            features = self.generators[STREAMS[stream_no]].sample(BLOCK)
        self._blocks[key] = features
        while len(self._blocks) > 8:
            self._blocks.popitem(last=False)
        return features

    @torch.no_grad()
    def true_features(self, ids: Tensor) -> Tensor:
        """The true feature activations behind token ids [...]: [..., F] (zero at special ids)."""
        flat = ids.reshape(-1).cpu().long()
        out = torch.zeros(flat.numel(), self.config.num_features)
        sample = flat - 1
        stream_no, index = sample % 2, sample // 2
        block, row = index // BLOCK, index % BLOCK
        keep = flat != SPECIAL_ID
        for key in torch.unique(torch.stack([stream_no[keep], block[keep]], dim=1), dim=0).tolist():
            where = keep & (stream_no == key[0]) & (block == key[1])
            out[where] = self._block(key[0], key[1])[row[where]]
        return out.view(*ids.shape, -1)

    @torch.no_grad()
    def activations(self, ids: Tensor) -> Tensor:
        """The world's activations at token ids [...]: [..., hidden_dim] (zero at special ids), on ids' device."""
        features = self.true_features(ids)  # [..., F]
        hidden = self.model.feature_dict(features.view(-1, features.shape[-1])).view(*ids.shape, -1)
        hidden[ids.cpu() == SPECIAL_ID] = 0
        return hidden.to(ids.device)

    def save(self, folder: Path | str) -> Path:
        """sae-lens's SyntheticModel files plus world.json (options, which features are domain) and both streams'
        firing probabilities."""
        folder = Path(folder)
        self.model.save(folder)
        save_file(
            {stream: g.firing_probabilities.contiguous() for stream, g in self.generators.items()},
            str(folder / PROBABILITIES_FILE),
        )
        (folder / WORLD_FILE).write_text(
            json.dumps(
                {
                    "options": self.config.to_params(),
                    "domain_features": self.subsets()["domain"].tolist(),
                    "hook_name": HOOK_NAME,
                },
                indent=1,
            )
        )
        return folder


def build_world(config: SyntheticWorldConfig) -> SyntheticWorld:
    """A new world from its options (its directions and all its samples follow from `config.seed`)."""
    model = SyntheticModel(
        SyntheticModelConfig(
            num_features=config.num_features,
            hidden_dim=config.hidden_dim,
            firing_probability=ConstantFiringProbabilityConfig(probability=config.domain_prob),
            std_firing_magnitudes=config.magnitude_std,
            mean_firing_magnitudes=config.magnitude_mean,
            bias=False,
            seed=config.seed,
        ),
        device="cpu",
    )
    probabilities = stream_probabilities(config)
    model.activation_generator.firing_probabilities = probabilities["general"]
    return SyntheticWorld(config, model, probabilities)


def load_world(folder: Path | str) -> SyntheticWorld:
    folder = Path(folder)
    if not (folder / WORLD_FILE).is_file():
        raise SyntheticWorldError(f"{folder} is not a synthetic world folder (no {WORLD_FILE}): register it anew.")
    meta = json.loads((folder / WORLD_FILE).read_text())
    config = SyntheticWorldConfig.from_params(meta["options"])
    model = SyntheticModel.load_from_disk(folder, device="cpu")
    probabilities = load_file(str(folder / PROBABILITIES_FILE))
    return SyntheticWorld(config, model, probabilities)


class SyntheticTokenizer:
    """What the corpus and windowing code needs of a tokenizer, for documents naming sample ranges."""

    bos_token_id = eos_token_id = pad_token_id = SPECIAL_ID
    all_special_ids = [SPECIAL_ID]

    def __call__(self, text: str, add_special_tokens: bool = False) -> dict[str, list[int]]:
        try:
            stream, start, end = text.split()
            ids = list(range(token_id(stream, int(start)), token_id(stream, int(end)), 2))
        except ValueError as exc:
            raise ValueError(f"Not a synthetic document (expected 'general|domain START END'): {text[:60]!r}") from exc
        return {"input_ids": ids}

    def decode(self, ids: Sequence[int] | Tensor) -> str:
        if isinstance(ids, Tensor):
            ids = ids.tolist()
        return " ".join("<s>" if i == SPECIAL_ID else f"{STREAMS[(i - 1) % 2][0]}{(i - 1) // 2}" for i in ids)


class SyntheticLM:
    """The world as a hooked model: one hook, whose activations are looked up from the token ids. The model's
    output is that hook point (after any hooks): there are no logits."""

    def __init__(self, world: SyntheticWorld, device: str) -> None:
        self.world = world
        self.device = device
        self.hook_dict = {HOOK_NAME: None}

    def reset_hooks(self) -> None:
        """Nothing to reset: hooks live only for one call."""

    def run_with_cache(self, tokens: Tensor, *, names_filter=None, stop_at_layer=None) -> tuple[Tensor, dict]:
        acts = self.world.activations(tokens)  # [b, s, d]
        return acts, {HOOK_NAME: acts}

    def run_with_hooks(self, tokens: Tensor, *, fwd_hooks=()) -> Tensor:
        acts = self.world.activations(tokens)  # [b, s, d]
        for name, hook in fwd_hooks:
            if name == HOOK_NAME:
                acts = hook(acts, hook=None)
        return acts


def is_synthetic(loaded: LoadedModel) -> bool:
    """Whether a loaded model is a synthetic world (no language-model loss: explained variance instead)."""
    return bool(loaded.info.get("synthetic"))


def load_synthetic_model(folder: Path | str, *, name: str, device: str = "cpu") -> LoadedModel:
    """A world folder as a LoadedModel (one layer, hook `blocks.0.hook_resid_post`)."""
    world = load_world(folder)
    return LoadedModel(
        model=SyntheticLM(world, device),
        tokenizer=SyntheticTokenizer(),
        name=name,
        d_model=world.config.hidden_dim,
        n_layers=1,
        special_token_ids={SPECIAL_ID},
        hook_names=[HOOK_NAME],
        unembed=None,
        device=device,
        info={
            "synthetic": True,
            "d_model": world.config.hidden_dim,
            "n_layers": 1,
            "true_features": world.config.num_features,
            "domain_features": world.config.domain_features,
            "default_hook": HOOK_NAME,
        },
    )


# ----------------------------------------------------------------------------- the study against truth


def recovered(decoder: Tensor, directions: Tensor, *, threshold: float = RECOVERY_THRESHOLD) -> Tensor:
    """[F] bool: true features whose direction some decoder row [n, d] matches with cosine >= threshold."""
    if decoder.shape[0] == 0:
        return torch.zeros(directions.shape[0], dtype=torch.bool)
    best = cosine_similarities(directions.float(), decoder.detach().float().to(directions.device)).max(dim=1).values
    return best >= threshold


def decoder_truth(
    decoder: Tensor, directions: Tensor, subsets: Mapping[str, Tensor], *, threshold: float = RECOVERY_THRESHOLD
) -> dict[str, dict[str, float | int]]:
    """Per subset of true features: MCC and uniqueness (sae-lens's definitions) of the decoder rows [n, d] whose
    best-matching true feature is in the subset, and how many of the subset's features are recovered."""
    decoder = decoder.detach().float().cpu()
    directions = directions.float().cpu()
    best_match = cosine_similarities(decoder, directions).abs().argmax(dim=1)  # [n]
    hit = recovered(decoder, directions, threshold=threshold)
    out: dict[str, dict[str, float | int]] = {}
    for name, indices in subsets.items():
        mine = torch.isin(best_match, indices)
        out[name] = {
            "mcc": mean_correlation_coefficient(decoder, directions[indices]) if indices.numel() else 0.0,
            "uniqueness": feature_uniqueness(decoder[mine], directions) if mine.any() else 0.0,
            "latents": int(mine.sum()),
            "true_features": int(indices.numel()),
            "recovered": int(hit[indices].sum()),
        }
    return out


class FiringTruth:
    """sae-lens's classification metrics (each latent as a detector of its best-matching true feature), averaged over
    the latents assigned to each subset of true features, accumulated batch by batch."""

    def __init__(self, decoder: Tensor, directions: Tensor, subsets: Mapping[str, Tensor]) -> None:
        decoder = decoder.detach().float().cpu()
        best_match = cosine_similarities(decoder, directions.float().cpu()).abs().argmax(dim=1)
        self.latents = {name: torch.isin(best_match, indices).nonzero().flatten() for name, indices in subsets.items()}
        self.calculators = {
            name: ClassificationMetricsCalculator(decoder[latents], directions.float().cpu())
            for name, latents in self.latents.items()
        }

    def add(self, latents: Tensor, true_features: Tensor) -> None:
        """latents [n, d_sae] and the true feature activations [n, F] of the same positions."""
        latents, true_features = latents.detach().float().cpu(), true_features.cpu()
        for name, calculator in self.calculators.items():
            calculator.add_batch(latents[:, self.latents[name]], true_features)

    def compute(self) -> dict[str, dict[str, float]]:
        out = {}
        for name, calculator in self.calculators.items():
            metrics = calculator.compute()
            out[name] = {"f1": metrics.f1_score, "precision": metrics.precision, "recall": metrics.recall}
        return out


def gsae_missed(gsae_decoder: Tensor, world: SyntheticWorld, *, threshold: float = RECOVERY_THRESHOLD) -> Tensor:
    """Indices of the domain features the GSAE's decoder does not recover."""
    domain = world.subsets()["domain"]
    return domain[~recovered(gsae_decoder, world.directions, threshold=threshold)[domain]]


def truth_summary(
    decoders: Mapping[str, Tensor], world: SyntheticWorld, *, gsae: str, threshold: float = RECOVERY_THRESHOLD
) -> dict[str, Any]:
    """For each SAE (by key; an SSAE by its own decoder): its decoder against truth per subset, and how many of the
    domain features the GSAE (`decoders[gsae]`) misses it recovers."""
    missed = gsae_missed(decoders[gsae], world, threshold=threshold)
    subsets = world.subsets()
    per_sae = {}
    for key, decoder in decoders.items():
        figures = decoder_truth(decoder, world.directions, subsets, threshold=threshold)
        hit = recovered(decoder, world.directions, threshold=threshold)
        figures["gsae_missed_recovered"] = int(hit[missed].sum())
        per_sae[key] = figures
    return {"threshold": threshold, "gsae_missed": int(missed.numel()), "saes": per_sae}


class StudyTruth:
    """A study's SAEs against a world's truth, fed by `compute.ml.study.evaluate_domain(observe=...)`: decoder
    figures per subset (MCC, uniqueness, recovered) and firing figures (F1, precision, recall) on the held-out
    domain tokens, flattened into one row of columns per SAE (`rows`)."""

    def __init__(
        self, world: SyntheticWorld, decoders: Mapping[str, Tensor], *, gsae: str, threshold: float = RECOVERY_THRESHOLD
    ) -> None:
        self.world, self.gsae, self.threshold = world, gsae, threshold
        self.decoders = {key: decoder.detach().float().cpu() for key, decoder in decoders.items()}
        subsets = world.subsets()
        self.firing = {key: FiringTruth(decoder, world.directions, subsets) for key, decoder in self.decoders.items()}

    def observe(self, ids: Tensor, mask: Tensor, feature_acts: Mapping[str, Tensor]) -> None:
        true = self.world.true_features(ids)[mask.cpu()]  # [n, F]
        for key, acts in feature_acts.items():
            self.firing[key].add(acts[mask], true)

    def rows(self) -> dict[str, Any]:
        """{"gsae_missed": n, "threshold": t, "rows": {key: {"mcc_domain": ..., "f1_all": ..., ...}}}."""
        summary = truth_summary(self.decoders, self.world, gsae=self.gsae, threshold=self.threshold)
        rows = {}
        for key, figures in summary["saes"].items():
            firing = self.firing[key].compute()
            row: dict[str, float | int] = {"gsae_missed_recovered": figures["gsae_missed_recovered"]}
            for subset in SUBSETS:
                for name in ("mcc", "uniqueness", "recovered"):
                    row[f"{name}_{subset}"] = figures[subset][name]
                for name, value in firing[subset].items():
                    row[f"{name}_{subset}"] = value
            rows[key] = row
        return {
            "threshold": self.threshold,
            "gsae_missed": summary["gsae_missed"],
            "true_features": {subset: int(indices.numel()) for subset, indices in self.world.subsets().items()},
            "rows": rows,
        }

"""Decomposition probes: does a feature fire on the parts its description implies, and beat its controls?

Pure ML (no Django). A decomposition is a list of sub-components, each with phrases that should activate
the feature and near-miss phrases that share its surface words but not the concept; a fixed set of
unrelated general phrases is measured with every set. `measure_texts` runs the model and SAE over many
short texts in a few padded batches; `classify` turns the per-phrase maxima into a verdict with margins.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from compute.ml.tokens import merged_texts

if TYPE_CHECKING:  # torch only inside measure_texts: the web process imports this module for its pure parts
    from torch import Tensor

    from compute.ml.lm import LoadedModel

# Unrelated everyday text: a feature that fires on these is not specific to anything.
GENERAL_CONTROLS: tuple[str, ...] = (
    "The meeting has been moved to Thursday afternoon.",
    "Please remember to water the plants while I am away.",
    "She bought two loaves of bread and a carton of milk.",
    "The train to the city leaves every twenty minutes.",
    "He folded the laundry and put it back in the drawer.",
    "It rained all morning, but the sun came out by noon.",
)

CLASSES = ("cleanly", "partly", "not")
CLASS_LABELS = {"cleanly": "decomposes cleanly", "partly": "decomposes partly", "not": "does not decompose"}


@dataclass(frozen=True)
class Thresholds:
    """What counts as activating (fractions of the feature's corpus max) and how shares map to classes."""

    activation: float = 0.3  # a component's median phrase max must reach this fraction of the corpus max
    margin: float = 0.1  # ... and beat the larger of its near-miss and general controls by this much
    clean_share: float = 0.8  # share of activating components for "decomposes cleanly"
    partly_share: float = 0.4  # ... and for "decomposes partly"

    def __post_init__(self) -> None:
        if not 0 <= self.partly_share <= self.clean_share <= 1:
            raise ValueError("Need 0 <= partly share <= clean share <= 1.")
        if self.activation < 0 or self.margin < 0:
            raise ValueError("Activation threshold and margin must not be negative.")


def tokenize_texts(tokenizer: Any, texts: Sequence[str], *, max_tokens: int) -> tuple[list[list[int]], list[bool]]:
    """Token ids per text with BOS in front, cut to `max_tokens` tokens after BOS: (windows, was_cut)."""
    bos = tokenizer.bos_token_id
    windows, cut = [], []
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        cut.append(len(ids) > max_tokens)
        ids = ids[:max_tokens]
        windows.append(([bos] if bos is not None else []) + ids)
    return windows, cut


def measure_texts(
    loaded: LoadedModel,
    encode: Callable[[Tensor], Tensor],
    *,
    hook_name: str,
    feature_index: int | Sequence[int],
    texts: Sequence[str],
    max_tokens: int = 64,
    batch_size: int = 32,
    device: str = "cpu",
) -> list[dict[str, Any]]:
    """Per text: the feature's per-token activations (BOS excluded), max, tokens active, total, and tokens.

    `feature_index` is one feature for all texts or one per text. Texts are sorted by length before
    batching so padding stays small; results come back in the input order.
    """
    import torch

    from compute.ml.activations import hook_activations, pad_windows

    if isinstance(feature_index, int):
        features = [feature_index] * len(texts)
    else:
        features = list(feature_index)
        if len(features) != len(texts):
            raise ValueError("one feature index per text")
    windows, cut = tokenize_texts(loaded.tokenizer, texts, max_tokens=max_tokens)
    has_bos = loaded.tokenizer.bos_token_id is not None
    pad_id = loaded.tokenizer.pad_token_id
    if pad_id is None:
        pad_id = loaded.tokenizer.eos_token_id or 0
    order = sorted(range(len(texts)), key=lambda i: len(windows[i]))
    results: list[dict[str, Any] | None] = [None] * len(texts)
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        tokens, lengths = pad_windows([windows[i] for i in rows], pad_id)
        acts = hook_activations(loaded, tokens.to(device), hook_name=hook_name)  # [batch, seq, d_in]
        with torch.no_grad():
            feats = encode(acts.to(torch.float32))  # [batch, seq, d_sae]
        index = torch.tensor([features[i] for i in rows], device=feats.device)
        values = feats.gather(2, index[:, None, None].expand(-1, feats.shape[1], 1))[..., 0]  # [batch, seq]
        values = values.float().cpu()
        for row, i in enumerate(rows):
            first = 1 if has_bos else 0
            ids = windows[i][first:]
            vals = values[row, first : int(lengths[row])].tolist()
            results[i] = text_stats(vals, loaded.to_str_tokens(ids), was_cut=cut[i])
    return [r for r in results if r is not None]


def text_stats(values: list[float], tokens: list[str], *, was_cut: bool = False) -> dict[str, Any]:
    """Max, tokens active (> 0), total activation and the per-token values of one text (tokens as
    `LoadedModel.to_str_tokens` gives them; those spelling one character are listed merged, with the
    largest of their values)."""
    texts, merged = merged_texts(tokens, values)
    return {
        "tokens": texts,
        "values": [round(v, 5) for v in merged],
        "max": max(values, default=0.0),
        "n_active": sum(v > 0 for v in values),
        "total": float(sum(values)),
        "cut": was_cut,
    }


def relative(value: float, corpus_max: float) -> float:
    """`value` as a fraction of the feature's corpus max (0 when the feature never fired on the corpus)."""
    return value / corpus_max if corpus_max > 0 else 0.0


def classify(
    components: Sequence[dict[str, Any]],
    general_maxima: Sequence[float],
    *,
    corpus_max: float,
    thresholds: Thresholds,
) -> dict[str, Any]:
    """The verdict for one feature.

    `components`: [{"name", "phrase_maxima": [...], "control_maxima": [...]}] in activation units.
    A component's level is the median of its phrase maxima (most phrases must fire), its control level the
    larger of the medians of its near misses and of the general controls; it *activates* when its level
    reaches `thresholds.activation` of the corpus max and beats the control level by `thresholds.margin`
    (margin = level - control level, both relative to the corpus max). The class follows from the share
    of activating components.
    """
    general_level = relative(statistics.median(general_maxima), corpus_max) if general_maxima else 0.0
    rows = []
    for component in components:
        level = relative(statistics.median(component["phrase_maxima"]), corpus_max)
        near = component.get("control_maxima") or []
        near_level = relative(statistics.median(near), corpus_max) if near else 0.0
        control_level = max(near_level, general_level)
        margin = level - control_level
        rows.append(
            {
                "name": component["name"],
                "level": level,
                "near_miss_level": near_level,
                "control_level": control_level,
                "margin": margin,
                "above_threshold": level >= thresholds.activation,
                "beats_controls": margin >= thresholds.margin,
                "activates": level >= thresholds.activation and margin >= thresholds.margin,
            }
        )
    n = len(rows)
    share = sum(r["activates"] for r in rows) / n if n else 0.0
    if n and share >= thresholds.clean_share:
        verdict = "cleanly"
    elif n and share >= thresholds.partly_share and share > 0:
        verdict = "partly"
    else:
        verdict = "not"
    return {
        "class": verdict,
        "share": share,
        "n_activating": sum(r["activates"] for r in rows),
        "n_components": n,
        "general_level": general_level,
        "components": rows,
        "thresholds": {
            "activation": thresholds.activation,
            "margin": thresholds.margin,
            "clean_share": thresholds.clean_share,
            "partly_share": thresholds.partly_share,
        },
    }


class ComponentsError(ValueError):
    """Sub-components that cannot be measured; the message says which and why."""


MAX_PHRASE_CHARS = 200
MAX_NAME_CHARS = 80
MIN_PHRASES = 3


def clean_components(
    raw: Any, *, n_components: int | None = None, n_phrases: int | None = None, drop_invalid: bool = False
) -> tuple[list[dict[str, Any]], list[str]]:
    """Sub-components checked and tidied: (components, warnings).

    Each needs a name of its own, at least MIN_PHRASES distinct phrases and at most MAX_PHRASE_CHARS characters
    per phrase (ComponentsError otherwise). Near misses are optional but warned about. With `n_components` /
    `n_phrases` (what was asked for), extra items are dropped and missing ones are warned about. With
    `drop_invalid` (an LLM's proposal), a sub-component that fails a check is left out with a warning saying why,
    and only a proposal with none left is refused.
    """
    if not isinstance(raw, list) or not raw:
        raise ComponentsError("Give at least one sub-component.")
    components: list[dict[str, Any]] = []
    warnings: list[str] = []
    names: set[str] = set()
    for position, item in enumerate(raw, start=1):
        try:
            component, notes = _clean_component(position, item, names, n_phrases)
        except ComponentsError as exc:
            if not drop_invalid:
                raise
            warnings.append(f"Sub-component {position} left out: {exc}")
            continue
        names.add(component["name"].lower())
        components.append(component)
        warnings += notes
    if not components:
        raise ComponentsError(f"No usable sub-component ({'; '.join(warnings)}).")
    if n_components is not None:
        if len(components) > n_components:
            components = components[:n_components]
        elif len(components) < n_components:
            warnings.append(f"{len(components)} sub-components of the {n_components} asked for.")
    return components, warnings


def _clean_component(
    position: int, item: Any, names: set[str], n_phrases: int | None
) -> tuple[dict[str, Any], list[str]]:
    """One sub-component checked and tidied (see `clean_components`): (component, warnings)."""
    if not isinstance(item, dict):
        raise ComponentsError(f"Sub-component {position} is not an object with a name and phrases.")
    name = " ".join(str(item.get("name") or "").split())
    if not name:
        raise ComponentsError(f"Sub-component {position} has no name.")
    if len(name) > MAX_NAME_CHARS:
        raise ComponentsError(f"Sub-component {position}'s name is longer than {MAX_NAME_CHARS} characters.")
    if name.lower() in names:
        raise ComponentsError(f"Two sub-components are both called {name!r}.")
    lists = {}
    for key in ("phrases", "near_misses"):
        values = item.get(key) or []
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise ComponentsError(f"{name!r}: {key} must be a list of texts.")
        kept: list[str] = []
        for value in values:
            value = " ".join(value.split())
            if len(value) > MAX_PHRASE_CHARS:
                raise ComponentsError(
                    f"{name!r}: the phrase {value[:40]!r}... is longer than {MAX_PHRASE_CHARS} characters; "
                    "phrases should be short."
                )
            if value and value.lower() not in {k.lower() for k in kept}:
                kept.append(value)
        if n_phrases is not None and len(kept) > n_phrases:
            kept = kept[:n_phrases]
        lists[key] = kept
    if len(lists["phrases"]) < MIN_PHRASES:
        raise ComponentsError(
            f"{name!r} has {len(lists['phrases'])} distinct phrase(s); each sub-component needs at least {MIN_PHRASES}."
        )
    warnings = []
    if n_phrases is not None and len(lists["phrases"]) < n_phrases:
        warnings.append(f"{name!r}: {len(lists['phrases'])} phrases of the {n_phrases} asked for.")
    if not lists["near_misses"]:
        warnings.append(f"{name!r} has no near-miss controls: only the general controls test it.")
    return {"name": name, **lists}, warnings


_PHRASE = re.compile(r"^\s*\+\s*(.*)$")
_NEAR = re.compile(r"^\s*-\s*(.*)$")


def components_to_text(components: Sequence[dict[str, Any]]) -> str:
    """The editable text form: a name line, then `+ phrase` and `- near miss` lines, blank line between."""
    blocks = []
    for component in components:
        lines = [component["name"]]
        lines += [f"+ {p}" for p in component.get("phrases", [])]
        lines += [f"- {p}" for p in component.get("near_misses", [])]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def components_from_text(text: str) -> list[dict[str, Any]]:
    """Parse the text form (see components_to_text); ComponentsError for a phrase before any name."""
    components: list[dict[str, Any]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        phrase, near = _PHRASE.match(line), _NEAR.match(line)
        if phrase or near:
            if not components:
                raise ComponentsError(f"Line {number}: a phrase before any sub-component name.")
            key = "phrases" if phrase else "near_misses"
            components[-1][key].append((phrase or near).group(1).strip())
        else:
            components.append({"name": line.strip(), "phrases": [], "near_misses": []})
    return components


def proposal_schema(*, n_components: int, n_phrases: int, capped: bool = False) -> dict[str, Any]:
    """The JSON schema an LLM's proposal must validate against (floors, not the exact counts asked).

    `capped` also bounds the lists by the counts asked, for a model whose decoding follows the schema (the
    local one): it then stops within its token budget instead of listing on.
    """
    phrase = {"type": "string", "minLength": 1, "maxLength": MAX_PHRASE_CHARS}
    caps = (
        {"components": {"maxItems": n_components}, "lists": {"maxItems": max(n_phrases, MIN_PHRASES)}}
        if capped
        else {"components": {}, "lists": {}}
    )
    return {
        "type": "object",
        "required": ["components"],
        "properties": {
            "components": {
                "type": "array",
                "minItems": 1,
                **caps["components"],
                "items": {
                    "type": "object",
                    "required": ["name", "phrases", "near_misses"],
                    "properties": {
                        "name": {"type": "string", "minLength": 1, "maxLength": MAX_NAME_CHARS},
                        "phrases": {"type": "array", "minItems": MIN_PHRASES, **caps["lists"], "items": phrase},
                        "near_misses": {"type": "array", "minItems": 1, **caps["lists"], "items": phrase},
                    },
                },
            }
        },
    }


def proposal_messages(description: str, *, n_components: int, n_phrases: int) -> list[dict[str, str]]:
    """The prompt asking for sub-components, phrases and near-miss controls of a feature description."""
    return [
        {
            "role": "system",
            "content": (
                "You help test whether a feature of a language model's sparse autoencoder breaks into the parts its "
                "description implies. For example, a feature described as 'Albert Einstein' might have the "
                "sub-components 'German', 'physics', 'relativity' and 'famous scientist'."
            ),
        },
        {
            "role": "user",
            "content": (
                f"Feature description: {description}\n\n"
                f"Propose {n_components} distinct sub-components of this description. For each give {n_phrases} "
                "short phrases (under 15 words) that clearly express that sub-component, and "
                f"{n_phrases} near-miss phrases that reuse its surface words but NOT the concept (for 'physics': "
                '\'a physical therapy appointment\'). Return JSON: {"components": [{"name": ..., '
                '"phrases": [...], "near_misses": [...]}]}.'
            ),
        },
    ]

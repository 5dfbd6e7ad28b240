"""Feature dashboards: build them (a gpu-queue job), read them, render them, export them.

Imported by the web process: torch, sae_lens and compute.ml are imported only inside the job
handler and the helpers it calls.
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from html import escape
from pathlib import Path
from typing import Any

from django.db import transaction
from django.template.loader import render_to_string
from django.utils import timezone
from django.utils.safestring import mark_safe

from compute.jobs import JobContext, JobInputError, JobInterrupted, job_create
from compute.ml.config import ConfigError, DashboardJobConfig
from compute.models import SAE, Corpus, DashboardSet, FeatureDashboard, Job, JobKind, JobStatus
from compute.services.registry import RegistryError, corpus_texts, job_scratch, language_model_load, sae_load

_ACTIVE = (JobStatus.QUEUED, JobStatus.RUNNING)


# ----------------------------------------------------------------------------- public contract


def dashboard_build(*, sae_id: int, corpus_id: int, created_by=None, params: dict[str, Any] | None = None) -> Job:
    """The build job for this SAE x corpus: the queued, running or succeeded one if any, else a new one."""
    with transaction.atomic():
        sae = SAE.objects.select_for_update().get(pk=sae_id)
        corpus = Corpus.objects.get(pk=corpus_id)
        dset, _ = DashboardSet.objects.get_or_create(sae=sae, corpus=corpus)
        dset = DashboardSet.objects.select_for_update().get(pk=dset.pk)
        job = dset.job
        if job is not None and (job.status in _ACTIVE or _ready(dset)):
            return job
        job = job_create(
            kind=JobKind.BUILD_DASHBOARDS,
            params={**(params or {}), "sae_id": sae.pk, "corpus_id": corpus.pk},
            created_by=created_by,
        )
        # Finished dashboards stay readable: their (lost) job record is replaced by one that reuses them.
        status = dset.status if _ready(dset) else DashboardSet.Status.BUILDING
        DashboardSet.objects.filter(pk=dset.pk).update(job=job, status=status)
    return job


def dashboards_ready(*, sae_id: int, corpus_id: int) -> bool:
    return DashboardSet.objects.filter(sae_id=sae_id, corpus_id=corpus_id, status=DashboardSet.Status.READY).exists()


def feature_frequencies(*, sae_id: int, corpus_id: int) -> list[float] | None:
    """Firing frequency of every feature (index order) on this corpus; None until built."""
    dset = _ready_set(sae_id=sae_id, corpus_id=corpus_id)
    if dset is None:
        return None
    return list(dset.features.order_by("feature_index").values_list("frequency", flat=True))


def dashboard_html(*, sae_id: int, corpus_id: int, feature_index: int, blind: bool) -> str:
    """The dashboard partial of one feature on one corpus; blind leaves out everything identifying."""
    ((_, html),) = dashboards_html(sae_id=sae_id, corpus_id=corpus_id, feature_indices=[feature_index], blind=blind)
    return html


def dashboards_html(
    *, sae_id: int, corpus_id: int, feature_indices: Iterable[int], blind: bool
) -> Iterator[tuple[int, str]]:
    """(feature index, dashboard partial) for many features of one SAE on one corpus.

    Two queries whatever the number of features (the set, then its rows streamed), so memory stays bounded.
    """
    wanted = set(feature_indices)
    dset = _ready_set(sae_id=sae_id, corpus_id=corpus_id)
    if dset is None:
        missing = render_to_string(
            "compute/_dashboard.html", {"missing": "Dashboards for this corpus are not built yet."}
        )
        yield from ((i, missing) for i in sorted(wanted))
        return
    for row in dset.features.filter(feature_index__in=sorted(wanted)).iterator(chunk_size=200):
        wanted.discard(row.feature_index)
        yield (
            row.feature_index,
            render_to_string("compute/_dashboard.html", dashboard_context(dset=dset, row=row, blind=blind)),
        )
    for i in sorted(wanted):
        yield i, render_to_string("compute/_dashboard.html", {"missing": f"No feature {i} in this SAE."})


# ----------------------------------------------------------------------------- reading


def _ready(dset: DashboardSet) -> bool:
    return dset.status == DashboardSet.Status.READY


def _ready_set(*, sae_id: int, corpus_id: int) -> DashboardSet | None:
    return (
        DashboardSet.objects.select_related("sae", "corpus")
        .filter(sae_id=sae_id, corpus_id=corpus_id, status=DashboardSet.Status.READY)
        .first()
    )


def dashboard_get(*, sae_id: int, corpus_id: int, feature_index: int) -> tuple[DashboardSet, FeatureDashboard] | None:
    dset = _ready_set(sae_id=sae_id, corpus_id=corpus_id)
    if dset is None:
        return None
    row = dset.features.filter(feature_index=feature_index).first()
    return (dset, row) if row is not None else None


def _expand(example: dict[str, Any], strings: list[str]) -> dict[str, Any]:
    return {
        "tokens": [strings[i] for i in example["t"]],
        "values": example["v"],
        "max_index": example["c"],
        "max_value": example["x"],
        "sequence": example["s"],
        "position": example["p"],
    }


def dashboard_export(*, dset: DashboardSet, row: FeatureDashboard) -> dict[str, Any]:
    """Our JSON format: one feature's dashboard with token strings spelled out."""
    data = row.data
    strings = data["strings"]
    return {
        "format": "labelsite-dashboard/1",
        "sae": {"id": dset.sae_id, "name": dset.sae.name, "hook_name": dset.sae.hook_name, "d_sae": dset.sae.d_sae},
        "corpus": {"id": dset.corpus_id, "name": dset.corpus.name, "kind": dset.corpus.kind},
        "config": dset.config,
        "feature_index": row.feature_index,
        "n_tokens": dset.n_tokens,
        "n_firing": row.n_firing,
        "frequency": row.frequency,
        "max_activation": row.max_activation,
        "mean_activation": data["mean"],
        "histogram": data["histogram"],
        "top_examples": [_expand(ex, strings) for ex in data["top"]],
        "quantiles": [
            {**{k: q[k] for k in ("lo", "hi", "count")}, "examples": [_expand(ex, strings) for ex in q["examples"]]}
            for q in data["quantiles"]
        ],
        "logits": data["logits"],
    }


def dashboard_set_exports(*, dset: DashboardSet) -> Iterator[dict[str, Any]]:
    """Our export of every feature of a set, one at a time (memory stays flat for wide SAEs)."""
    for row in dset.features.order_by("feature_index").iterator(chunk_size=200):
        yield dashboard_export(dset=dset, row=row)


def dashboard_set_export_lines(*, dset: DashboardSet) -> Iterator[str]:
    """JSON Lines for a whole set."""
    import json

    for export in dashboard_set_exports(dset=dset):
        yield json.dumps(export) + "\n"


def neuronpedia_set_lines(*, dset: DashboardSet) -> Iterator[str]:
    """The whole set as one Neuronpedia batch document (compute.services.neuronpedia), streamed."""
    from compute.ml.choices import hook_layer
    from compute.services.neuronpedia import neuronpedia_batch_header, neuronpedia_batch_lines

    sae = dset.sae
    header = neuronpedia_batch_header(
        model_id=sae.language_model.name, layer=hook_layer(sae.hook_name) or 0, sae_set=sae.name
    )
    return neuronpedia_batch_lines(header, dashboard_set_exports(dset=dset))


# ----------------------------------------------------------------------------- rendering


_WS = {"\n": "↵", "\t": "⇥", "\r": ""}


def _count(n: int) -> str:
    """1234567 -> '1.2M' (plain numbers read faster than digits in a sentence)."""
    for size, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if n >= size:
            return f"{n / size:.1f}".rstrip("0").rstrip(".") + suffix
    return str(n)


def _num(value: float) -> str:
    return f"{value:.3g}"


def _is_special(text: str) -> bool:
    """Special tokens (BOS, document separators, padding) look like markup: show them faintly."""
    return (text.startswith("<|") and text.endswith("|>")) or text in ("<s>", "</s>", "<pad>", "<bos>", "<eos>")


def _char_html(ch: str) -> str:
    """Whitespace as faint symbols; other control characters (NUL too) as faint escapes, never raw."""
    if ch in _WS:
        return f'<span class="ws">{_WS[ch]}</span>' if _WS[ch] else ""
    if not ch.isprintable() and ch != " ":
        return f'<span class="ws">\\x{ord(ch):02x}</span>'
    return escape(ch)


def _token_html(text: str, value: float, scale: float, is_max: bool) -> str:
    if _is_special(text):
        body = f'<span class="ws">{escape(text)}</span>'
    else:
        body = "".join(_char_html(ch) for ch in text) or '<span class="ws">∅</span>'
    if value > 0:
        alpha = min(1.0, value / scale) if scale > 0 else 0.0
        cls = "tok max" if is_max else "tok"
        return (
            f'<span class="{cls}" style="background:rgba(255,120,0,{0.08 + 0.77 * alpha:.2f})" '
            f'title="{escape(repr(text))}: {value:.3g}">{body}</span>'
        )
    return f'<span class="tok" title="{escape(repr(text))}: 0">{body}</span>'


def _example_html(example: dict[str, Any], strings: list[str], scale: float) -> str:
    center = example["c"]
    return "".join(
        _token_html(strings[t], v, scale, i == center)
        for i, (t, v) in enumerate(zip(example["t"], example["v"], strict=True))
    )


def tokens_html(tokens: list[str], values: list[float], scale: float) -> str:
    """Tokens shaded by activation (relative to `scale`, e.g. the feature's corpus max), the max outlined."""
    top = max(range(len(values)), key=values.__getitem__) if values and max(values) > 0 else -1
    return "".join(_token_html(t, v, scale, i == top) for i, (t, v) in enumerate(zip(tokens, values, strict=True)))


def _histogram_svg(counts: list[int], hi: float) -> str:
    if not counts or not any(counts):
        return ""
    width, height = 300, 60
    bar = width / len(counts)
    top = max(counts)
    bars = "".join(
        f'<rect x="{i * bar:.1f}" y="{height - height * c / top:.1f}" width="{max(bar - 1, 1):.1f}" '
        f'height="{height * c / top:.1f}"><title>{hi * i / len(counts):.3g}–{hi * (i + 1) / len(counts):.3g}: '
        f"{c}</title></rect>"
        for i, c in enumerate(counts)
        if c
    )
    return (
        f'<svg class="dash-hist" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
        f'aria-label="histogram of activation values">{bars}</svg>'
    )


def _shaded_logits(pos: list, neg: list) -> dict[str, list[tuple[str, str, str]]]:
    """(token, value as text, CSS background) for the admin view: green promotes, red suppresses, the
    strength of the colour proportional to |value| over the largest |value| shown."""
    top = max([abs(float(v)) for _, v in [*pos, *neg]] or [1.0]) or 1.0

    def shade(rows: list, rgb: str) -> list[tuple[str, str, str]]:
        return [(tok, f"{float(v):+.3g}", f"rgba({rgb},{0.15 + 0.6 * abs(float(v)) / top:.2f})") for tok, v in rows]

    return {"pos": shade(pos, "0,158,115"), "neg": shade(neg, "213,94,0")}


def _frequency_sentence(n_firing: int, n_tokens: int) -> str:
    if n_firing == 0:
        return f"Never fires on the {_count(n_tokens)} tokens of this corpus."
    percent = 100 * n_firing / n_tokens if n_tokens else 0.0
    return f"Fires on {_count(n_firing)} of {_count(n_tokens)} tokens ({percent:.3g}%)."


def dashboard_context(*, dset: DashboardSet, row: FeatureDashboard, blind: bool) -> dict[str, Any]:
    """Everything the partial needs, with token runs already built as HTML (fast for 2000+ tokens)."""
    data = row.data
    strings = data["strings"]
    scale = row.max_activation
    top = [{"value": _num(ex["x"]), "html": mark_safe(_example_html(ex, strings, scale))} for ex in data["top"]]
    quantiles = [
        {
            "lo": _num(q["lo"]),
            "hi": _num(q["hi"]),
            "count": f"{q['count']:,} token{'' if q['count'] == 1 else 's'}",
            "examples": [
                {"value": _num(ex["x"]), "html": mark_safe(_example_html(ex, strings, scale))} for ex in q["examples"]
            ],
        }
        for q in reversed(data["quantiles"])
    ]
    rare = row.n_firing < dset.config.get("top_k", 20)
    context: dict[str, Any] = {
        "blind": blind,
        "corpus_kind": dset.corpus.get_kind_display(),
        "frequency_sentence": _frequency_sentence(row.n_firing, dset.n_tokens),
        "rare": rare,
        "n_firing": row.n_firing,
        "max_activation": _num(row.max_activation),
        "mean_activation": _num(data["mean"]),
        "histogram": mark_safe(_histogram_svg(data["histogram"]["counts"], data["histogram"]["hi"])),
        "top": top,
        # A rare feature's top examples already show every firing; samples would only repeat them.
        "quantiles": quantiles if row.n_firing > len(top) and len(quantiles) > 1 else [],
        "logits_pos": data["logits"].get("pos", []),
        "logits_neg": data["logits"].get("neg", []),
    }
    if not blind:
        context.update(
            {
                "logits_shaded": _shaded_logits(context["logits_pos"], context["logits_neg"]),
                "sae_name": dset.sae.name,
                "sae_method": dset.sae.get_method_display(),
                "hook_name": dset.sae.hook_name,
                "feature_index": row.feature_index,
                "corpus_name": dset.corpus.name,
            }
        )
    return context


# ----------------------------------------------------------------------------- building (worker side)


def _build_config(params: dict[str, Any]) -> DashboardJobConfig:
    try:
        return DashboardJobConfig.from_params(params)
    except ConfigError as exc:
        raise JobInputError(str(exc)) from exc


def _round4(value: float) -> float:
    """Four significant digits: plenty for highlighting, and the JSON stays short."""
    return float(f"{value:.4g}") if value else 0


def pack_feature(feature: dict[str, Any], to_str: Callable[[int], str], logits: dict[str, list]) -> FeatureDashboard:
    """One dashboard from compute.ml.dashboards -> an unsaved row; token ids become a per-row string table.

    Per-token values keep four significant digits relative to the feature's max activation.
    """
    import numpy as np

    scale = feature["max"]
    decimals = max(0, 3 - math.floor(math.log10(scale))) if scale > 0 else 4
    local: dict[int, int] = {}
    strings: list[str] = []

    def pack_example(ex: dict[str, Any]) -> dict[str, Any]:
        ids = []
        for t in ex["tokens"].tolist():
            if t not in local:
                local[t] = len(strings)
                strings.append(to_str(t))
            ids.append(local[t])
        return {
            "t": ids,
            "v": np.round(ex["values"].astype(np.float64), decimals).tolist(),
            "c": ex["center"],
            "x": _round4(ex["value"]),
            "s": ex["seq"],
            "p": ex["pos"],
        }

    data = {
        "top": [pack_example(ex) for ex in feature["top"]],
        "quantiles": [
            {
                "lo": _round4(q["lo"]),
                "hi": _round4(q["hi"]),
                "count": q["count"],
                "examples": [pack_example(e) for e in q["examples"]],
            }
            for q in feature["quantiles"]
        ],
        "histogram": feature["histogram"],
        "mean": _round4(feature["mean"]),
        "logits": logits,
        "strings": strings,
    }
    return FeatureDashboard(
        feature_index=feature["index"],
        n_firing=feature["n_firing"],
        frequency=feature["frequency"],
        max_activation=feature["max"],
        payload=FeatureDashboard.pack(data),
    )


def run_dashboard_job(ctx: JobContext) -> dict[str, Any]:
    """Job handler (kind build_dashboards, gpu queue): all features of one SAE on one corpus.

    Safe to run twice: a set that another job already built is reused; a rerun of this job
    replaces its own partial rows.
    """
    from compute.ml import corpora as ml_corpora
    from compute.ml import lm as ml_lm

    config = _build_config(ctx.params)
    try:
        sae = SAE.objects.select_related("language_model").get(pk=ctx.params.get("sae_id"))
        corpus = Corpus.objects.get(pk=ctx.params.get("corpus_id"))
    except (SAE.DoesNotExist, Corpus.DoesNotExist, ValueError, TypeError) as exc:
        raise JobInputError("sae_id and corpus_id must name an existing SAE and corpus.") from exc
    if sae.status != SAE.Status.READY or not sae.artifact_path:
        raise JobInputError(f"SAE {sae.name!r} is {sae.status}, not ready (no trained weights to read).")
    dset, _ = DashboardSet.objects.get_or_create(sae=sae, corpus=corpus)
    if dset.status == DashboardSet.Status.READY:
        return {"reused_set": dset.pk, "n_features": dset.n_features}
    DashboardSet.objects.filter(pk=dset.pk).update(job=ctx.job, status=DashboardSet.Status.BUILDING)

    device = ml_lm.default_device()
    ctx.set_device(device)
    scratch = job_scratch(prefix=f"dash-{ctx.job.pk}-")
    try:
        return _build(ctx, sae=sae, corpus=corpus, dset=dset, job_config=config, device=device, scratch=scratch)
    except (ml_corpora.CorpusError, ml_lm.ModelLoadError, RegistryError) as exc:
        _set_failed(dset)
        raise JobInputError(str(exc)) from exc
    except JobInterrupted:
        raise  # the next attempt builds the set again
    except BaseException:
        _set_failed(dset)
        raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def dashboards_abandon_job(*, job: Job, reason: str) -> int:
    """A dashboard job will never finish: the set it was building is failed (JobKind abandon hook)."""
    return DashboardSet.objects.filter(job=job, status=DashboardSet.Status.BUILDING).update(
        status=DashboardSet.Status.FAILED
    )


def _set_failed(dset: DashboardSet) -> None:
    DashboardSet.objects.filter(pk=dset.pk).exclude(status=DashboardSet.Status.READY).update(
        status=DashboardSet.Status.FAILED
    )


def _build(
    ctx: JobContext,
    *,
    sae: SAE,
    corpus: Corpus,
    dset: DashboardSet,
    job_config: DashboardJobConfig,
    device: str,
    scratch: Path,
) -> dict[str, Any]:
    import torch

    from compute.ml.activations import activation_stream
    from compute.ml.dashboards import ActivationCache, DashboardConfig, compute_dashboards, output_logit_tokens

    timings: dict[str, float] = {}
    ctx.progress(0.01, "loading SAE and model")
    t0 = time.perf_counter()
    lens_sae = sae_load(sae=sae, device=device, scratch=scratch)
    if lens_sae.cfg.d_sae != sae.d_sae:
        raise JobInputError(f"SAE {sae.name!r}: weights have d_sae={lens_sae.cfg.d_sae}, record says {sae.d_sae}.")
    loaded = language_model_load(language_model=sae.language_model, device=device, hook_name=sae.hook_name)
    timings["load_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    # The whole corpus (train and eval alike), up to the token budget.
    batches = activation_stream(
        corpus_texts(corpus=corpus, scratch=scratch),
        loaded,
        sae.hook_name,
        split="all",
        budget=job_config.max_tokens,
        context_size=job_config.context_size,
        batch_size=job_config.batch_size,
        device=device,
    )
    cache = ActivationCache(scratch / "acts")
    n_tokens = cache.write(_with_progress(batches, ctx, job_config))
    if n_tokens == 0:
        raise JobInputError(f"Corpus {corpus.name!r} yielded no tokens.")
    timings["activations_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    config = DashboardConfig(**job_config.render_options())
    logits = _logit_tables(lens_sae, loaded, config.n_logit_tokens, output_logit_tokens)
    to_str = _token_strings(loaded)
    FeatureDashboard.objects.filter(dashboard_set=dset).delete()
    n_dead = 0

    def on_progress(fraction: float, message: str) -> None:
        ctx.progress(0.5 + 0.49 * fraction, message)

    with torch.no_grad():
        for chunk in compute_dashboards(
            batches=cache,
            encode=lens_sae.encode,
            d_sae=sae.d_sae,
            config=config,
            feature_chunk=job_config.feature_chunk,
            device=device,
            progress=on_progress,
        ):
            rows = []
            for feature in chunk:
                row = pack_feature(feature, to_str, logits[feature["index"]])
                row.dashboard_set = dset
                rows.append(row)
                n_dead += row.n_firing == 0
            FeatureDashboard.objects.bulk_create(rows, batch_size=500)
    timings["dashboards_s"] = time.perf_counter() - t0
    cache.remove()

    DashboardSet.objects.filter(pk=dset.pk).update(
        status=DashboardSet.Status.READY,
        config={**config.as_dict(), "max_tokens": job_config.max_tokens, "context_size": job_config.context_size},
        n_tokens=n_tokens,
        n_features=sae.d_sae,
        n_dead=n_dead,
        stats={k: round(v, 3) for k, v in timings.items()},
        finished_at=timezone.now(),
    )
    return {"dashboard_set": dset.pk, "n_tokens": n_tokens, "n_features": sae.d_sae, "n_dead": n_dead, **timings}


def _with_progress(batches, ctx: JobContext, job_config: DashboardJobConfig):
    per_batch = job_config.batch_size * job_config.context_size
    total = max(1, job_config.max_tokens)
    done = 0
    for batch in batches:
        yield batch
        done += per_batch
        ctx.progress(0.05 + 0.45 * min(1.0, done / total), f"activations: {min(done, total)} of {total} tokens")


def _token_strings(loaded):
    cache: dict[int, str] = {}

    def to_str(token_id: int) -> str:
        if token_id not in cache:
            cache[token_id] = loaded.to_str_tokens([token_id])[0]
        return cache[token_id]

    return to_str


def _logit_tables(lens_sae, loaded, k: int, output_logit_tokens) -> list[dict[str, list]]:
    """Per feature: top positive and negative output-logit tokens of its decoder direction (empty without W_U)."""
    d_sae = lens_sae.cfg.d_sae
    if k == 0 or loaded.unembed is None:
        return [{"pos": [], "neg": []} for _ in range(d_sae)]
    pos_v, pos_i, neg_v, neg_i = output_logit_tokens(w_dec=lens_sae.W_dec.detach(), unembed=loaded.unembed, k=k)
    ids = sorted(set(pos_i.flatten().tolist()) | set(neg_i.flatten().tolist()))
    strings = dict(zip(ids, loaded.to_str_tokens(ids), strict=True))
    pv, pi, nv, ni = pos_v.tolist(), pos_i.tolist(), neg_v.tolist(), neg_i.tolist()
    return [
        {
            "pos": [[strings[t], round(v, 3)] for t, v in zip(pi[f], pv[f], strict=True)],
            "neg": [[strings[t], round(v, 3)] for t, v in zip(ni[f], nv[f], strict=True)],
        }
        for f in range(d_sae)
    ]

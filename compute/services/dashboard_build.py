"""Building dashboards, worker side: the build_dashboards job handler (gpu queue).

One model pass over the corpus (`activation_stream`) fills an on-disk activation cache; features are then
computed in chunks by `compute.ml.dashboards` and stored one compressed row per feature. torch, sae_lens
and the rest of compute.ml are imported inside functions.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from django.utils import timezone

from compute.jobs import JobContext, JobInputError, JobInterrupted
from compute.ml.config import ConfigError, DashboardJobConfig
from compute.models import SAE, Corpus, DashboardSet, FeatureDashboard, Job
from compute.models.dashboards import EXAMPLE_RECORD, round4
from compute.services.registry import RegistryError, corpus_texts, job_scratch, language_model_load, sae_load


def _build_config(params: dict[str, Any]) -> DashboardJobConfig:
    try:
        return DashboardJobConfig.from_params(params)
    except ConfigError as exc:
        raise JobInputError(str(exc)) from exc


FACTORIZE_FEATURES = 16


def pack_chunk(
    chunk,
    to_str: Callable[[Any], list[str]],
    logits: Sequence[dict[str, list]],
    dashboard_set: DashboardSet | None = None,
) -> list[FeatureDashboard]:
    """A `compute.ml.dashboards.DashboardChunk` -> one unsaved row per feature of `dashboard_set`; `logits[i]` is
    feature i's.

    Per-token values keep four significant digits relative to the feature's max activation, stored as integers;
    token ids become a per-row string table listing tokens in order of first appearance (top examples, then each
    quantile's samples). Everything but the JSON header and the compression is done for the whole chunk at once.
    `to_str` maps an array of token ids to their strings (`TokenStrings`).
    """
    import numpy as np
    import pandas as pd

    c, nb = len(chunk), chunk.bin_count.shape[1]
    ex_off, tok_off = chunk.example_offsets(), chunk.token_offsets()
    feat_tok = tok_off[ex_off]  # [c + 1]: feature i's tokens are tokens[feat_tok[i]:feat_tok[i + 1]]
    tok_feature = np.repeat(np.arange(c, dtype=np.int32), np.diff(feat_tok))
    scale = chunk.max
    with np.errstate(divide="ignore"):
        decimals = np.where(scale > 0, np.maximum(0, 3 - np.floor(np.log10(scale))), 4).astype(np.int64)
    # what np.round(values, decimals) rounds to, as integers
    scaled = np.rint(chunk.values.astype(np.float64) * 10.0 ** decimals[tok_feature])
    # Local token ids: each feature's tokens numbered by first appearance, FACTORIZE_FEATURES features at a
    # time (one hash table over the whole chunk is several times slower: it outgrows the CPU's caches).
    width = int(chunk.tokens.max()) + 1 if chunk.tokens.size else 1
    local, pairs = np.zeros(chunk.tokens.size, dtype=np.int64), []
    for f0 in range(0, c, FACTORIZE_FEATURES):
        a, b = feat_tok[f0], feat_tok[min(c, f0 + FACTORIZE_FEATURES)]
        codes, block = pd.factorize((tok_feature[a:b] - f0) * width + chunk.tokens[a:b])
        block_off = np.searchsorted(block // width, np.arange(FACTORIZE_FEATURES))
        local[a:b] = codes - block_off[tok_feature[a:b] - f0]
        pairs.append(block + f0 * width)
    pairs = np.concatenate(pairs) if pairs else np.zeros(0, dtype=np.int64)
    str_off = np.searchsorted(pairs // width, np.arange(c + 1))
    strings = to_str(pairs % width)
    records = np.empty(chunk.ex_len.size, dtype=EXAMPLE_RECORD)
    for name, column in zip(("n", "c", "s", "p", "x"), (chunk.ex_len, chunk.ex_center, chunk.ex_seq, chunk.ex_pos, chunk.ex_value), strict=True):  # fmt: skip
        records[name] = column
    record_bytes, size = records.tobytes(), records.itemsize
    per_bin = np.bincount(chunk.ex_feature * (nb + 1) + chunk.ex_bin + 1, minlength=c * (nb + 1)).reshape(c, -1)

    def body(i: int) -> bytes:
        quantiles = [
            {
                "lo": round4(chunk.bin_lo[i, j]),
                "hi": round4(chunk.bin_hi[i, j]),
                "count": int(chunk.bin_count[i, j]),
                "k": int(per_bin[i, j + 1]),
            }  # fmt: skip
            for j in np.flatnonzero(chunk.bin_count[i])
        ]
        header = {
            "n_top": int(per_bin[i, 0]),
            "quantiles": quantiles,
            "histogram": chunk.histogram_of(i),
            "mean": round4(chunk.mean[i]),
            "logits": logits[i],
            "strings": strings[str_off[i] : str_off[i + 1]],
        }
        a, b = feat_tok[i], feat_tok[i + 1]
        own_records = record_bytes[ex_off[i] * size : ex_off[i + 1] * size]
        return FeatureDashboard.examples_body(header, own_records, local[a:b], scaled[a:b], int(decimals[i]))

    payloads = [FeatureDashboard.compress_body(body(i)) for i in range(c)]
    frequency = chunk.frequency
    return [
        FeatureDashboard(
            # the id, not the object: Django's per-row relation default or setter costs ~0.1 ms
            dashboard_set_id=dashboard_set.pk if dashboard_set is not None else None,
            feature_index=chunk.lo + i,
            n_firing=int(chunk.n_firing[i]),
            frequency=float(frequency[i]),
            max_activation=float(chunk.max[i]),
            payload=payload,
        )
        for i, payload in enumerate(payloads)
    ]


def pack_feature(
    feature: dict[str, Any], to_str: Callable[[Any], list[str]], logits: dict[str, list]
) -> FeatureDashboard:
    """One dashboard dict (`DashboardChunk.features()`'s form) -> an unsaved row, as `pack_chunk` packs it."""
    from compute.ml.dashboards import DashboardChunk

    return pack_chunk(DashboardChunk.from_features([feature]), to_str, [logits])[0]


class TokenStrings:
    """Token ids -> their strings (each id decoded on its own, once): `strings(np.array([...]))`."""

    def __init__(self, decode: Callable[[list[int]], list[str]]) -> None:
        import numpy as np

        self._decode = decode
        self._table = np.empty(0, dtype=object)
        self._known = np.zeros(0, dtype=bool)

    def __call__(self, ids) -> list[str]:
        import numpy as np

        ids = np.asarray(ids, dtype=np.int64)
        if ids.size == 0:
            return []
        if ids.max() >= self._known.size:  # grow the table (vocabularies are known only by the ids seen)
            size = max(int(ids.max()) + 1, 2 * self._known.size)
            self._table = np.concatenate([self._table, np.empty(size - self._table.size, dtype=object)])
            self._known = np.concatenate([self._known, np.zeros(size - self._known.size, dtype=bool)])
        missing = np.unique(ids[~self._known[ids]])
        if missing.size:
            self._table[missing] = self._decode(missing.tolist())
            self._known[missing] = True
        return self._table[ids].tolist()


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
    from compute.ml.dashboards import ActivationCache, DashboardConfig, compute_dashboards

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
    logits = logit_tables(lens_sae, loaded, config.n_logit_tokens)
    to_str = TokenStrings(loaded.to_str_tokens)
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
            rows = pack_chunk(chunk, to_str, logits[chunk.lo : chunk.lo + len(chunk)], dset)
            n_dead += int((chunk.n_firing == 0).sum())
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


def logit_tables(lens_sae, loaded, k: int) -> list[dict[str, list]]:
    """Per feature: top positive and negative output-logit tokens of its decoder direction (empty without W_U)."""
    from compute.ml.dashboards import output_logit_tokens

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

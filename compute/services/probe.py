"""The live probe: an admin types a text on a feature's page and sees its per-token activations.

The web process never loads a model: it writes a ProbeRequest row and polls it; a `probe_worker` process
(`python manage.py probe_worker`) claims pending rows with a conditional UPDATE, keeps language models and
SAEs loaded between requests, and writes the answer back. Through the database it works the same on SQLite
and PostgreSQL, whatever the Celery broker, and adds only the polling interval to the latency.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections import OrderedDict
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import OperationalError, close_old_connections
from django.utils import timezone

from compute.jobs import JobInputError
from compute.models import SAE, ProbeRequest

log = logging.getLogger(__name__)

MAX_PROBE_CHARS = 4000
KEEP_FINISHED = timedelta(hours=1)
IDLE_AFTER_S = 10.0  # seconds without a probe before the worker polls slowly
IDLE_POLL_S = 0.1


class ProbeError(JobInputError):
    """A probe that cannot be answered; the message says what to do."""


def probe_submit(*, sae: SAE, feature_index: int, text: str, created_by=None) -> ProbeRequest:
    """Queue one text for the probe worker (checked first: non-empty, not huge, a real feature)."""
    if not text.strip():
        raise ProbeError("Type a text to probe.")
    if len(text) > MAX_PROBE_CHARS:
        raise ProbeError(
            f"The text is longer than {MAX_PROBE_CHARS} characters; the probe reads its first "
            f"{settings.PROBE_MAX_TOKENS} tokens, so paste a shorter passage."
        )
    if not 0 <= feature_index < sae.d_sae:
        raise ProbeError(f"SAE {sae.name} has features 0 to {sae.d_sae - 1}.")
    if sae.status != SAE.Status.READY:
        raise ProbeError(f"SAE {sae.name} is {sae.status}, not ready.")
    return ProbeRequest.objects.create(sae=sae, feature_index=feature_index, text=text, created_by=created_by)


# A claimed request gets this many waiting periods in all (the first probe of a worker loads the model).
PROBE_MAX_WAIT_PERIODS = 12


def probe_wait(*, probe: ProbeRequest, timeout_s: float | None = None, poll_s: float = 0.01) -> ProbeRequest:
    """Poll until the worker answers; ProbeError when it fails or no worker picks the request up in time."""
    timeout_s = settings.PROBE_WAIT_S if timeout_s is None else timeout_s
    deadline = time.monotonic() + timeout_s
    periods = 1
    while True:
        row = ProbeRequest.objects.filter(pk=probe.pk).only("status", "result", "error").first()
        if row is None:
            raise ProbeError("The probe request disappeared.")
        if row.status == ProbeRequest.Status.DONE:
            return row
        if row.status == ProbeRequest.Status.FAILED:
            raise ProbeError(row.error or "The probe failed.")
        if time.monotonic() >= deadline:
            expired = ProbeRequest.objects.filter(pk=probe.pk, status=ProbeRequest.Status.PENDING).update(
                status=ProbeRequest.Status.EXPIRED, finished_at=timezone.now()
            )
            if expired:
                raise ProbeError(
                    f"No probe worker answered within {timeout_s:g} s. Start one with `python manage.py probe_worker` "
                    "(it keeps the model loaded between probes)."
                )
            if periods >= PROBE_MAX_WAIT_PERIODS:
                raise ProbeError(
                    f"A probe worker took this request but gave no answer in {periods * timeout_s:g} s; it may have "
                    "stopped (see its log). Try again once `python manage.py probe_worker` runs."
                )
            periods += 1
            deadline += timeout_s  # a worker is on it (a first probe may load the model): one more period
        time.sleep(poll_s)


def probe_text(*, sae: SAE, feature_index: int, text: str, created_by=None) -> dict[str, Any]:
    """Submit and wait: the per-token activations of `text` (BOS excluded) with max, tokens active and total."""
    probe = probe_submit(sae=sae, feature_index=feature_index, text=text, created_by=created_by)
    return probe_wait(probe=probe).result


def _record(pk: int, *, attempts: int = 8, **fields: Any) -> None:
    """Write a probe's outcome, retrying while the database is busy (the page is waiting for exactly this row)."""
    for attempt in range(attempts):
        try:
            ProbeRequest.objects.filter(pk=pk).update(finished_at=timezone.now(), **fields)
            return
        except OperationalError:
            if attempt == attempts - 1:
                raise
            close_old_connections()
            time.sleep(0.05 * 2**attempt)


class ProbeWorker:
    """Answers ProbeRequests, keeping up to `max_saes` SAEs and their language models loaded."""

    def __init__(self, *, device: str | None = None, max_saes: int = 4) -> None:
        from compute.ml.lm import default_device

        self.device = device or default_device()
        self.max_saes = max_saes
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self._saes: OrderedDict[int, Any] = OrderedDict()
        self._models: dict[int, Any] = {}
        self._scratch = None

    def load(self, sae: SAE) -> tuple[Any, Any]:
        """The SAE's language model and SAE, loaded on first use and kept."""
        from compute.services.registry import job_scratch, language_model_load, sae_load

        if sae.pk in self._saes:
            self._saes.move_to_end(sae.pk)
        else:
            self._scratch = self._scratch or job_scratch(prefix="probe-")
            self._saes[sae.pk] = sae_load(sae=sae, device=self.device, scratch=self._scratch)
            if len(self._saes) > self.max_saes:
                self._saes.popitem(last=False)
        lm_id = sae.language_model_id
        if lm_id not in self._models:
            self._models[lm_id] = language_model_load(
                language_model=sae.language_model, device=self.device, hook_name=sae.hook_name
            )
        return self._models[lm_id], self._saes[sae.pk]

    def claim_next(self) -> ProbeRequest | None:
        """The oldest pending request still worth answering (older ones are expired), claimed atomically."""
        now = timezone.now()
        ProbeRequest.objects.filter(
            status=ProbeRequest.Status.PENDING, created_at__lt=now - timedelta(seconds=2 * settings.PROBE_WAIT_S)
        ).update(status=ProbeRequest.Status.EXPIRED, finished_at=now)
        for candidate in ProbeRequest.objects.filter(status=ProbeRequest.Status.PENDING).order_by("id")[:5]:
            claimed = ProbeRequest.objects.filter(pk=candidate.pk, status=ProbeRequest.Status.PENDING).update(
                status=ProbeRequest.Status.RUNNING, worker=self.name[:200]
            )
            if claimed:
                return ProbeRequest.objects.select_related("sae__language_model").get(pk=candidate.pk)
        return None

    def answer(self, probe: ProbeRequest) -> None:
        from compute.ml.decomposition import measure_texts

        started = time.perf_counter()
        try:
            loaded, lens_sae = self.load(probe.sae)
            [result] = measure_texts(
                loaded,
                lens_sae.encode,
                hook_name=probe.sae.hook_name,
                feature_index=probe.feature_index,
                texts=[probe.text],
                max_tokens=settings.PROBE_MAX_TOKENS,
                device=self.device,
            )
        except Exception as exc:  # any failure is the answer to this request; the worker goes on
            log.exception("probe %s failed", probe.pk)
            _record(probe.pk, status=ProbeRequest.Status.FAILED, error=f"The probe failed: {exc}"[:2000])
            return
        result["worker_s"] = round(time.perf_counter() - started, 4)
        _record(probe.pk, status=ProbeRequest.Status.DONE, result=result)

    def run_once(self) -> bool:
        """Answer one pending request; False when there was none."""
        probe = self.claim_next()
        if probe is None:
            return False
        self.answer(probe)
        return True

    def run(self, *, poll_s: float = 0.01, idle_poll_s: float = IDLE_POLL_S, stop_after_s: float | None = None) -> None:
        """Poll for requests until interrupted (or for `stop_after_s` seconds).

        Every `poll_s` while someone is probing; after IDLE_AFTER_S without a request, every `idle_poll_s`, so an
        idle worker does not take a share of a core from the jobs beside it (the first probe after a pause
        waits at most that long)."""
        end = time.monotonic() + stop_after_s if stop_after_s else None
        last_cleanup = 0.0
        last_answer = time.monotonic()
        while end is None or time.monotonic() < end:
            try:
                answered = self.run_once()
            except OperationalError as exc:  # a busy or briefly unreachable database: poll again, never die
                log.warning("probe worker: database unavailable (%s); retrying", exc)
                close_old_connections()
                answered = False
            if answered:
                last_answer = time.monotonic()
            else:
                idle = time.monotonic() - last_answer > IDLE_AFTER_S
                time.sleep(max(poll_s, idle_poll_s) if idle else poll_s)
            if time.monotonic() - last_cleanup > 60:
                close_old_connections()
                ProbeRequest.objects.filter(finished_at__lt=timezone.now() - KEEP_FINISHED).delete()
                last_cleanup = time.monotonic()

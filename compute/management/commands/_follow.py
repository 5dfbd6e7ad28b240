"""Run or follow a Job from the shell with a tqdm bar (tokens when the job reports them, else percent)."""

from __future__ import annotations

import threading
import time

from django.db import connections
from tqdm import tqdm

from compute.jobs import job_cancel, job_run
from compute.models import Job


def follow_job(*, job: Job, inline: bool, poll_s: float = 0.5) -> Job:
    """Run the job in this process (inline) or wait for a worker; Ctrl-C cancels it."""
    thread = None
    if inline:

        def work() -> None:
            try:
                job_run(job_id=job.pk, attempt=job.attempt, worker="shell")
            finally:
                connections.close_all()

        thread = threading.Thread(target=work, name=f"job-{job.pk}", daemon=True)
        thread.start()
    bar = tqdm(total=100, unit="%", dynamic_ncols=True, desc=f"job {job.pk}")
    try:
        while True:
            job.refresh_from_db()
            _update(bar, job)
            if job.is_finished and (thread is None or not thread.is_alive()):
                break
            time.sleep(poll_s)
    except KeyboardInterrupt:
        job_cancel(job_id=job.pk)
        bar.write(f"Cancelling job {job.pk}…")
        if thread is not None:
            thread.join()
        job.refresh_from_db()
    finally:
        bar.close()
    return job


def _update(bar: tqdm, job: Job) -> None:
    stats = job.stats or {}
    total, done = stats.get("tokens_total"), stats.get("tokens_done")
    if isinstance(total, int) and isinstance(done, int):
        if bar.unit != "tok":
            bar.unit, bar.total = "tok", total
        bar.n = done
    else:
        bar.n = round(100 * job.progress)
    postfix = job.message[:80]
    if job.device:
        postfix = f"{job.device} · {postfix}"
    bar.set_postfix_str(postfix, refresh=False)
    bar.refresh()

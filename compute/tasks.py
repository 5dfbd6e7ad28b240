"""Celery tasks: thin wrappers that take ids and call compute.jobs; and the worker's part in job liveness.

A stopping worker (SIGTERM, a deploy) asks its running jobs to checkpoint and go back to the queue: the
main process marks them in the database (its pool processes notice at their next heartbeat) and a pool
process that gets SIGTERM itself stops its job the same way. A command-line worker also looks every
JOB_LOST_AFTER_S for lost jobs of its queues that no message will bring back, and sends one.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time

from celery import shared_task
from celery.exceptions import Reject
from celery.signals import worker_init, worker_process_init, worker_ready, worker_shutting_down

from compute.jobs import (
    job_run,
    jobs_request_local_stop,
    jobs_request_stop,
    jobs_requeue_lost,
    worker_is_stopping,
    worker_starts,
)

log = logging.getLogger(__name__)


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, name="compute.run_job")
def run_job(self, job_id: int, attempt: int = 1) -> str:
    if worker_is_stopping():  # e.g. the message of a job this worker just handed back
        time.sleep(1)  # give the stopping consumer time to stop before the message is back in the queue
        raise Reject("this worker is stopping", requeue=True)
    return job_run(job_id=job_id, attempt=attempt, worker=self.request.hostname)


def _in_own_thread(target, *args) -> None:
    """Database work from a signal handler runs on a fresh thread (its own connection), never re-entrantly."""
    from django.db import connection

    def work() -> None:
        try:
            target(*args)
        except Exception:
            log.exception("%s failed", target.__name__)
        finally:
            connection.close()

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    thread.join(timeout=10)


@worker_shutting_down.connect
def _stop_running_jobs(sender: str, **_: object) -> None:
    jobs_request_local_stop()  # solo and thread pools run jobs in this process
    _in_own_thread(lambda: jobs_request_stop(worker=sender))


def _stop_on_sigterm(signum: int, frame: object) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends the process as usual
    if not jobs_request_local_stop():
        os.kill(os.getpid(), signal.SIGTERM)


@worker_process_init.connect
def _pool_process_stops_jobs_on_sigterm(**_: object) -> None:
    signal.signal(signal.SIGTERM, _stop_on_sigterm)


_SWEEP = threading.Event()


@worker_init.connect
def _worker_starts(**_: object) -> None:
    worker_starts()


@worker_init.connect
def _command_line_worker(**_: object) -> None:
    _SWEEP.set()  # not for workers embedded in tests, which share the test's database
    artifact_storage_must_take_writes()


def artifact_storage_must_take_writes() -> None:
    """A worker whose artifact storage is missing or read-only exits at start-up with the reason (SystemExit
    passes through Celery's signal dispatch, which logs and swallows ordinary exceptions)."""
    from config.storage import artifact_storage_problem

    problem = artifact_storage_problem()
    if problem:
        log.critical("%s", problem)
        raise SystemExit(f"Worker not started. {problem}")


@worker_ready.connect
def _start_lost_job_sweeper(sender, **_: object) -> None:
    from django.conf import settings
    from django.db import close_old_connections, connection

    if not _SWEEP.is_set():
        return
    queues = sorted(sender.app.amqp.queues.consume_from)

    def sweep() -> None:
        while True:
            try:
                close_old_connections()
                for job_id in jobs_requeue_lost(queues=queues):
                    log.warning("job %s: lost, and no message would bring it back; sent one", job_id)
            except Exception:
                log.exception("looking for lost jobs failed")
                connection.close()
            threading.Event().wait(settings.JOB_LOST_AFTER_S)

    threading.Thread(target=sweep, name="lost-job-sweeper", daemon=True).start()

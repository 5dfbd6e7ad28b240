"""The worker self-check: proves the broker, a worker and progress reporting work end to end."""

from __future__ import annotations

import os
import socket
import time

from compute.jobs import JobContext, JobInputError


def selfcheck(ctx: JobContext) -> dict:
    """Report progress in `steps` steps `delay_s` apart; fail on purpose when `fail` is set."""
    steps = int(ctx.params.get("steps", 5))
    delay_s = float(ctx.params.get("delay_s", 0.2))
    if steps < 1 or delay_s < 0:
        raise JobInputError("steps must be at least 1 and delay_s not negative.")
    for step in range(1, steps + 1):
        time.sleep(delay_s)
        ctx.progress(step / steps, f"step {step} of {steps}", step=step)
        if ctx.params.get("fail") and step == steps // 2 + 1:
            raise RuntimeError(ctx.params.get("fail_message", "self-check failure requested"))
    ctx.check_cancelled()
    return {"pid": os.getpid(), "host": socket.gethostname()}

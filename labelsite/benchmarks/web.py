"""`python manage.py bench web`: a load test of the labelling pages over loopback.

A throwaway database (a temporary SQLite file, or a fresh PostgreSQL database on the configured server
when DATABASE_URL points at PostgreSQL) is migrated and seeded with an open campaign of 10,000 items and
50,000 judgments. A real server (gunicorn, gthread workers) serves it on 127.0.0.1, and N simulated
labellers, each a thread with its own keep-alive connection and session, repeat the labelling loop:
POST next -> GET the item page -> POST the judgment. Client-side latencies over loopback are reported.

Two loads run on the same server: unpaced (every labeller fires its next request as soon as the last one
answers: a stress figure dominated by queueing), and a capacity sweep in which each labeller pauses
`pace_s` seconds between actions (people take tens of seconds per item) and the number of labellers doubles
until the p95 latency passes `capacity_p95_ms`; `capacity_labellers` is the most labellers served within it.
The simulated labellers run on the same machine as the server and take CPU from it.
"""

from __future__ import annotations

import contextlib
import http.client
import itertools
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote, urlencode, urlsplit

DEFAULTS: dict[str, object] = {
    "labellers": 20,
    "items": 10_000,
    "judgments": 50_000,
    "items_per_labeller": 15,
    "workers": 2,
    "threads": 4,
    "panel_examples": 15,  # 10 strongest + 5 weaker: a full-size blind panel
    "serial_pages": 100,
    "pace_s": 5.0,
    "capacity_start": 1,
    "capacity_max": 640,
    "capacity_step_s": 45.0,
    "capacity_p95_ms": 50.0,
}
ROOT = Path(__file__).resolve().parents[2]


def _percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in [0, 100])."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


@contextlib.contextmanager
def _throwaway_database() -> Iterator[str]:
    from django.conf import settings

    default = settings.DATABASES["default"]
    if "postgresql" in default["ENGINE"]:
        import psycopg
        from psycopg import sql

        name = f"labelsite_bench_{os.getpid()}_{secrets.token_hex(3)}"
        conninfo = {k: v for k, v in {"host": default.get("HOST"), "port": default.get("PORT"),
                                       "user": default.get("USER"), "password": default.get("PASSWORD")}.items() if v}  # fmt: skip
        with psycopg.connect(dbname="postgres", autocommit=True, **conninfo) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        user = quote(default.get("USER") or "") + (f":{quote(default['PASSWORD'])}" if default.get("PASSWORD") else "")
        url = f"postgres://{user}@{default.get('HOST') or 'localhost'}:{default.get('PORT') or 5432}/{name}"
        try:
            yield url
        finally:
            with psycopg.connect(dbname="postgres", autocommit=True, **conninfo) as conn:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    else:
        with tempfile.TemporaryDirectory(prefix="labelsite-bench-") as folder:
            yield f"sqlite:///{folder}/bench.sqlite3"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_until_up(port: int, process: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"The server exited with status {process.returncode} before answering.")
        with contextlib.suppress(OSError):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"The server did not answer on port {port} within {timeout:.0f} s.")


class _Labeller(threading.Thread):
    """One simulated labeller: its own connection, session cookie and CSRF token."""

    def __init__(self, *, port: int, session_key: str, campaign_id: int, items: int, start: threading.Barrier) -> None:
        super().__init__(daemon=True)
        self.port, self.campaign_id, self.items, self.start_barrier = port, campaign_id, items, start
        csrf = secrets.token_hex(16)  # 32 characters: an unmasked CSRF secret, sent as cookie and header
        self.headers = {"Cookie": f"sessionid={session_key}; csrftoken={csrf}", "X-CSRFToken": csrf}
        self.latencies: dict[str, list[float]] = {"next": [], "page": [], "submit": []}
        self.errors: list[str] = []
        self.conn: http.client.HTTPConnection | None = None

    def _request(self, kind: str, method: str, path: str, body: dict | None = None) -> http.client.HTTPResponse:
        headers = dict(self.headers)
        data = None
        if body is not None:
            data = urlencode(body)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        for attempt in range(2):  # a keep-alive connection the server closed is reopened once
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            started = time.perf_counter()
            try:
                self.conn.request(method, path, body=data, headers=headers)
                response = self.conn.getresponse()
                response.read()
            except (http.client.HTTPException, OSError):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise
                continue
            self.latencies[kind].append((time.perf_counter() - started) * 1000)
            return response
        raise AssertionError("unreachable")

    def serial_pages(self, n: int) -> list[float]:
        """GET the labelling page n times (the held item, then the next ones as they are judged)."""
        r = self._request("next", "POST", f"/label/c/{self.campaign_id}/next/")
        item = urlsplit(r.getheader("Location", "")).path
        for i in range(n):
            if self._request("page", "GET", item).status != 200:
                self.errors.append("serial page failed")
            if i % 10 == 9:  # move on to another item now and then
                body = {"domain_score": 1, "general_score": 1, "time_spent_ms": 1}
                r = self._request("submit", "POST", item, body)
                item = urlsplit(r.getheader("Location", "")).path or item
        return self.latencies["page"]

    def run(self) -> None:
        self.start_barrier.wait()
        self.label_items(range(self.items))

    def label_items(self, numbers, pause: Callable[[], bool] = lambda: True) -> None:
        """Label one item per number; `pause()` runs between actions and returns False to stop."""
        try:
            for n in numbers:
                r = self._request("next", "POST", f"/label/c/{self.campaign_id}/next/")
                location = r.getheader("Location", "")
                if r.status != 302 or "/label/i/" not in location:
                    self.errors.append(f"next: {r.status} {location}")
                    return
                item = urlsplit(location).path
                if not pause():
                    return
                r = self._request("page", "GET", item)
                if r.status != 200:
                    self.errors.append(f"page: {r.status}")
                    continue
                if not pause():
                    return
                answers = {
                    "domain_explanation": f"load {n}",
                    "domain_score": n % 4,
                    "general_explanation": "generic",
                    "general_score": (n + 1) % 4,
                    "time_spent_ms": 1000 + n,
                }
                r = self._request("submit", "POST", item, answers)
                if r.status != 302:
                    self.errors.append(f"submit: {r.status}")
                if not pause():
                    return
        except (http.client.HTTPException, OSError) as exc:
            self.errors.append(f"connection: {exc}")
        finally:
            if self.conn is not None:
                self.conn.close()


class _PacedLabeller(_Labeller):
    """A labeller who pauses `pace` seconds between actions until `deadline` (time.monotonic())."""

    def __init__(self, *, pace: float, deadline: float, offset: float, **kwargs) -> None:
        super().__init__(items=0, **kwargs)
        self.pace, self.deadline, self.offset = pace, deadline, offset

    def _pause(self) -> bool:
        remaining = self.deadline - time.monotonic()
        time.sleep(max(0.0, min(self.pace, remaining)))
        return time.monotonic() < self.deadline

    def run(self) -> None:
        self.start_barrier.wait()
        time.sleep(self.offset)  # labellers do not all start at the same instant
        self.label_items(itertools.count(), self._pause)


def _paced_load(*, port: int, campaign_id: int, session_keys: list[str], pace: float, duration: float) -> dict:
    barrier = threading.Barrier(len(session_keys))
    deadline = time.monotonic() + duration
    labellers = [
        _PacedLabeller(port=port, session_key=key, campaign_id=campaign_id, start=barrier, pace=pace,
                       deadline=deadline, offset=pace * i / len(session_keys))
        for i, key in enumerate(session_keys)
    ]  # fmt: skip
    for t in labellers:
        t.start()
    for t in labellers:
        t.join(timeout=duration + 120)
    by_kind = {kind: [ms for t in labellers for ms in t.latencies[kind]] for kind in ("next", "page", "submit")}
    latencies = [ms for kind in by_kind.values() for ms in kind]
    errors = [e for t in labellers for e in t.errors]
    return {
        "labellers": len(session_keys),
        "requests": len(latencies),
        "p50_ms": round(statistics.median(latencies), 1) if latencies else None,
        "p95_ms": round(_percentile(latencies, 95), 1) if latencies else None,
        "by_kind_p95_ms": {kind: round(_percentile(v, 95), 1) for kind, v in by_kind.items() if v},
        "errors": len(errors),
    }


def _capacity_sweep(*, port: int, campaign_id: int, session_keys: list[str], params: dict) -> dict:
    """Double the paced labellers until p95 passes the bound (or errors appear, or keys run out)."""
    bound = float(params["capacity_p95_ms"])
    steps, best = [], 0
    n = int(params["capacity_start"])
    while n <= min(int(params["capacity_max"]), len(session_keys)):
        step = _paced_load(port=port, campaign_id=campaign_id, session_keys=session_keys[:n],
                           pace=float(params["pace_s"]), duration=float(params["capacity_step_s"]))  # fmt: skip
        steps.append(step)
        if step["errors"] or step["p95_ms"] is None or step["p95_ms"] > bound:
            break
        best = n
        n *= 2
    return {"capacity_labellers": best, "steps": steps}


def run(**overrides) -> dict:
    params = {**DEFAULTS, **overrides}
    unknown = set(params) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"Unknown parameters {sorted(unknown)}; known: {sorted(DEFAULTS)}")
    n_labellers, per_labeller = int(params["labellers"]), int(params["items_per_labeller"])
    with _throwaway_database() as database_url:
        env = {**os.environ, "DATABASE_URL": database_url, "DEBUG": "false", "LOG_LEVEL": "WARNING"}
        started = time.perf_counter()
        subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True)
        seeded = subprocess.run(
            [sys.executable, "-m", "labelsite.benchmarks.web", "seed", json.dumps(params)],
            cwd=ROOT, env=env, check=True, capture_output=True, text=True,
        )  # fmt: skip
        info = json.loads(seeded.stdout.strip().splitlines()[-1])
        setup_s = time.perf_counter() - started
        port = _free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "config.wsgi:application", "--bind", f"127.0.0.1:{port}",
             "--worker-class", "gthread", "--workers", str(params["workers"]), "--threads", str(params["threads"]),
             "--log-level", "warning"],
            cwd=ROOT, env=env,
        )  # fmt: skip
        try:
            _wait_until_up(port, server)
            barrier = threading.Barrier(n_labellers)
            labellers = [
                _Labeller(
                    port=port, session_key=key, campaign_id=info["campaign_id"], items=per_labeller, start=barrier
                )
                for key in info["session_keys"][:n_labellers]
            ]
            load_started = time.perf_counter()
            for t in labellers:
                t.start()
            for t in labellers:
                t.join()
            wall = time.perf_counter() - load_started
            # Server time without queueing: one labeller alone opens item pages one after another.
            solo = _Labeller(port=port, session_key=info["session_keys"][n_labellers], campaign_id=info["campaign_id"],
                             items=0, start=threading.Barrier(1))  # fmt: skip
            serial_ms = solo.serial_pages(int(params["serial_pages"]))
            # Fresh labellers (who judged nothing yet) for the paced sweep.
            capacity = _capacity_sweep(port=port, campaign_id=info["campaign_id"],
                                       session_keys=info["session_keys"][n_labellers + 1 :], params=params)  # fmt: skip
        finally:
            server.terminate()
            server.wait(timeout=30)
        checked = subprocess.run(
            [sys.executable, "-m", "labelsite.benchmarks.web", "check", str(info["campaign_id"])],
            cwd=ROOT, env=env, check=True, capture_output=True, text=True,
        )  # fmt: skip
        after = json.loads(checked.stdout.strip().splitlines()[-1])
    all_ms = [ms for t in labellers for kind in t.latencies.values() for ms in kind]
    page_ms = [ms for t in labellers for ms in t.latencies["page"]]
    errors = [e for t in [*labellers, solo] for e in t.errors]
    return {
        "benchmark": "web",
        "database": "postgresql" if database_url.startswith("postgres") else "sqlite",
        "server": f"gunicorn gthread {params['workers']}x{params['threads']}",
        "labellers": n_labellers,
        "items": int(params["items"]),
        "judgments_seeded": int(params["judgments"]),
        "requests": len(all_ms),
        "p50_ms": round(statistics.median(all_ms), 1) if all_ms else None,
        "p95_ms": round(_percentile(all_ms, 95), 1) if all_ms else None,
        "requests_per_s": round(len(all_ms) / wall, 1) if wall else None,
        "errors": len(errors),
        "error_samples": errors[:5],
        "labelling_page": {
            "requests": len(page_ms),
            "p50_ms": round(statistics.median(page_ms), 1) if page_ms else None,
            "p95_ms": round(_percentile(page_ms, 95), 1) if page_ms else None,
        },
        "labelling_page_one_labeller": {
            "requests": len(serial_ms),
            "p50_ms": round(statistics.median(serial_ms), 1) if serial_ms else None,
            "p95_ms": round(_percentile(serial_ms, 95), 1) if serial_ms else None,
        },
        "by_kind_p95_ms": {
            kind: round(_percentile(v, 95), 1)
            for kind in ("next", "page", "submit")
            if (v := [ms for t in labellers for ms in t.latencies[kind]])
        },
        "capacity_labellers": capacity["capacity_labellers"],
        "capacity": {
            "pace_s": float(params["pace_s"]),
            "p95_bound_ms": float(params["capacity_p95_ms"]),
            "step_s": float(params["capacity_step_s"]),
            "steps": capacity["steps"],
        },
        "judgments_after": after["judgments"],
        "invariants_hold": after["ok"],
        "load_s": round(wall, 2),
        "setup_s": round(setup_s, 1),
    }


def _seed(params: dict) -> dict:
    from django.contrib.auth import HASH_SESSION_KEY, SESSION_KEY, get_user_model
    from django.contrib.sessions.backends.db import SessionStore
    from django.db import connection

    from labelsite.benchmarks.seed import seed_labelling_load

    info = seed_labelling_load(
        items=int(params["items"]),
        judgments=int(params["judgments"]),
        # the unpaced load, the one-labeller serial pages, then the paced capacity sweep
        load_labellers=int(params["labellers"]) + 1 + int(params["capacity_max"]),
        panel_examples=int(params["panel_examples"]),
    )
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:  # a live database has planner statistics; a fresh seed has none yet
            cursor.execute("ANALYZE")
    keys = []
    for user in get_user_model().objects.filter(pk__in=info["load_labeller_ids"]).order_by("pk"):
        store = SessionStore()
        store[SESSION_KEY] = str(user.pk)
        store["_auth_user_backend"] = "django.contrib.auth.backends.ModelBackend"
        store[HASH_SESSION_KEY] = user.get_session_auth_hash()
        store.create()
        keys.append(store.session_key)
    return {"campaign_id": info["campaign_id"], "session_keys": keys}


def _check(campaign_id: int) -> dict:
    """Brute-force invariants after the load: no item over k, no labeller twice, counters match rows."""
    from collections import Counter

    from labelsite.models import Item, Judgment

    rows = list(Judgment.objects.filter(campaign_id=campaign_id).values_list("item_id", "labeller_id"))
    per_item = Counter(i for i, _ in rows)
    ok = len(set(rows)) == len(rows)
    for item_id, overlap, count in Item.objects.filter(campaign_id=campaign_id).values_list(
        "pk", "overlap", "judgment_count"
    ):
        ok = ok and per_item.get(item_id, 0) == count <= overlap
    return {"judgments": len(rows), "ok": ok}


if __name__ == "__main__":
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    django.setup()
    command, argument = sys.argv[1], sys.argv[2]
    result = _seed(json.loads(argument)) if command == "seed" else _check(int(argument))
    print(json.dumps(result))

"""The embedded broker never hands a consumer a half-written message."""

from __future__ import annotations

import builtins
import threading
import time
from queue import Empty

import pytest
from kombu import Connection

from config.broker import FilesystemTransport


def connection(folder, transport=FilesystemTransport) -> Connection:
    options = {key: str(folder) for key in ("data_folder_in", "data_folder_out", "processed_folder", "control_folder")}
    return Connection("filesystem://", transport=transport, transport_options=options)


@pytest.fixture
def stalled_writes(monkeypatch):
    """Message files are created at once but written only when the returned event is set."""
    go = threading.Event()
    real_open = builtins.open

    class Stalled:
        def __init__(self, f):
            self.f = f

        def write(self, data):
            go.wait(10)
            return self.f.write(data)

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    def fake_open(file, mode="r", *args, **kwargs):
        f = real_open(file, mode, *args, **kwargs)
        return Stalled(f) if "w" in mode and str(file).endswith((".msg", ".msg.part")) else f

    monkeypatch.setattr(builtins, "open", fake_open)
    return go


def put_in_background(folder, transport, queue: str) -> threading.Thread:
    """Start putting one message and return once its file exists (its write is stalled)."""

    def produce():
        with connection(folder, transport) as conn:
            conn.SimpleQueue(queue).put({"body": "x" * 1000})

    with connection(folder, transport) as conn:
        conn.SimpleQueue(queue)  # declare the queue before anyone publishes to it
    thread = threading.Thread(target=produce)
    thread.start()
    deadline = time.monotonic() + 10
    while not any(p.name.endswith((".msg", ".msg.part")) for p in folder.iterdir()):
        assert time.monotonic() < deadline, f"the producer never created its message file: {list(folder.iterdir())}"
        time.sleep(0.01)
    return thread


def test_a_message_being_written_is_invisible_then_arrives_whole(tmp_path, stalled_writes):
    producer = put_in_background(tmp_path, FilesystemTransport, "ours")
    with connection(tmp_path) as conn:
        queue = conn.SimpleQueue("ours")
        with pytest.raises(Empty):
            queue.get(timeout=0.5)
        stalled_writes.set()
        producer.join(10)
        message = queue.get(timeout=5)
        assert message.payload == {"body": "x" * 1000}
        message.ack()
    assert not list(tmp_path.glob("*.part"))


def test_kombus_own_filesystem_transport_shows_the_half_written_file(tmp_path, stalled_writes):
    """The control: the stock transport hands out the empty file, which is why we replace its _put."""
    from kombu.transport.filesystem import Transport as StockTransport

    # kombu keeps declared exchanges in class-level state: a queue name of its own avoids the other test's.
    producer = put_in_background(tmp_path, StockTransport, "stock")
    try:
        with connection(tmp_path, StockTransport) as conn, pytest.raises(ValueError):  # JSONDecodeError
            conn.SimpleQueue("stock").get(timeout=2)
    finally:
        stalled_writes.set()
        producer.join(10)


def test_settings_use_it_for_the_filesystem_broker(settings):
    from config.celery import app

    if settings.CELERY_BROKER_URL.startswith("filesystem://"):
        with app.connection_for_write() as conn:
            assert isinstance(conn.transport, FilesystemTransport)

"""sink.py: the bounded queue, the retries with backoff and what is counted and logged, with a fake receiver.

No network: ``post`` and ``read_url`` are stand-ins, and the backoff waits no time.
"""

from __future__ import annotations

import http.server
import logging
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from servicelink.alerts import Alert
from servicelink.sink import AlertSink, SendFailed, post_json

URL = "https://hooks.example/services/T000/B000/XXXXTOKEN"


def alert(n: int) -> Alert:
    return Alert("ValueChanged", "gallery", f"sl-{n}", f"change {n}", False, "2026-12-07T20:00:00Z")


class Receiver:
    """Stands in for the receiver: fails the first ``failures`` posts, records the bodies of the others."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.bodies: list[bytes] = []
        self.tries = 0

    def post(self, url: str, body: bytes) -> None:
        assert url == URL
        self.tries += 1
        if self.tries <= self.failures:
            raise SendFailed("HTTP 503")
        self.bodies.append(body)


def sink(receiver: Receiver, **kwargs: object) -> tuple[AlertSink, list[str], list[float]]:
    results: list[str] = []
    waits: list[float] = []

    def delay(attempt: int) -> float:
        waits.append(2.0 ** (attempt - 1))
        return 0.0

    made = AlertSink(
        read_url=lambda: URL,
        render=lambda a: a.name.encode(),
        record=results.append,
        post=receiver.post,
        delay=delay,
        **kwargs,  # type: ignore[arg-type]  # the fields a test sets
    )
    return made, results, waits


def test_a_failed_send_is_retried_with_backoff_then_counted_as_sent() -> None:
    receiver = Receiver(failures=2)
    made, results, waits = sink(receiver)
    assert made.send(alert(1))
    assert receiver.bodies == [b"sl-1"]
    assert results == ["retried", "retried", "sent"]
    assert waits == [1.0, 2.0]


def test_a_send_failing_every_try_is_given_up_counted_and_logged_without_the_url(
    caplog: pytest.LogCaptureFixture,
) -> None:
    receiver = Receiver(failures=100)
    made, results, _ = sink(receiver, attempts=3)
    with caplog.at_level(logging.WARNING, logger="servicelink.sink"):
        assert not made.send(alert(1))
    assert results == ["retried", "retried", "failed"]
    assert receiver.tries == 3
    assert [r.levelno for r in caplog.records] == [logging.WARNING] * 3
    assert (
        caplog.records[-1].getMessage()
        == "alert ValueChanged of gallery/sl-1 not sent (try 3 of 3): HTTP 503; given up"
    )
    assert "hooks.example" not in caplog.text
    assert "TOKEN" not in caplog.text


def test_the_url_is_read_again_after_a_failure() -> None:
    reads: list[int] = []
    receiver = Receiver(failures=1)

    def read_url() -> str:
        reads.append(1)
        return URL

    made = AlertSink(read_url=read_url, render=lambda a: b"{}", post=receiver.post, delay=lambda n: 0.0)
    assert made.send(alert(1))
    assert made.send(alert(2))
    assert len(reads) == 2  # the first try, and the one after it failed; the second alert reuses it


def test_a_full_queue_drops_the_oldest_and_counts_it(caplog: pytest.LogCaptureFixture) -> None:
    made, results, _ = sink(Receiver(), size=3)
    with caplog.at_level(logging.WARNING, logger="servicelink.sink"):
        for n in range(5):
            made.offer(alert(n))
    assert results == ["dropped", "dropped"]
    assert len(caplog.records) == 1, "one line while the queue stays full, not one per alert"
    assert "alert queue full (3): dropping the oldest" in caplog.text
    assert made.pending() == 3
    assert [made._take() for _ in range(3)] == [alert(2), alert(3), alert(4)]


def test_offer_never_waits_for_a_receiver_that_hangs() -> None:
    release = threading.Event()
    receiver_calls: list[bytes] = []

    def hang(url: str, body: bytes) -> None:
        receiver_calls.append(body)
        release.wait(10)

    made = AlertSink(read_url=lambda: URL, render=lambda a: a.name.encode(), post=hang, size=10)
    made.start()
    try:
        made.offer(alert(0))
        deadline = time.monotonic() + 5
        while not receiver_calls and time.monotonic() < deadline:
            time.sleep(0.01)
        assert receiver_calls == [b"sl-0"]  # the thread is held by the receiver from now on
        started = time.perf_counter()
        for n in range(1, 51):
            made.offer(alert(n))
        assert time.perf_counter() - started < 0.1
        assert made.pending() == 10
        assert made._take() == alert(41)  # the newest ten are kept
    finally:
        release.set()
        made.stop()


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[bytes]]]:
    """A receiver on loopback that answers 204 and keeps each body."""
    bodies: list[bytes] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            return None

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", bodies
    finally:
        server.shutdown()
        server.server_close()


def test_post_json_sends_the_body_to_a_receiver(receiver: tuple[str, list[bytes]]) -> None:
    url, bodies = receiver
    post_json(url, b'{"a": 1}')
    assert bodies == [b'{"a": 1}']


def test_post_json_to_a_closed_port_fails_without_naming_the_url() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(SendFailed) as failed:
        post_json(f"http://127.0.0.1:{port}/T000/SECRETTOKEN", b"{}")
    assert "SECRETTOKEN" not in str(failed.value)
    assert str(port) not in str(failed.value)
    with pytest.raises(SendFailed, match="not http"):
        post_json("file:///etc/passwd", b"{}")

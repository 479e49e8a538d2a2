"""How the benchmark lives through failures: which requests it sends again, and what a failed run keeps."""

from __future__ import annotations

import socketserver
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import urllib3
from bench.compare import run_phases
from bench.run import retries
from urllib3.exceptions import ProtocolError


class _Answer(socketserver.BaseRequestHandler):
    server: _DropsFirstConnection

    def handle(self) -> None:
        self.request.recv(1 << 16)
        self.server.requests += 1
        if self.server.requests > 1:
            self.request.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")


class _DropsFirstConnection(socketserver.TCPServer):
    """A loopback HTTP server: reads each request, closes the first connection without answering, then answers 200."""

    requests = 0

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Answer)

    def send(self, method: str) -> urllib3.BaseHTTPResponse:
        """``method`` through a client with the benchmark's ``retries()``."""
        host, port = self.server_address[:2]
        return urllib3.PoolManager(retries=retries()).request(method, f"http://{host!s}:{port}/api/v1/services")


@pytest.fixture
def api_server() -> Iterator[_DropsFirstConnection]:
    with _DropsFirstConnection() as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        yield server
        server.shutdown()


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
def test_an_idempotent_request_whose_connection_dropped_is_sent_again(
    api_server: _DropsFirstConnection, method: str
) -> None:
    assert api_server.send(method).status == 200
    assert api_server.requests == 2


def test_a_post_whose_connection_dropped_is_not_sent_again(api_server: _DropsFirstConnection) -> None:
    with pytest.raises(ProtocolError):
        api_server.send("POST")
    assert api_server.requests == 1


def test_a_failed_phase_ends_the_run_and_the_figures_before_it_are_saved() -> None:
    out: dict[str, Any] = {"size": {"services": 250}, "sides": {"servicelink": {}}}
    saved: list[dict[str, Any]] = []
    ran: list[str] = []

    def burst() -> None:
        out["sides"]["servicelink"]["burst_5"] = {"rolled": 1}
        raise ConnectionResetError("the API server closed the connection")

    phases = [
        ("cold start", lambda: out["sides"]["servicelink"].update(cold_start_seconds=2.0)),
        ("bursts", burst),
        ("idle", lambda: ran.append("idle")),
    ]
    result = run_phases(out, phases, lambda figures: saved.append(dict(figures)))

    assert result is out
    assert out == {
        "size": {"services": 250},
        "sides": {"servicelink": {"cold_start_seconds": 2.0, "burst_5": {"rolled": 1}}},
        "error": {"phase": "bursts", "message": "ConnectionResetError: the API server closed the connection"},
    }
    assert ran == []
    assert [set(figures) for figures in saved] == [{"size", "sides"}, {"size", "sides", "error"}]


def test_a_run_without_failure_has_no_error() -> None:
    out: dict[str, Any] = {"sides": {}}
    saved: list[dict[str, Any]] = []
    run_phases(out, [("create", lambda: out.update(create_seconds=1.0))], saved.append)
    assert out == {"sides": {}, "create_seconds": 1.0}
    assert saved == [out]

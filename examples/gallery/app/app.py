"""The image gallery's services, played by one stdlib-only program: ``python app.py ROLE``.

Each HTTP role answers ``GET /`` with the chain of hops the request went through, so one
call through the gateway shows the whole flow of the gallery:
gateway -> app-service -> mongodb, and gateway -> auth-service on ``/auth``.

- ``gateway``: ``/api/...`` goes to ``$APP_SERVICE_URL``, ``/auth`` to ``$AUTH_SERVICE_URL``.
- ``app``: opens TCP connections to ``$MONGODB_HOST:27017`` (or the host and port of ``$MONGODB_URL``, whose
  user it names and whose password it shows as a digest, never as it is) and to ``$REDIS_URL``.
- ``auth``: answers on its own.
- ``worker``: polls ``$APP_SERVICE_URL`` every 2 s; ``/`` shows the last poll.
- ``job``: the worker's poll, once, as a Job runs it: prints one JSON line with the URL and the
  hops (or the error) and exits 0 when the call succeeded.
- ``tcp``: a stub database that greets each connection (mongodb, redis).
- ``probe``: calls each URL in ``$TARGETS`` every ``$INTERVAL`` seconds (0.1) and prints one
  JSON line per call: when, which URL, how long it took, whether it succeeded, and the answer.

``/healthz`` is liveness; ``/ready`` is readiness and checks the role's own upstreams, so a
pod whose URL is wrong never becomes Ready. ``/env`` shows the URLs the pod started with.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import socket
import socketserver
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

NAME = os.environ.get("SERVICE_NAME") or socket.gethostname().rsplit("-", 2)[0]
TIMEOUT = 2.0
_last_poll: dict[str, object] = {"hops": [], "error": "not polled yet"}


def _get(url: str) -> list[str]:
    with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
        return list(json.load(response)["hops"])


def _connect(host: str, port: int) -> str:
    with socket.create_connection((host, port), timeout=TIMEOUT) as conn:
        return conn.recv(64).decode().strip() or f"{host}:{port}"


def _database() -> str:
    """Connect to the database: ``$MONGODB_URL`` when set, naming its user and a digest of its password."""
    url = os.environ.get("MONGODB_URL")
    if not url:
        return _connect(os.environ["MONGODB_HOST"], 27017)
    parts = urllib.parse.urlsplit(url)
    password = urllib.parse.unquote(parts.password or "")
    digest = hashlib.sha256(password.encode()).hexdigest()[:12]
    user = urllib.parse.unquote(parts.username or "")
    return f"{_connect(parts.hostname or '', parts.port or 27017)} as {user} (password sha256 {digest})"


def _without_password(url: str) -> str:
    """``url`` with the password of its userinfo, if any, replaced by ``***``."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


def _via(role: str, path: str) -> str | None:
    """The URL the gateway calls for ``path``: ``/auth`` and ``/api/...`` go upstream."""
    if role != "gateway":
        return None
    if path.startswith("/auth"):
        return os.environ["AUTH_SERVICE_URL"]
    if path.startswith("/api"):
        return os.environ["APP_SERVICE_URL"].rstrip("/") + path.removeprefix("/api")
    return None


def _upstreams(role: str, path: str) -> list[str]:
    """Call this role's upstreams for ``path`` and return their hops; raise when one fails."""
    if role == "gateway":
        url = _via(role, path)
        return _get(url) if url else []
    if role == "app":
        redis = urllib.parse.urlsplit(os.environ["REDIS_URL"])
        return [_database(), _connect(redis.hostname or "", redis.port or 6379)]
    if role == "worker":
        return [str(h) for h in _last_poll["hops"]] if not _last_poll.get("error") else []
    return []


def _ready(role: str) -> None:
    """Raise unless every upstream of ``role`` answers."""
    if role == "gateway":
        _upstreams(role, "/auth")
        _upstreams(role, "/api/")
    elif role == "app":
        _upstreams(role, "/")
    elif role == "worker" and _last_poll.get("error"):
        raise RuntimeError(str(_last_poll["error"]))


def _serve_http(role: str, port: int) -> None:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            try:
                if self.path == "/healthz":
                    body: dict[str, object] = {"ok": True}
                elif self.path == "/ready":
                    _ready(role)
                    body = {"ready": True}
                elif self.path == "/env":
                    body = {
                        k: _without_password(v) for k, v in sorted(os.environ.items()) if k.endswith(("_URL", "_HOST"))
                    }
                else:
                    body = {"hops": [NAME, *_upstreams(role, self.path)]}
                    via = _via(role, self.path)
                    if via:
                        body["via"] = via
                status = 200
            except Exception as error:  # an upstream that fails is the answer, not a crash
                body, status = {"hops": [NAME], "error": f"{type(error).__name__}: {error}"}, 502
            data = json.dumps(body).encode() + b"\n"
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            if self.path not in ("/healthz", "/ready"):
                sys.stderr.write(f"{NAME}: {format % args}\n")

    ThreadingHTTPServer(("0.0.0.0", port), Handler).serve_forever()


def _serve_tcp(port: int) -> None:
    class Greeter(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            self.request.sendall(f"{NAME}\n".encode())

    socketserver.ThreadingTCPServer.allow_reuse_address = True
    socketserver.ThreadingTCPServer(("0.0.0.0", port), Greeter).serve_forever()


def _probe_forever() -> None:
    targets, interval = os.environ["TARGETS"].split(), float(os.environ.get("INTERVAL", "0.1"))
    while True:
        started = time.time()
        for url in targets:
            began = time.time()
            line: dict[str, object] = {"t": round(began, 3), "url": url}
            try:
                with urllib.request.urlopen(url, timeout=1) as response:
                    line.update(ok=True, answer=json.load(response))
            except urllib.error.HTTPError as error:  # a gateway's answer says why its upstream failed
                line.update(ok=False, error=f"HTTPError: {error}")
                with contextlib.suppress(ValueError, OSError):
                    line["answer"] = json.loads(error.read())
            except Exception as error:
                line.update(ok=False, error=f"{type(error).__name__}: {error}")
            line["s"] = round(time.time() - began, 3)
            print(json.dumps(line), flush=True)
        time.sleep(max(0.0, interval - (time.time() - started)))


def _poll_forever() -> None:
    while True:
        try:
            _last_poll.update(hops=_get(os.environ["APP_SERVICE_URL"]), error="")
        except Exception as error:
            _last_poll.update(hops=[], error=f"{type(error).__name__}: {error}")
        time.sleep(2)


def _poll_once() -> int:
    url = os.environ["APP_SERVICE_URL"]
    try:
        print(json.dumps({"url": url, "hops": [NAME, *_get(url)]}), flush=True)
        return 0
    except Exception as error:
        print(json.dumps({"url": url, "error": f"{type(error).__name__}: {error}"}), flush=True)
        return 1


def main() -> None:
    role, port = sys.argv[1], int(os.environ.get("PORT", "8080"))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # PID 1 gets no default SIGTERM handler
    if role == "job":
        sys.exit(_poll_once())
    if role == "tcp":
        _serve_tcp(port)
        return
    if role == "probe":
        _probe_forever()
        return
    if role == "worker":
        threading.Thread(target=_poll_forever, daemon=True).start()
    _serve_http(role, port)


if __name__ == "__main__":
    main()

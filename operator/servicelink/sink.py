"""The alert sink: a bounded queue of alerts, drained by a thread of its own that POSTs them (does I/O).

A reconcile only ``offer``s an alert: an append under a lock, never a wait. The thread reads the receiver's
URL from a Secret, POSTs, and retries a failed send with backoff (``alerts.retry_delay``); a receiver that is
down or slow only holds this thread. When the queue is full the oldest alert goes, and is counted. The URL is
a credential (Slack's carries its token): nothing here logs it, nor an error that could quote it.
"""

from __future__ import annotations

import collections
import http.client
import logging
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field

from servicelink.alerts import SEND_ATTEMPTS, Alert, retry_delay

log = logging.getLogger(__name__)
QUEUE_SIZE = 1000  # alerts waiting at most; a flapping cluster makes many, and a receiver down keeps them all
SEND_TIMEOUT_SECONDS = 10.0  # a receiver that has not answered by then counts as failed, and is tried again


class SendFailed(Exception):
    """A POST failed; the message says how without the URL."""


def post_json(url: str, body: bytes) -> None:
    """POST ``body`` as JSON to ``url``; raise ``SendFailed`` on an answer outside 2xx or no answer at all."""
    if not url.startswith(("http://", "https://")):
        raise SendFailed("the URL is not http:// or https://")
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=SEND_TIMEOUT_SECONDS) as response:
            response.read()
    except urllib.error.HTTPError as error:
        raise SendFailed(f"HTTP {error.code}") from None
    except urllib.error.URLError as error:  # its reason is the socket's error: no URL in it
        raise SendFailed(f"{type(error.reason).__name__}: {error.reason}") from None
    except (OSError, ValueError, http.client.HTTPException) as error:  # a timeout, a bad URL or answer
        raise SendFailed(type(error).__name__) from None


@dataclass
class AlertSink:
    """Sends alerts from its own thread; ``offer`` is what the reconciles call.

    ``read_url`` returns the receiver's URL, or raises ``SendFailed`` saying why there is none; it is read
    for the first alert and again after any failed try (the Secret may have been rotated). ``render`` turns
    an alert into the body to POST; ``record`` counts each outcome (sent, retried, failed, dropped).
    """

    read_url: Callable[[], str]
    render: Callable[[Alert], bytes]
    record: Callable[[str], None] = lambda result: None
    post: Callable[[str, bytes], None] = post_json
    size: int = QUEUE_SIZE
    attempts: int = SEND_ATTEMPTS
    delay: Callable[[int], float] = retry_delay
    _queue: collections.deque[Alert] = field(default_factory=collections.deque)
    _ready: threading.Condition = field(default_factory=threading.Condition)
    _stopping: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _url: str | None = None
    _full: bool = False  # the last offer found the queue full

    def offer(self, alert: Alert) -> None:
        """Queue ``alert`` to send; when the queue is full, drop the oldest waiting one. Never waits."""
        with self._ready:
            if len(self._queue) >= self.size:
                self._queue.popleft()
                self.record("dropped")
                if not self._full:  # once while it stays full: a line per alert would flood the log
                    log.warning("alert queue full (%d): dropping the oldest alerts", self.size)
                self._full = True
            else:
                self._full = False
            self._queue.append(alert)
            self._ready.notify()

    def pending(self) -> int:
        """How many alerts wait to be sent."""
        with self._ready:
            return len(self._queue)

    def start(self) -> None:
        """Start the thread that sends; it is a daemon, so a process that exits does not wait for a receiver."""
        self._thread = threading.Thread(target=self._drain, name="servicelink-alerts", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 1.0) -> None:
        """Stop sending: alerts still queued are dropped, a send in progress ends on its own timeout."""
        self._stopping.set()
        with self._ready:
            self._ready.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    def _take(self) -> Alert | None:
        with self._ready:
            while not self._queue and not self._stopping.is_set():
                self._ready.wait()
            return None if self._stopping.is_set() else self._queue.popleft()

    def _drain(self) -> None:
        while (alert := self._take()) is not None:
            self.send(alert)

    def send(self, alert: Alert) -> bool:
        """Send one alert, trying up to ``attempts`` times with backoff; return whether it went out."""
        body = self.render(alert)
        for attempt in range(1, self.attempts + 1):
            try:
                if self._url is None:
                    self._url = self.read_url()
                self.post(self._url, body)
            except SendFailed as error:
                self._url = None
                last = attempt == self.attempts
                self.record("failed" if last else "retried")
                log.warning(
                    "alert %s of %s/%s not sent (try %d of %d): %s%s",
                    alert.reason,
                    alert.namespace,
                    alert.name,
                    attempt,
                    self.attempts,
                    error,
                    "; given up" if last else "",
                )
                if last or self._stopping.wait(self.delay(attempt)):
                    return False
            else:
                self.record("sent")
                return True
        return False

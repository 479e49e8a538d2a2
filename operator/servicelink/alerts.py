"""Alerts for a receiver outside the cluster: which Events and status flips alert, and the bodies POSTed (pure).

``sink.py`` queues and sends them; here a reconcile's Events become ``Alert`` objects and an ``Alert``
becomes the bytes of a generic webhook or of a Slack incoming webhook, so every payload is tested without a
network. An alert says what its Event says, in the same words (``plan.describe_change``): a value kept in
the Secret is only "changed", never shown.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from servicelink import conditions as c
from servicelink.events import STALE_JOBS, VALUE_CHANGED
from servicelink.messages import truncate
from servicelink.plan import Event, ServiceLinkView
from servicelink.settings import AlertFormat

NOT_READY = "NotReady"  # the reason of the alert for a Ready condition turning from True to False
# The Event reasons that alert, besides a Ready flip (which records no Event of its own).
ALERTED_REASONS = frozenset({VALUE_CHANGED, c.ROLLOUT_STALLED, STALE_JOBS})
# Ready is False with these on the way of a rollout (RolledOut's new pods not yet available; a rollout held
# for an endpoint as spec.waitForEndpoints asks, or for a cooldown): no one needs to act, so they alert
# neither going in nor as where Ready was. One that stalls turns RolloutStalled, and alerts then.
PASSING_REASONS = frozenset(
    {c.ROLLOUT_IN_PROGRESS, c.WAITING_FOR_ENDPOINTS, c.COOLING_DOWN, c.OUTSIDE_WINDOW, c.WAITING_FOR_ROLLOUT_SLOT}
)
PAYLOAD_VERSION = 1  # the "version" of a webhook body; raised only when a field changes meaning or goes
SLACK_TEXT_LIMIT = 3000  # the most a Slack section block's text holds
# A send is tried this many times, waiting retry_delay(1), retry_delay(2), ... between tries.
SEND_ATTEMPTS = 5
FIRST_RETRY_SECONDS = 1.0
MAX_RETRY_SECONDS = 30.0


@dataclass(frozen=True)
class Alert:
    """One thing to tell the receiver about one ServiceLink."""

    reason: str  # ValueChanged, RolloutStalled, StaleJobs or NotReady
    namespace: str
    name: str
    message: str  # the Event's message; for NotReady, Ready's message
    warning: bool
    at: str  # when the operator saw it, as the API writes times
    changes: tuple[str, ...] = ()  # ValueChanged: "KEY: old -> new", or "KEY: changed (in the Secret)"
    rolled: tuple[str, ...] = ()  # ValueChanged: the workloads rolled, as the Event names them
    condition_reason: str = ""  # NotReady: the reason Ready carries now


def _ready(status: Mapping[str, Any]) -> Mapping[str, Any] | None:
    return next((cond for cond in status.get("conditions") or () if cond.get("type") == c.READY), None)


def plan_alerts(
    view: ServiceLinkView, events: Sequence[Event], *, status: Mapping[str, Any] | None, at: str
) -> list[Alert]:
    """The alerts a reconcile's Events and status write call for, in the order they happened.

    One per Event whose reason is in ``ALERTED_REASONS``, and one ``NotReady``
    when ``status`` (the merge patch written, None: no write) turns Ready from
    True to False with a reason someone must act on. A rollout passing through
    (``PASSING_REASONS``) neither alerts nor hides the flip after it: Ready
    True, then False while pods roll, then False for a Service deleted alerts
    once. A ServiceLink never Ready does not alert for staying so.
    """
    alerts = [
        Alert(
            event.reason,
            view.namespace,
            view.name,
            event.message,
            event.warning,
            at,
            changes=event.changes,
            rolled=event.rolled,
        )
        for event in events
        if event.reason in ALERTED_REASONS
    ]
    before, after = _ready(view.status), _ready(status or {})
    was_ready = before is not None and (
        before.get("status") == "True" or (before.get("status") == "False" and before.get("reason") in PASSING_REASONS)
    )
    if (
        was_ready
        and after is not None
        and after.get("status") == "False"
        and after.get("reason") not in PASSING_REASONS
    ):
        alerts.append(
            Alert(
                NOT_READY,
                view.namespace,
                view.name,
                str(after.get("message", "")),
                True,
                at,
                condition_reason=str(after.get("reason", "")),
            )
        )
    return alerts


def render_webhook(alert: Alert) -> dict[str, Any]:
    """The JSON body of a generic webhook: every field of the alert, named for a reader of the receiver's logs."""
    body: dict[str, Any] = {
        "version": PAYLOAD_VERSION,
        "source": "servicelink",
        "reason": alert.reason,
        "severity": "warning" if alert.warning else "info",
        "servicelink": {"namespace": alert.namespace, "name": alert.name},
        "message": alert.message,
        "time": alert.at,
    }
    if alert.reason == VALUE_CHANGED:
        body["changes"] = list(alert.changes)
        body["rolled"] = list(alert.rolled)
    if alert.reason == NOT_READY:
        body["ready"] = {"status": "False", "reason": alert.condition_reason, "message": alert.message}
    return body


def _slack_escape(text: str) -> str:
    """Escape what Slack's mrkdwn reads as markup (its documented three: &, <, >)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def render_slack(alert: Alert) -> dict[str, Any]:
    """The JSON body of a Slack incoming webhook: a ``text`` for notifications and the same in blocks.

    A ValueChanged lists each change and each workload rolled on a line of its own.
    """
    icon = ":warning:" if alert.warning else ":information_source:"
    what = f"ready reason {alert.condition_reason}: {alert.message}" if alert.reason == NOT_READY else alert.message
    title = f"{icon} *{alert.reason}* on ServiceLink `{alert.namespace}/{alert.name}`"
    if alert.reason == VALUE_CHANGED and (alert.changes or alert.rolled):
        lines = [f"• {_slack_escape(change)}" for change in alert.changes]
        lines += [f"• rolled {_slack_escape(workload)}" for workload in alert.rolled]
        detail = "\n".join(lines)
    else:
        detail = _slack_escape(what)
    text = truncate(f"{title}\n{detail}", SLACK_TEXT_LIMIT)
    return {
        "text": text,
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": text}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": f"servicelink · {alert.at}"}]},
        ],
    }


def render_payload(alert: Alert, *, format: AlertFormat) -> bytes:
    """The bytes POSTed for ``alert`` in ``format``, as UTF-8 JSON."""
    body = render_slack(alert) if format == "slack" else render_webhook(alert)
    return json.dumps(body, ensure_ascii=False, sort_keys=True).encode()


def retry_delay(attempt: int) -> float:
    """Seconds to wait after failed try number ``attempt`` (from 1): 1, 2, 4, 8 ..., at most ``MAX_RETRY_SECONDS``."""
    return float(min(FIRST_RETRY_SECONDS * 2 ** (attempt - 1), MAX_RETRY_SECONDS))

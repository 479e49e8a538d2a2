"""alerts.py: which Events and status flips alert, and the webhook and Slack bodies, on literal dicts."""

from __future__ import annotations

import json
from typing import Any

from servicelink import alerts
from servicelink import conditions as c
from servicelink import plan as planner
from servicelink.alerts import Alert, plan_alerts, render_payload, render_slack, render_webhook, retry_delay
from servicelink.model import RolledOut
from servicelink.render import ConfigMapPlan
from servicelink.resolve import digest_secret_value
from servicelink.status import Verdict

NS = "gallery"
AT = "2026-12-07T20:00:00Z"
PASSWORD = "s3cr3t-p@ss"
SECRET_URL = f"postgres://app:{PASSWORD}@db:5432"


def view(status: dict[str, Any] | None = None) -> planner.ServiceLinkView:
    return planner.parse_servicelink(
        {"metadata": {"namespace": NS, "name": "gateway", "uid": "u1", "generation": 2}, "status": status or {}}
    )


def ready(status: str, reason: str = c.RECONCILED, message: str = "ok") -> dict[str, Any]:
    return {"type": c.READY, "status": status, "reason": reason, "message": message, "observedGeneration": 2}


def port_change_and_rotated_password() -> planner.Changes:
    """The Events of a reconcile that changed a port and rotated the password behind a URL in the Secret."""
    salt = f"{NS}/gateway"
    configmap = ConfigMapPlan(
        apply_data={"AUTH_URL": "http://auth:4001"},
        write=True,
        creates=False,
        force=False,
        with_owner=True,
        changes=(("AUTH_URL", "http://auth:3001", "http://auth:4001"),),
        foreign={},
        restored={},
        size=30,
    )
    secret = planner.SecretWritten(
        "app-secrets",
        before={"DATABASE_URL": digest_secret_value(SECRET_URL.replace(PASSWORD, "old"), salt=salt)},
        after={"DATABASE_URL": digest_secret_value(SECRET_URL, salt=salt)},
    )
    written = planner.Written(
        {"AUTH_URL": "http://auth:4001"}, Verdict(True, c.CONFIGMAP_UP_TO_DATE, "ok"), configmap, {}, secret
    )
    rolled = planner.Rolled(
        Verdict(True, c.WORKLOADS_UPDATED, "ok"), [RolledOut(kind="Deployment", name="web", hash="h2")]
    )
    return planner.plan_change_events(view(), written=written, rolled=rolled)


def value_changed() -> Alert:
    (alert,) = plan_alerts(view(), port_change_and_rotated_password().events, status=None, at=AT)
    return alert


def test_a_value_changed_event_alerts_with_each_change_and_each_workload_rolled() -> None:
    alert = value_changed()
    assert alert.reason == "ValueChanged"
    assert (alert.namespace, alert.name, alert.warning, alert.at) == (NS, "gateway", False, AT)
    assert alert.changes == (
        "AUTH_URL: http://auth:3001 -> http://auth:4001",
        "DATABASE_URL: changed (in the Secret)",
    )
    assert alert.rolled == (f"Deployment {NS}/web",)
    assert alert.message.startswith("AUTH_URL: http://auth:3001 -> http://auth:4001; DATABASE_URL: changed")


def test_no_secret_value_nor_its_digest_reaches_any_payload() -> None:
    changes = port_change_and_rotated_password()
    digests = [digest_secret_value(SECRET_URL, salt=f"{NS}/gateway")]
    for format in alerts_formats():
        payload = render_payload(value_changed(), format=format).decode()
        assert "DATABASE_URL: changed (in the Secret)" in payload
        for secret in (PASSWORD, SECRET_URL, *digests):
            assert secret not in payload
    assert PASSWORD not in repr(changes)


def alerts_formats() -> tuple[alerts.AlertFormat, ...]:
    return ("webhook", "slack")


def test_the_webhook_body_names_the_servicelink_the_changes_and_the_workloads() -> None:
    assert json.loads(render_payload(value_changed(), format="webhook")) == {
        "version": 1,
        "source": "servicelink",
        "reason": "ValueChanged",
        "severity": "info",
        "servicelink": {"namespace": NS, "name": "gateway"},
        "message": value_changed().message,
        "changes": ["AUTH_URL: http://auth:3001 -> http://auth:4001", "DATABASE_URL: changed (in the Secret)"],
        "rolled": [f"Deployment {NS}/web"],
        "time": AT,
    }


def test_the_slack_body_is_text_and_blocks_with_a_line_per_change() -> None:
    body = render_slack(value_changed())
    assert set(body) == {"text", "blocks"}
    section, context = body["blocks"]
    assert section == {"type": "section", "text": {"type": "mrkdwn", "text": body["text"]}}
    assert context["type"] == "context"
    assert context["elements"] == [{"type": "mrkdwn", "text": f"servicelink · {AT}"}]
    assert body["text"].splitlines() == [
        f":information_source: *ValueChanged* on ServiceLink `{NS}/gateway`",
        "• AUTH_URL: http://auth:3001 -&gt; http://auth:4001",
        "• DATABASE_URL: changed (in the Secret)",
        f"• rolled Deployment {NS}/web",
    ]


def test_slack_markup_in_a_message_is_escaped_and_a_long_one_cut() -> None:
    alert = Alert("StaleJobs", NS, "gateway", "<!channel> & " + "x" * 5000, True, AT)
    text = render_slack(alert)["text"]
    assert text.startswith(f":warning: *StaleJobs* on ServiceLink `{NS}/gateway`\n&lt;!channel&gt; &amp; x")
    assert len(text) == alerts.SLACK_TEXT_LIMIT
    assert text.endswith("...")


def test_rollout_stalled_and_stale_jobs_alert_as_warnings_and_other_events_do_not() -> None:
    events = [
        planner.Event(c.ROLLOUT_STALLED, "Deployment gallery/web passed its progressDeadlineSeconds", warning=True),
        planner.Event("StaleJobs", "Job gallery/migrate runs on old values of AUTH_URL", warning=True),
        planner.Event("RolledOut", "rolled Deployment gallery/web onto the ConfigMap's current values"),
        planner.Event("DriftRepaired", "AUTH_URL was changed by field manager 'kubectl'", warning=True),
        planner.Event(c.SERVICE_NOT_FOUND, "Service gallery/auth not found", warning=True),
    ]
    found = plan_alerts(view(), events, status=None, at=AT)
    assert [(a.reason, a.warning) for a in found] == [(c.ROLLOUT_STALLED, True), ("StaleJobs", True)]
    body = render_webhook(found[0])
    assert body["severity"] == "warning"
    assert "changes" not in body
    assert "ready" not in body


def test_ready_turning_false_alerts_once_with_its_reason_and_message() -> None:
    was_ready = view({"conditions": [ready("True")]})
    patch = {"conditions": [ready("False", c.SERVICE_NOT_FOUND, "Service gallery/auth not found")]}
    (alert,) = plan_alerts(was_ready, [], status=patch, at=AT)
    assert (alert.reason, alert.condition_reason, alert.message) == (
        alerts.NOT_READY,
        c.SERVICE_NOT_FOUND,
        "Service gallery/auth not found",
    )
    assert render_webhook(alert)["ready"] == {
        "status": "False",
        "reason": c.SERVICE_NOT_FOUND,
        "message": "Service gallery/auth not found",
    }
    assert "ready reason ServiceNotFound: Service gallery/auth not found" in render_slack(alert)["text"]


def test_no_ready_alert_without_a_flip_from_true() -> None:
    false = {"conditions": [ready("False", c.SERVICE_NOT_FOUND)]}
    assert plan_alerts(view({"conditions": [ready("True")]}), [], status=None, at=AT) == []  # no status written
    assert plan_alerts(view({"conditions": [ready("True")]}), [], status={"hash": "h"}, at=AT) == []  # Ready kept
    assert plan_alerts(view(false), [], status={"conditions": [ready("False", c.PORT_NOT_FOUND)]}, at=AT) == []
    assert plan_alerts(view(), [], status=false, at=AT) == []  # never Ready
    assert plan_alerts(view(false), [], status={"conditions": [ready("True")]}, at=AT) == []  # back to Ready


def test_a_rollout_passing_through_does_not_alert_nor_hide_the_flip_after_it() -> None:
    rolling = {"conditions": [ready("False", c.ROLLOUT_IN_PROGRESS, "Deployment gallery/web: 1 of 2 new pods")]}
    assert plan_alerts(view({"conditions": [ready("True")]}), [], status=rolling, at=AT) == []
    waiting = {"conditions": [ready("False", c.WAITING_FOR_ENDPOINTS)]}
    assert plan_alerts(view({"conditions": [ready("True")]}), [], status=waiting, at=AT) == []
    stalled = {"conditions": [ready("False", c.ROLLOUT_STALLED, "Deployment gallery/web: deadline exceeded")]}
    (alert,) = plan_alerts(view(rolling), [], status=stalled, at=AT)
    assert (alert.reason, alert.condition_reason) == (alerts.NOT_READY, c.ROLLOUT_STALLED)


# The False reasons of RolledOut someone must act on; every other False one passes (alerts.PASSING_REASONS).
ACTED_ON = {c.ROLLOUT_FAILED, c.ROLLOUT_STALLED, c.WORKLOAD_NOT_OPTED_IN}
ROLLED_OUT_TRUE = {c.WORKLOADS_UPDATED, c.NO_CHANGE, c.ROLLOUT_DISABLED}


def test_every_reason_rolled_out_holds_a_rollout_with_is_passing_or_acted_on() -> None:
    """A new RolledOut reason fails here until it is sorted: a hold (a cooldown, a window) must not page anyone."""
    assert set(c.REASONS[c.ROLLED_OUT]) - ROLLED_OUT_TRUE == ACTED_ON | alerts.PASSING_REASONS
    assert not ACTED_ON & alerts.PASSING_REASONS
    cooling = {"conditions": [ready("False", c.COOLING_DOWN, "cooling down: Deployment gallery/web rolls at ...")]}
    assert plan_alerts(view({"conditions": [ready("True")]}), [], status=cooling, at=AT) == []


def test_retries_wait_twice_as_long_each_time_up_to_the_cap() -> None:
    assert [retry_delay(n) for n in range(1, 8)] == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert sum(retry_delay(n) for n in range(1, alerts.SEND_ATTEMPTS)) == 15.0  # given up after 15 s of waits

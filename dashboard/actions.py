"""Writes of the dashboard app: the alert checker's pass."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from dashboard import alerts
from dashboard.choices import AlertState
from dashboard.models import AlertFlip, AlertRule
from knowledge.choices import EventKind
from knowledge.events import publish_event


@dataclass
class CheckResult:
    flips: list[AlertFlip]
    errors: dict[str, str]  # rule name -> what went wrong measuring it
    events: list[int]  # seqs of the alert_fired events published


def ensure_rules() -> None:
    """A row for every registered rule (the migration seeds them; a rule added later, or a
    flushed test database, gets its defaults here)."""
    existing = set(AlertRule.objects.values_list("name", flat=True))
    for spec in alerts.specs().values():
        if spec.name not in existing:
            AlertRule.objects.get_or_create(name=spec.name, defaults=spec.defaults)


def do_check_alerts(now: datetime | None = None) -> CheckResult:
    """Measure every enabled rule and move its state; only the alert checker calls this.

    Per rule, in its own transaction with the row locked (two checkers never flip twice): a
    breach with at least ``min_samples`` samples moves ``ok``/``resolved`` to ``pending``,
    and ``pending`` to ``firing`` once it has lasted ``for_seconds``; no breach moves
    ``pending`` back to ``ok`` and ``firing`` to ``resolved``. Each move is an ``AlertFlip``;
    ``firing`` and ``resolved`` also publish an ``alert_fired`` event (``data.state``). A
    disabled rule that was firing is resolved. A rule that raises is reported in ``errors``
    and keeps its state.
    """
    now = now or timezone.now()
    ensure_rules()
    result = CheckResult([], {}, [])
    for spec in alerts.specs().values():
        try:
            with transaction.atomic():
                rule = AlertRule.objects.select_for_update().get(name=spec.name)
                _check_rule(rule, spec, now, result)
        except Exception as exc:  # noqa: BLE001 - one broken rule must not stop the others
            result.errors[spec.name] = f"{type(exc).__name__}: {exc}"
    return result


def _check_rule(rule: AlertRule, spec: alerts.RuleSpec, now: datetime, result: CheckResult):
    if not rule.enabled:
        if rule.state in (AlertState.FIRING, AlertState.PENDING):
            m = alerts.Measurement(rule.value, False, "rule disabled", rule.samples)
            _flip(rule, AlertState.RESOLVED if rule.firing else AlertState.OK, m, now, result)
            rule.save(update_fields=AlertRule.STATE_FIELDS)
        return
    m = spec.measure(rule)
    if m is None:  # the rule cannot be measured in this deployment
        return
    breached = m.breached
    if breached and (m.samples or 0) < rule.min_samples:
        breached = False
        m.message += f" (only {alerts.plural(m.samples or 0, 'sample')}, {rule.min_samples} needed)"
    if breached:
        if rule.state in (AlertState.OK, AlertState.RESOLVED):
            _flip(rule, AlertState.PENDING, m, now, result)
        if (
            rule.state == AlertState.PENDING
            and (now - rule.state_since).total_seconds() >= rule.for_seconds
        ):
            _flip(rule, AlertState.FIRING, m, now, result)
    elif rule.state == AlertState.PENDING:
        _flip(rule, AlertState.OK, m, now, result)
    elif rule.state == AlertState.FIRING:
        _flip(rule, AlertState.RESOLVED, m, now, result)
    rule.value, rule.samples, rule.message, rule.checked_at = (
        m.value,
        m.samples,
        m.message[:500],
        now,
    )
    rule.save(update_fields=AlertRule.STATE_FIELDS)


def _flip(rule: AlertRule, new: str, m: alerts.Measurement, now, result: CheckResult) -> None:
    if not rule.can_transition(new):
        raise ValueError(f"alert {rule.name}: no transition {rule.state} -> {new}")
    flip = AlertFlip.objects.create(
        rule=rule,
        created_at=now,
        old_state=rule.state,
        new_state=new,
        value=m.value,
        threshold=rule.threshold,
        samples=m.samples,
        message=m.message[:500],
    )
    rule.state, rule.state_since = new, now
    result.flips.append(flip)
    if new in (AlertState.FIRING, AlertState.RESOLVED):
        event = publish_event(
            EventKind.ALERT_FIRED,
            {
                "name": rule.name,
                "level": rule.level,
                "state": new,
                "firing": new == AlertState.FIRING,
                "value": m.value,
                "threshold": rule.threshold,
                "samples": m.samples,
                "message": m.message,
            },
            source="alerts",
        )
        result.events.append(event.seq)

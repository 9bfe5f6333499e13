"""Seed the alert rules with the original plan's thresholds (shared/ORIGINAL_PLAN.md,
"Alert Thresholds"). A frozen copy of the defaults registered in dashboard/alerts.py
(dashboard/tests/test_alerts.py checks that they agree)."""

from django.db import migrations

RULES = {
    "broadcast_rate_drop": {
        "description": "broadcasts in the last 15 min fell below this share of the 15 min before",
        "level": "warning",
        "threshold": 0.5,
        "unit": "ratio",
        "min_samples": 20,
        "for_seconds": 60,
    },
    "api_latency": {
        "description": "P95 of API requests over the last 5 min (all server processes)",
        "level": "warning",
        "threshold": 100.0,
        "unit": "ms",
        "min_samples": 20,
        "for_seconds": 60,
    },
    "websocket_drop": {
        "description": "open live-feed connections fell below this share of the 5 min peak",
        "level": "critical",
        "threshold": 0.8,
        "unit": "ratio",
        "min_samples": 5,
        "for_seconds": 30,
    },
    "unresolved_conflicts": {
        "description": "conflicts open or pending review",
        "level": "warning",
        "threshold": 10,
        "unit": "conflicts",
        "min_samples": 0,
        "for_seconds": 0,
    },
    "database_latency": {
        "description": "median database round trip of the health check",
        "level": "warning",
        "threshold": 50.0,
        "unit": "ms",
        "min_samples": 3,
        "for_seconds": 60,
    },
    "stale_knowledge": {
        "description": "a type broadcast in the last 7 days has no active item this fresh",
        "level": "warning",
        "threshold": 0.5,
        "unit": "freshness",
        "min_samples": 1,
        "for_seconds": 0,
    },
}


def seed(apps, schema_editor):
    AlertRule = apps.get_model("dashboard", "AlertRule")
    for name, fields in RULES.items():
        AlertRule.objects.get_or_create(name=name, defaults=fields)


def unseed(apps, schema_editor):
    apps.get_model("dashboard", "AlertRule").objects.filter(name__in=RULES).delete()


class Migration(migrations.Migration):
    dependencies = [("dashboard", "0002_alerts")]

    operations = [migrations.RunPython(seed, unseed)]

"""manage.py export_monitoring: the committed Prometheus rules and Grafana dashboard."""

from __future__ import annotations

import json

import pytest
import yaml
from django.core.management import CommandError, call_command

from dashboard.alerts import specs
from dashboard.management.commands import export_monitoring as export


def test_committed_files_parse_and_are_what_the_command_writes_now():
    for name, text in export.outputs().items():
        assert (export.OUT_DIR / name).read_text() == text, (
            f"run manage.py export_monitoring ({name})"
        )
    call_command("export_monitoring", "--check")  # the same comparison, as CI would run it

    rules = yaml.safe_load((export.OUT_DIR / export.RULES_FILE).read_text())
    by_rule = {r["labels"]["rule"]: r for r in rules["groups"][0]["rules"]}
    assert set(by_rule) == set(specs())
    assert "> 100 and" in by_rule["api_latency"]["expr"] and by_rule["api_latency"]["for"] == "60s"
    assert by_rule["websocket_drop"]["labels"]["severity"] == "critical"
    assert by_rule["unresolved_conflicts"]["expr"] == "kx_conflicts_unresolved > 10"

    board = json.loads((export.OUT_DIR / export.DASHBOARD_FILE).read_text())
    exprs = [t["expr"] for p in board["panels"] for t in p["targets"]]
    assert any("kx_broadcasts_total" in e for e in exprs)
    assert any("kx_inbox_delivered_total" in e for e in exprs)
    assert len({p["id"] for p in board["panels"]}) == len(board["panels"])


def test_check_fails_on_a_stale_file(tmp_path):
    call_command("export_monitoring", "--out", str(tmp_path))
    (tmp_path / export.RULES_FILE).write_text("groups: []\n")
    with pytest.raises(CommandError, match="out of date"):
        call_command("export_monitoring", "--out", str(tmp_path), "--check")

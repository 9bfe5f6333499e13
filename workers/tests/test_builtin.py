"""The five built-in workers on a generated git repository, through the real exchange."""

from __future__ import annotations

import json
import random
import threading
import time
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection

from identity.models import Worker
from knowledge.models import InboxCursor, KnowledgeItem
from workers.builtin.replay import build_workers, replay_history
from workers.builtin.repo import RepoView
from workers.engine.replay import replay as engine_replay
from workers.engine.tests.conftest import DAY, RepoBuilder
from workers.engine.tests.sources import function_of_complexity, function_of_length
from workers.engine.tests.test_replay import build_history
from workers.models import Project

# The query cache is invalidated on commit, and the fleet runs in threads: real transactions.
pytestmark = pytest.mark.django_db(transaction=True)


def wait_for(condition, timeout=90.0, what=""):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_replay_through_the_exchange_reproduces_the_engine_with_exchange(repo_builder):
    build_history(repo_builder, commits=16)
    reference = engine_replay(repo_builder.repo, exchange=True, first_parent=True)
    report = replay_history(str(repo_builder.path), exchange=True)
    assert report["failed_cycles"] == 0
    assert report["commits"] == 16
    assert report["outcomes"] == reference.outcomes
    quality = report["decision_quality"]
    assert quality["n"] == len(reference.pairs) > 50
    assert quality["brier"] == round(reference.summary()["calibration"]["brier"], 4)
    # Learning scores Think's predictions as it reads them in the exchange, too.
    assert report["decision_quality_seen_by_learning"]["n"] > 0
    workers = report["workers"]
    assert workers["think"]["received_by_type"]["context_enrichment"] > 0
    assert workers["dream"]["received_by_type"]["issue_pattern"] > 0
    assert workers["analysis"]["received_by_type"]["learned_pattern"] > 0
    assert 0 < report["reception_overhead"]["ratio"] < 1
    assert Project.objects.get().last_analysed_commit == report["last_commit"]
    # Skill against the base rate, discrimination and intervals are in the report.
    for key in ("base_rate", "brier_skill", "auc", "reference_brier", "calibration"):
        assert quality[key] is not None, key
    low, high = quality["ci"]["brier_skill"]
    assert low <= quality["brier_skill"] <= high
    # The fleet disagrees: Analysis's view of risk (from the code) and Think's (from its
    # committee) on the same subject are contradictions the exchange detects.
    conflicts = report["conflicts"]
    assert conflicts["stored"] > 0
    assert conflicts["by_knowledge_type"] == {"risk_pattern": conflicts["stored"]}
    assert conflicts["by_classification"].get("contradiction", 0) > 0
    assert conflicts["seen_by_workers"] > 0
    assert conflicts["effect_on_think"]["conflict_detected"] > 0
    # Only what changed was broadcast: fewer items than the engine published.
    assert sum(w["broadcast"] for w in workers.values()) < sum(reference.published.values())


def build_disputed_history(
    builder, commits: int, warmup: int = 12, seed: int = 5, edits: int = 2
) -> None:
    """A package whose files change at every commit (high churn from the first replayed
    commit, when the replay skips the ``warmup`` commits): 50 functions with 8-10 arguments,
    ``edits`` of the last ``edits + 1`` edited per commit without touching their arguments (the
    changes never make them worse), and long and complex functions, ``edits`` of each kind
    growing per commit."""
    rng = random.Random(seed)
    args = {f"f{i:02d}": [rng.randint(8, 10), 0] for i in range(50)}
    edited = sorted(args)[-(edits + 1) :]
    grow = {"long": {f"long_{i}": 70 + 5 * i for i in range(8)}}
    grow["complex"] = {f"complex_{i}": 14 + i for i in range(8)}

    def with_args(name: str, count: int, extra: int) -> str:
        body = "".join(f"    y{i} = a0 + {i}\n" for i in range(extra))
        return f"def {name}({', '.join(f'a{i}' for i in range(count))}):\n{body}    return a0\n"

    for _ in range(warmup + commits):
        for name in rng.sample(edited, edits):
            args[name][1] = (args[name][1] + 1) % 6
        for kind, group in grow.items():
            for name in rng.sample(sorted(group), min(edits, len(group))):
                group[name] += 3 if kind == "long" else 1
        builder.write("pkg/api.py", "\n\n".join(with_args(k, *v) for k, v in sorted(args.items())))
        for kind, render in (("long", function_of_length), ("complex", function_of_complexity)):
            text = "\n\n".join(render(k, v) for k, v in sorted(grow[kind].items()))
            builder.write(f"pkg/{kind}.py", text)
        builder.commit("edit")


def test_the_fleet_settles_its_own_disagreements_on_evidence(repo_builder):
    """Learning states risk from what the observed changes did, a third opinion on other
    evidence than Analysis's (the code) and Think's (its committee). Where the two agree with
    confidence and Learning's first few observations say otherwise, the engine settles it at
    the unchanged 0.95 threshold; where Analysis and Think disagree, Learning's view is the
    third voice. Before, no conflict of the fleet was ever resolved: two sources with no
    record cannot settle a disagreement on their own."""
    from conflicts.models import Resolution

    build_disputed_history(repo_builder, commits=10)
    report = replay_history(str(repo_builder.path), commits=10, exchange=True, sweep_every=5)
    assert report["failed_cycles"] == 0
    conflicts = report["conflicts"]
    assert report["workers"]["learning"]["broadcast_by_type"]["risk_pattern"] > 0
    assert conflicts["by_status"].get("auto_resolved", 0) > 0, conflicts
    assert conflicts["by_status"].get("pending_review", 0) > 0  # not everything is settled
    assert conflicts["resolutions"].get("auto:auto", 0) > 0
    assert conflicts["superseded_items"] > 0
    assert conflicts["sweeps"]["runs"] == 2
    # Think took the superseded items out of its view and counted what that changed.
    effect = conflicts["effect_on_think"]
    assert effect["knowledge_resolved"] > 0 and effect["items_overruled"] > 0, effect
    assert effect["assessments_with_overruled_inputs"] > 0
    # Each automatic decision was a probability of at least 0.95 over the three views,
    # Learning's observed one among them: evidence, not a lowered bar.
    for res in Resolution.objects.filter(actor="auto"):
        assert res.proposal["margin"] >= 0.95
        assert {i["source"] for i in res.inputs} == {"analysis", "think", "learning"}


def test_other_projects_learning_reaches_think_only_from_before_its_decisions(tmp_path):
    """``replay_history --prior-repo``: another project's Learning broadcasts into the same
    exchange as its own source, its commits interleaved by date with the target's, and Think
    pools its fix rates with the target's: its forecasts change. A prior commit dated after
    the target's last commit is never replayed (it precedes no decision)."""
    target = RepoBuilder(tmp_path / "target")
    build_history(target, commits=12)
    other = RepoBuilder(tmp_path / "other")
    other.clock -= 10 * DAY  # starts ten days before the target, ends eight days after it
    build_history(other, commits=30, seed=3)
    alone = engine_replay(target.repo, exchange=True, first_parent=True)

    out = StringIO()
    call_command(
        "replay_history",
        "--repo",
        str(target.path),
        "--prior-repo",
        str(other.path),
        "--json",
        "--no-progress",
        stdout=out,
    )
    report = json.loads(out.getvalue())

    assert report["failed_cycles"] == 0
    [prior] = report["prior_projects"]
    assert prior["source"] == "learning.other"
    last_decision = RepoView(str(target.path)).commits()[-1].timestamp
    before = [c for c in RepoView(str(other.path)).commits() if c.timestamp < last_decision]
    assert prior["commits"] == len(before) == 21  # not the 9 commits dated after
    assert prior["last_commit_time"] < last_decision
    assert prior["outcomes"].get("fixed", 0) > 0
    learned = KnowledgeItem.objects.filter(
        source__name="learning.other", knowledge_type="learned_pattern", status="active"
    )
    assert learned.exists()
    assert prior["seen_by_think"]["learned_pattern"] == learned.count()
    # The same decisions as the target alone, forecast differently: the other project's
    # outcomes moved them.
    quality = report["decision_quality"]
    assert quality["n"] == len(alone.pairs) > 50
    assert quality["brier"] != round(alone.summary()["calibration"]["brier"], 4)


def test_observed_outcomes_settle_the_fleets_disagreements_toward_what_happened(repo_builder):
    """Analysis's (the code) and Think's (its committee) risk levels are heuristics; Learning's
    is what the observed changes did. On this history the arguments-heavy functions change
    without ever getting worse and the long and complex ones grow at every change, so the
    observed levels are the true ones. With Learning's claims as outcome-grounded labels in the
    trust estimate (``observed_by`` in the registry), the forecasters' record is measured
    against what happened: the sweep settles the conflicts for the observed claims, at the
    unchanged 0.95, and Think's risk moves with them. Before, the two agreeing heuristics were
    trusted over the observer (their shared scale looked like agreement) and won or stayed
    pending."""
    from conflicts.models import Resolution, SourceTrust

    build_disputed_history(repo_builder, commits=16, edits=6)
    report = replay_history(str(repo_builder.path), commits=16, exchange=True, sweep_every=4)
    assert report["failed_cycles"] == 0
    trust = {
        row.worker.name: row.as_trust().learned_mean
        for row in SourceTrust.objects.select_related("worker").filter(
            knowledge_type="risk_pattern"
        )
    }
    assert trust["learning"] > 0.5 > max(trust["analysis"], trust["think"]), trust

    def observed_won(res) -> bool:
        said = {i["source"]: i["claim"] for i in res.inputs}
        return said.get("learning") == res.winner_claim and any(
            claim != res.winner_claim for source, claim in said.items() if source != "learning"
        )

    automatic = list(Resolution.objects.filter(actor="auto").order_by("pk"))
    settled = [res for res in automatic if observed_won(res)]
    assert settled, [(r.winner_claim, r.inputs) for r in automatic]
    assert all(res.proposal["margin"] >= 0.95 for res in automatic)
    # The last word on every subject is what was observed.
    last = {res.conflict.subject: res for res in automatic}
    assert all(observed_won(res) for res in last.values()), {
        s: (r.winner_claim, [(i["source"], i["claim"]) for i in r.inputs]) for s, r in last.items()
    }
    effect = report["conflicts"]["effect_on_think"]
    assert effect["items_overruled"] > 0 and effect["risk_changed"] > 0, effect


def test_a_settled_subject_is_not_contested_again_on_the_same_evidence(repo_builder):
    """After a resolution overrules Analysis's or Think's level on a subject, their next
    commits change their evidence (scores, sample counts) but not their level: they do not say
    it again, so no new conflict is opened to be overruled at once. A claim is stated again
    only as another level or with confidence 0.1 above the one that lost. Before, each commit
    restated the overruled level and each restatement was a new conflict settled against it
    (the loop of the click replay, docs/workers.md)."""
    from conflicts.models import Resolution

    build_disputed_history(repo_builder, commits=16, edits=6)
    report = replay_history(str(repo_builder.path), commits=16, exchange=True, sweep_every=4)
    assert report["failed_cycles"] == 0
    assert report["conflicts"]["by_status"].get("auto_resolved", 0) > 0
    workers = report["workers"]
    assert (
        workers["analysis"]["overruled_skipped"] > 0 and workers["think"]["overruled_skipped"] > 0
    )
    restated = []
    for res in Resolution.objects.filter(actor="auto"):
        for lost in KnowledgeItem.objects.filter(pk__in=res.superseded_item_ids):
            following = (
                KnowledgeItem.objects.filter(
                    source=lost.source, knowledge_type=lost.knowledge_type, subject=lost.subject
                )
                .filter(pk__gt=lost.pk)
                .order_by("pk")
                .first()
            )
            if following is not None and following.claim == lost.claim:
                if following.confidence < lost.confidence + 0.1:
                    restated.append((lost.source.name, lost.subject, lost.claim))
    assert restated == []
    # Nothing was deleted: every overruled item is still there, superseded.
    superseded = {i for res in Resolution.objects.all() for i in res.superseded_item_ids}
    assert KnowledgeItem.objects.filter(pk__in=superseded, status="superseded").count() == len(
        superseded
    )


def test_replay_without_exchange_is_the_engines_baseline(repo_builder):
    build_history(repo_builder, commits=16)
    with_ = engine_replay(repo_builder.repo, exchange=True, first_parent=True).summary()
    without = engine_replay(repo_builder.repo, exchange=False, first_parent=True).summary()
    report = replay_history(str(repo_builder.path), exchange=False)
    assert report["decision_quality"]["brier"] == round(without["calibration"]["brier"], 4)
    assert all(w["received"] == 0 for w in report["workers"].values())
    assert report["reception_overhead"]["ratio"] == 0
    assert (
        KnowledgeItem.objects.exclude(
            source__name__in=["analysis", "dream", "recall", "think", "learning"]
        ).count()
        == 0
    )
    # Without exchange Think forecasts the base rate of its own past outcomes: the reference.
    quality = report["decision_quality"]
    assert quality["brier_skill"] == pytest.approx(0.0, abs=0.005)
    assert quality["brier"] == pytest.approx(quality["reference_brier"], abs=0.001)
    # The exchange (Learning's fix rates by rule and margin) is what gives Think skill.
    assert with_["calibration"]["brier_skill"] > without["calibration"]["brier_skill"] + 0.02


def test_a_restarted_worker_does_not_broadcast_again(history_repo):
    view = RepoView(str(history_repo.path))
    first = build_workers(view)["analysis"]
    assert first.run_cycle() and first.stats.broadcast > 0
    count = KnowledgeItem.objects.count()
    again = build_workers(RepoView(str(history_repo.path)))["analysis"]  # a new process
    assert again.run_cycle()
    assert again.stats.broadcast == 0 and again.stats.unchanged_skipped > 0
    assert KnowledgeItem.objects.count() == count


@pytest.fixture
def fleet(repo_builder):
    """The five workers, each looping in its own thread on HEAD of a generated repository."""
    from workers.actions import do_mark_analysed, do_register_project

    build_history(repo_builder, commits=4)
    project = do_register_project(str(repo_builder.path))
    workers = build_workers(
        RepoView(str(repo_builder.path)), on_analysed=lambda sha: do_mark_analysed(project, sha)
    )
    threads = []
    errors: list[BaseException] = []

    def run(worker):
        try:
            worker.run()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connection.close()

    for worker in workers.values():
        worker.interval, worker.jitter = 0.05, 0.0
        threads.append(threading.Thread(target=run, args=(worker,), daemon=True))
    for thread in threads:
        thread.start()
    yield repo_builder, workers
    for worker in workers.values():
        worker.stop()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors
    assert not any(t.is_alive() for t in threads)


def test_five_workers_at_once_broadcast_query_receive_and_learn(fleet):
    builder, w = fleet
    # broadcast -> inbox -> processing: Analysis's issues reach Think and Dream.
    wait_for(lambda: w["think"].stats.received_by_type["issue_pattern"] > 0, what="issues at think")
    wait_for(lambda: w["dream"].stats.received_by_type["issue_pattern"] > 0, what="issues at dream")
    wait_for(
        lambda: w["think"].commits_done >= 1 and w["recall"].commits_done >= 1, what="first commit"
    )
    wait_for(
        lambda: w["think"].stats.received_by_type["context_enrichment"] > 0, what="context at think"
    )
    assert w["think"].stats.query_seconds > 0  # queried before deciding
    # A new commit fixes every bare except: Learning observes it and tells the others.
    for path in sorted(builder.path.glob("pkg/*.py")):
        path.write_text(path.read_text().replace("except:", "except ValueError:"))
    head = builder.commit("narrow excepts")
    wait_for(lambda: w["learning"].outcome_counts["fixed"] > 0, what="fixed outcomes")
    wait_for(lambda: w["dream"].stats.received_by_type["successful_fix"] > 0, what="fixes at dream")
    wait_for(lambda: w["think"].commits_done >= 2, what="think on the new commit")
    fixes = KnowledgeItem.objects.filter(knowledge_type="successful_fix", source__name="learning")
    assert fixes.exists() and all(f.payload["rule"] == "bare_except" for f in fixes)
    # Analysis records the commit when its own cycle ends, which may be after Think's.
    wait_for(
        lambda: Project.objects.get().last_analysed_commit == head,
        what="analysis on the new commit",
    )
    for name, worker in w.items():
        assert worker.stats.errors == 0, (name, worker.stats.last_error)
        state = Worker.objects.get(name=name).state
        assert state["status"] in ("running", "stopped") and state["stats"]["cycles"] >= 1
        # Every worker that received something acknowledged it: a page is acked by the
        # worker's next read (docs/api.md, "Ack on the next read"), so this is waited for. (A
        # new inbox starts where the log stood at the worker's creation, here 0; one that
        # nothing was sent to yet may still stand there.)
        wait_for(
            lambda w=worker, n=name: (
                InboxCursor.objects.get(worker__name=n).acked_at is not None
                or w.stats.received == 0
            ),
            what=f"{name} acknowledged what it received",
        )
    assert sum(InboxCursor.objects.filter(position__gt=0).values_list("position", flat=True)) > 0


def test_a_conflict_and_its_resolution_reach_the_workers_involved(fleet, staff_client):
    builder, w = fleet
    wait_for(lambda: w["think"].commits_done >= 1, what="think's first commit")
    mine = KnowledgeItem.objects.filter(
        source__name="think", knowledge_type="risk_pattern", status="active"
    ).first()
    assert mine is not None
    other = "low" if mine.payload["risk_level"] != "low" else "critical"
    from workers.inprocess import InProcessTransport

    answer = InProcessTransport("analysis").broadcast(
        {
            "knowledge_type": "risk_pattern",
            "payload": {**mine.payload, "risk_level": other},
            "confidence": 0.95,
            "idempotency_key": "e2e-conflict",
        }
    )
    assert answer["conflicts"], answer  # a different risk level on the same pattern
    conflict_id = answer["conflicts"][0]

    def events(worker, kind):
        return [e for e in list(worker.conflict_log) if e.get("event") == kind]

    for name in ("think", "analysis"):
        wait_for(
            lambda n=name: events(w[n], "conflict_detected"), what=f"conflict_detected at {name}"
        )
    if not events(w["think"], "knowledge_resolved"):
        # Below the auto-resolve threshold: a person decides (accepts the engine's proposal).
        r = staff_client.post(
            "/api/knowledge/resolve", {"conflict": conflict_id, "decision": "accept"}, format="json"
        )
        assert r.status_code in (200, 201), r.content
    for name in ("think", "analysis"):
        wait_for(
            lambda n=name: events(w[n], "knowledge_resolved"), what=f"knowledge_resolved at {name}"
        )


def test_a_fresh_worker_walks_the_recent_history_one_commit_per_cycle(history_repo, caplog):
    from identity.actions import do_ensure_builtin_workers
    from workers.builtin.workers import HISTORY_PACE_SECONDS, AnalysisWorker
    from workers.inprocess import InProcessTransport

    do_ensure_builtin_workers()
    view = RepoView(str(history_repo.path))
    commits = view.commits()
    worker = AnalysisWorker(InProcessTransport("analysis"), view=view, history=3)
    assert [c.sha for c in worker.backlog] == [c.sha for c in commits[-3:]]
    assert worker.next_delay() <= HISTORY_PACE_SECONDS  # catching up: a commit every few s
    caplog.set_level("INFO", logger="workers.analysis")
    for _ in range(4):
        assert worker.run_cycle()
    assert worker.commit.sha == commits[-1].sha and worker.commits_done == 3
    assert worker.next_delay() > HISTORY_PACE_SECONDS  # then HEAD at the normal interval
    lines = [r.getMessage() for r in caplog.records if ": cycle " in r.getMessage()]
    assert len(lines) == 4  # one line per cycle
    assert f"history commit {commits[-3].sha[:10]} (2 to go)" in lines[0]
    assert "broadcast" in lines[0] and int(lines[0].split(", ")[1].split()[0]) > 0
    assert f"waiting for a new commit (HEAD {commits[-1].sha[:10]} done)" in lines[3]
    assert KnowledgeItem.objects.filter(source__name="analysis").exists()

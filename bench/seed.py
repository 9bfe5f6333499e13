"""Seed the knowledge table fast: COPY in chunks, secondary indexes dropped during the
load and rebuilt after it, then ANALYZE."""

from __future__ import annotations

import io
import json
import math
import random
import time

from knowledge.registry import registry

try:
    from knowledge.search import fill_vocabulary
except ImportError:  # a product before the subject's words (the before/after runs of b19e867)
    fill_vocabulary = None

DAY = 86400.0
MODULES = 5000  # free-text search term "mod%04d" matches ~1/5000 of the items
RULES = [
    "long_function",
    "deep_nesting",
    "too_many_args",
    "god_class",
    "dead_code",
    "magic_number",
    "duplicate_code",
    "broad_except",
    "missing_test",
    "slow_query",
]
LEVELS = ["low", "medium", "high", "critical"]
COLUMNS = (
    "id",
    "knowledge_type",
    "source_id",
    "subject",
    "claim",
    "payload",
    "confidence",
    "urgency",
    "is_targeted",
    "target_names",
    "status",
    "validation_status",
    "created_at",
    "observed_at",
    "observed_ts",
    "refresh_count",
)


def _where(rng: random.Random) -> str:
    return f"src/pkg{rng.randrange(200):03d}/mod{rng.randrange(MODULES):04d}.py::fn{rng.randrange(100000)}"


def payload_for(knowledge_type: str, rng: random.Random) -> dict:
    w = _where(rng)
    c = rng.choice
    if knowledge_type == "risk_pattern":
        return {
            "pattern": f"risky change in {w}",
            "risk_level": c(LEVELS),
            "risk_score": round(rng.random(), 3),
        }
    if knowledge_type == "decision_outcome":
        return {
            "proposal": f"refactor {w}",
            "decision": c(["execute", "approve", "defer", "reject"]),
            "predicted_success": round(rng.random(), 3),
        }
    if knowledge_type == "successful_fix":
        return {
            "rule": c(RULES),
            "target": w,
            "fix": c(["extract function", "add test", "inline", "split class"]),
        }
    if knowledge_type == "issue_pattern":
        return {
            "rule": c(RULES),
            "location": w,
            "severity": c(["low", "medium", "high"]),
            "metric": rng.randrange(100),
        }
    if knowledge_type == "pattern_evolution":
        return {"pattern": f"{c(RULES)} near {w}", "trend": c(["emerging", "stable", "declining"])}
    if knowledge_type == "learned_pattern":
        return {
            "pattern": f"{c(RULES)} fix in {w}",
            "effect": c(["effective", "ineffective", "mixed"]),
            "success_rate": round(rng.random(), 3),
            "samples": rng.randrange(1, 50),
        }
    if knowledge_type == "proposal_quality":
        return {
            "proposal_kind": f"proposal for {w}",
            "rule": c(RULES),
            "quality": c(["high", "medium", "low"]),
        }
    if knowledge_type == "context_enrichment":
        return {
            "target": w,
            "aspect": c(["churn", "age", "owners", "past_fixes"]),
            "value": str(rng.randrange(1000)),
        }
    if knowledge_type == "knowledge_retrieval":
        return {"query": f"context of {w}", "hit_rate": round(rng.random(), 3)}
    return {
        "scope": w,
        "direction": c(["increasing", "stable", "decreasing"]),
        "avg_complexity": rng.randrange(1, 30),
    }


def _esc(value: str) -> str:
    return (
        value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    )


def rows(n: int, source_ids: list[int], now_ts: float, seed: int = 7, start_id: int = 1):
    """Yield COPY text lines: the ten types evenly, every source, urgencies skewed to
    normal, ages spread over ~90 days (exponential, mean 10 days), 90% active."""
    rng = random.Random(seed)
    types = registry.names()
    for i in range(n):
        t = types[i % len(types)]
        kt = registry[t]
        payload = payload_for(t, rng)
        age = min(rng.expovariate(1 / (10 * DAY)), 90 * DAY)
        observed = now_ts - age
        created = observed + rng.random() * 60
        status = "active" if rng.random() < 0.9 else rng.choice(["superseded", "retracted"])
        urgency = rng.choices([1, 2, 3, 4], weights=[20, 50, 22, 8])[0]
        yield (
            "\t".join(
                (
                    str(start_id + i),
                    t,
                    str(rng.choice(source_ids)),
                    _esc(kt.subject_of(payload)),
                    _esc(kt.claim_of(payload)),
                    _esc(json.dumps(payload)),
                    f"{0.3 + 0.7 * rng.random():.4f}",
                    str(urgency),
                    "f",
                    "[]",
                    status,
                    "unvalidated",
                    _ts(created),
                    _ts(observed),
                    repr(observed),
                    "0",
                )
            )
            + "\n"
        )


def _ts(epoch: float) -> str:
    return (
        time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(epoch))
        + f".{int(math.modf(epoch)[0] * 1e6):06d}+00"
    )


def seed_items(conn, n: int, source_ids: list[int], chunk: int = 50_000, progress=None) -> float:
    """COPY ``n`` items into an empty knowledge table; returns seconds taken."""
    started = time.perf_counter()
    table = "knowledge_knowledgeitem"
    with conn.cursor() as cur:
        cur.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s AND indexname NOT LIKE %s",
            [table, "%pkey"],
        )
        indexes = cur.fetchall()
        for name, _ in indexes:
            cur.execute(f'DROP INDEX "{name}"')
        try:
            cur.execute("SET session_replication_role = replica")  # skip FK triggers on load
        except Exception:
            conn.rollback()
        now_ts = time.time()
        buf = io.StringIO()
        written = 0
        for line in rows(n, source_ids, now_ts):
            buf.write(line)
            written += 1
            if written % chunk == 0 or written == n:
                buf.seek(0)
                cur.copy_expert(f"COPY {table} ({', '.join(COLUMNS)}) FROM STDIN", buf)
                if progress:
                    progress.update(written - progress.n)
                buf = io.StringIO()
        cur.execute("SET session_replication_role = DEFAULT")
        cur.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), %s)", [max(n, 1)])
        cur.execute("SET maintenance_work_mem = '512MB'")
        for _, definition in indexes:
            cur.execute(definition)
        if fill_vocabulary is not None:
            fill_vocabulary(cur)  # its trigger did not run (replica role)
        conn.commit()
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f"VACUUM ANALYZE {table}")
        if fill_vocabulary is not None:
            cur.execute("ANALYZE knowledge_subjectword")
    conn.autocommit = False
    return time.perf_counter() - started

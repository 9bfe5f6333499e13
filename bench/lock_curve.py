"""``python bench/lock_curve.py``: single-broadcast throughput with and without the log's
tail lock (``event_ordering`` lock vs snapshot; docs/performance.md, "Ordering without the
global lock").

Creates a PostgreSQL database ``kx_lockbench_<pid>`` (dropped at the end), migrates it and
creates 16 workers. Then spawns one process per client (each with its own connection) that
calls the broadcast action itself (``knowledge.actions.do_broadcast``: validation, the item,
conflict detection, the event, commit; no HTTP, so the write path is what is measured), one
item per call on a subject of its own, like ``make bench``'s "broadcast (single)".
For 1, 2, 4, 8 and 16 clients, ``--reps`` rounds of both modes back to back (the order
alternates), each round ``--total`` broadcasts shared by the clients. Prints per (clients,
mode) the median throughput and the P50/P95 latency over the rounds, and the median of the
per-round ratios snapshot/lock; ``--json FILE`` and ``--svg FILE`` write the figures and the
curve.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.private_db import private_database  # noqa: E402

CLIENTS = [1, 2, 4, 8, 16]
MODES = ["lock", "snapshot"]


def _child(index: int, pipe) -> None:
    import django

    sys.path.insert(0, str(ROOT))
    django.setup()
    from django.conf import settings
    from django.db import connections

    from config.product import product_settings
    from identity.models import Worker
    from knowledge.actions import BroadcastInput, do_broadcast

    worker = Worker.objects.get(name=f"lockbench{index}")
    n = 0
    while True:
        msg = pipe.recv()
        if msg is None:
            break
        mode, count, start_at = msg
        settings.KNOWLEDGE_EXCHANGE = product_settings().replace(event_ordering=mode)
        time.sleep(max(0.0, start_at - time.time()))
        lat = []
        for _ in range(count):
            n += 1
            data = BroadcastInput(
                "issue_pattern",
                {"rule": "long_function", "location": f"lock/{index}/{n}", "severity": "high"},
                0.7,
            )
            t = time.perf_counter()
            do_broadcast(worker, data)
            lat.append((time.perf_counter() - t) * 1000)
        pipe.send((lat, time.time()))
    connections.close_all()


def _round(pipes, clients: int, mode: str, total: int) -> dict:
    per = total // clients
    start_at = time.time() + 0.2
    for pipe in pipes[:clients]:
        pipe.send((mode, per, start_at))
    lat, ends = [], []
    for pipe in pipes[:clients]:
        samples, end = pipe.recv()
        lat.extend(samples)
        ends.append(end)
    wall = max(ends) - start_at
    lat.sort()
    return {
        "throughput": per * clients / wall,
        "p50": lat[len(lat) // 2],
        "p95": lat[min(len(lat) - 1, int(len(lat) * 0.95))],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--pg-url",
        default=os.environ.get("BENCH_PG_URL", "postgres://root@127.0.0.1:5432/postgres"),
    )
    p.add_argument("--total", type=int, default=240, help="broadcasts per round (all clients)")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument(
        "--clients", default=",".join(map(str, CLIENTS)), help="client counts, comma-separated"
    )
    p.add_argument("--json", help="write the figures here")
    p.add_argument("--svg", help="write the curve here")
    args = p.parse_args(argv)
    counts = [int(c) for c in args.clients.split(",")]

    with private_database(args.pg_url, "kx_lockbench", announce=True) as url:
        os.environ["DATABASE_URL"] = url
        os.environ.pop("REDIS_URL", None)
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
        procs = []
        try:
            import django

            django.setup()
            from django.core.management import call_command
            from django.db import connections

            from identity.actions import do_create_worker

            call_command("migrate", verbosity=0, interactive=False)
            for i in range(max(counts)):
                do_create_worker(f"lockbench{i}")
            connections.close_all()
            ctx = mp.get_context("spawn")  # a fork would share the parent's connection pool
            pipes = []
            for i in range(max(counts)):
                parent, child = ctx.Pipe()
                proc = ctx.Process(target=_child, args=(i, child), daemon=True)
                proc.start()
                procs.append(proc)
                pipes.append(parent)
            _round(pipes, max(counts), "lock", max(counts) * 2)  # warm every process up
            rounds: dict[tuple[int, str], list[dict]] = {}
            for clients in counts:
                for rep in range(args.reps):
                    order = MODES if rep % 2 == 0 else MODES[::-1]
                    for mode in order:
                        rounds.setdefault((clients, mode), []).append(
                            _round(pipes, clients, mode, args.total)
                        )
            for pipe in pipes:
                pipe.send(None)
            for proc in procs:
                proc.join(10)
        finally:
            for proc in procs:
                if proc.is_alive():
                    proc.kill()

    rows = []
    for clients in counts:
        lock, snap = rounds[(clients, "lock")], rounds[(clients, "snapshot")]
        ratios = [s["throughput"] / lk["throughput"] for s, lk in zip(snap, lock, strict=True)]
        row = {"clients": clients, "ratio": statistics.median(ratios)}
        for mode, rs in (("lock", lock), ("snapshot", snap)):
            row[mode] = {
                k: statistics.median(r[k] for r in rs) for k in ("throughput", "p50", "p95")
            }
        rows.append(row)
    print(
        f"single broadcast, {args.total} per round, medians of {args.reps}, {os.cpu_count()} CPUs"
    )
    print(
        f"{'clients':>7} | {'lock/s':>8} {'p50':>6} {'p95':>6} | {'snap/s':>8} {'p50':>6} {'p95':>6} | snap/lock"
    )
    for r in rows:
        lk, sn = r["lock"], r["snapshot"]
        print(
            f"{r['clients']:>7} | {lk['throughput']:>8.0f} {lk['p50']:>6.1f} {lk['p95']:>6.1f} | "
            f"{sn['throughput']:>8.0f} {sn['p50']:>6.1f} {sn['p95']:>6.1f} | {r['ratio']:.2f}x"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    if args.svg:
        Path(args.svg).write_text(svg(rows))
    return 0


def svg(rows: list[dict]) -> str:
    """A line chart of throughput against clients (log2 x axis), one line per mode."""
    w, h, left, right, top, bottom = 560, 320, 60, 130, 30, 45
    ymax = max(r[m]["throughput"] for r in rows for m in MODES) * 1.1
    xs = [r["clients"] for r in rows]

    def x(c):
        import math

        return left + (w - left - right) * math.log2(c) / math.log2(max(xs))

    def y(v):
        return top + (h - top - bottom) * (1 - v / ymax)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
        f'font-family="sans-serif" font-size="12">',
        f'<rect width="{w}" height="{h}" fill="white"/>',
        f'<text x="{left}" y="18" font-size="13">single broadcast throughput (items/s), PostgreSQL</text>',
    ]
    for i in range(6):
        v = ymax * i / 5
        out.append(
            f'<line x1="{left}" x2="{w - right}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#ddd"/>'
        )
        out.append(f'<text x="{left - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{v:.0f}</text>')
    for c in xs:
        out.append(f'<text x="{x(c):.1f}" y="{h - bottom + 18}" text-anchor="middle">{c}</text>')
    out.append(
        f'<text x="{(left + w - right) / 2}" y="{h - 8}" text-anchor="middle">clients</text>'
    )
    colors = {"lock": "#c0392b", "snapshot": "#2471a3"}
    labels = {"lock": "tail lock", "snapshot": "snapshot horizon"}
    for k, mode in enumerate(MODES):
        pts = " ".join(f"{x(r['clients']):.1f},{y(r[mode]['throughput']):.1f}" for r in rows)
        out.append(
            f'<polyline points="{pts}" fill="none" stroke="{colors[mode]}" stroke-width="2"/>'
        )
        for r in rows:
            out.append(
                f'<circle cx="{x(r["clients"]):.1f}" cy="{y(r[mode]["throughput"]):.1f}" r="3" '
                f'fill="{colors[mode]}"/>'
            )
        ly = top + 20 + 20 * k
        out.append(
            f'<line x1="{w - right + 10}" x2="{w - right + 30}" y1="{ly}" y2="{ly}" stroke="{colors[mode]}" stroke-width="2"/>'
        )
        out.append(f'<text x="{w - right + 35}" y="{ly + 4}">{labels[mode]}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    sys.exit(main())

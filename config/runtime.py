"""The web process's garbage collector (docs/performance.md, "Bulk ingest at 1M").

A bulk broadcast of 500 items allocates a few hundred thousand container objects, nearly
all freed by reference counting; with Python's defaults the cyclic collector still ran
~18 young collections and, every few bulks, a full one that walked every object of the
process, Django's own included (~160,000 of them), several times per second under load.
``tune_gc`` runs once, at the end of startup (``config/asgi.py``): ``gc.freeze()`` moves what
startup built to the permanent generation (never walked again, never freed: it lives as
long as the process anyway), and a larger first threshold collects the youngest
generation less often. In-process, CPU per bulk of 500: 0.87x with the freeze, ~0.82x with
both (docs/performance.md).
"""

from __future__ import annotations

import gc

from config.product import product_settings


def tune_gc() -> None:
    """Apply ``gc_gen0_threshold`` and ``gc_freeze`` (product settings) to this process."""
    cfg = product_settings()
    if cfg.gc_gen0_threshold > 0:
        _, gen1, gen2 = gc.get_threshold()
        gc.set_threshold(cfg.gc_gen0_threshold, gen1, gen2)
    if cfg.gc_freeze:
        gc.collect()
        gc.freeze()

"""The benchmark suite (``make bench``): seeds PostgreSQL, serves the real ASGI app with
daphne, measures every operation through HTTP against baselines. See docs/performance.md."""

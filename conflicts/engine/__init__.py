"""Django-independent conflict engine: detection, strategies, trust, and the accuracy bench.

Modules: ``candidates`` (Trust, Candidate, Proposal), ``strategies`` (Strategy and the
registry ``get_strategy``), ``trust`` (Beta-posterior updates), ``detection`` (``classify``),
``independence`` (copy suspicion), ``scenarios`` (seeded benchmark events with truth),
``simulation`` (in-memory service), ``scoring`` (metrics of any run), ``bench`` (CLI).
Nothing here imports Django.
"""

# The calibrated truth-discovery strategy (``truth``) builds on ``strategies.posterior`` and
# registers itself with ``strategies.register`` when imported: importing any engine module
# runs this package first, so ``get_strategy("truth")`` always finds it.
from . import truth as _truth  # noqa: E402,F401

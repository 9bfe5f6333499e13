"""Domain engine of the five built-in workers: pure Python, deterministic, no Django, no network.

Every function takes plain data (dicts, dataclasses) and returns plain data; knowledge to
broadcast comes out as :class:`~.knowledge.Draft` (type, payload, confidence, urgency) whose
payloads meet ``/work/notes/types.md``. Received knowledge goes in as any iterable of drafts or
exchange item dicts (``{"knowledge_type", "payload", "confidence", "freshness", ...}``).

Pipeline, per analysed commit::

    Analysis -> Dream -> Recall -> Think -> (later commit) Learning
        ^                                                     |
        +---------------- learned_pattern, ... ---------------+

Analysis  (:mod:`.analysis`, :mod:`.metrics`, :mod:`.rules`, :mod:`.gitrepo`)
    consumes a git commit (``Analyzer.analyze_commit``) and ``learned_pattern`` items
    (``Rules.retune``); produces a :class:`~.analysis.Snapshot` and ``issue_pattern``
    (``issue_patterns``) and ``complexity_trend`` (``complexity_trends``) drafts.
Dream     (:mod:`.dream`)
    consumes issues (Snapshot issues or ``issue_pattern`` payloads) and ``proposal_quality``,
    ``successful_fix``, ``learned_pattern``, ``complexity_trend`` items; produces ranked
    :class:`~.dream.Proposal` objects (``propose``) and ``proposal_quality`` drafts.
Recall    (:mod:`.recall`)
    consumes proposals, ``GitRepo.file_stats`` and ``successful_fix``/``learned_pattern``/
    ``context_enrichment`` items; produces :class:`~.recall.Context` per proposal,
    ``context_enrichment`` and ``knowledge_retrieval`` drafts.
Think     (:mod:`.think`)
    consumes proposals, contexts and ``learned_pattern``, ``issue_pattern``, ``successful_fix``,
    ``proposal_quality``, ``risk_pattern``, ``context_enrichment`` items; produces
    :class:`~.think.Assessment` (decision + predicted success), ``decision_outcome`` and
    ``risk_pattern`` drafts.
Learning  (:mod:`.learning`, :mod:`.calibration`)
    consumes the snapshots of commits k and k+1 (and optionally the changed files and context
    buckets); produces :class:`~.learning.Outcome` per issue, ``successful_fix``,
    ``learned_pattern`` (``FixRates``) and ``pattern_evolution`` drafts, and scores predictions
    (Brier score, accuracy, calibration bins).

:mod:`.replay` runs the whole loop over a repository's history in memory, with and without
knowledge exchange, and reports the Brier score of Think's predictions in both modes.
"""

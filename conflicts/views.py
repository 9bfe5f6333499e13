"""Server-rendered review pages under ``/dashboard/conflicts/`` (staff only).

The queue reuses ``ConflictFilterSet``; the resolve form calls ``actions.do_resolve``, the
same action as the API and the admin.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.db.models import Prefetch
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods

from conflicts import actions
from conflicts.choices import ConflictStatus, Decision
from conflicts.evidence import conflict_evidence
from conflicts.filtersets import ConflictFilterSet
from conflicts.models import Conflict, ConflictItem, Resolution
from conflicts.stats import stats_section
from knowledge.errors import ActionError

PAGE = 50


def _before(request) -> int | None:
    try:
        return int(request.GET["before"])
    except (KeyError, ValueError):
        return None


@staff_member_required
def queue(request):
    params = request.GET.copy()
    if "status" not in params and not request.GET.get("all"):
        params.setlist("status", [ConflictStatus.OPEN, ConflictStatus.PENDING_REVIEW])
    links = ConflictItem.objects.select_related("item__source").order_by("id")
    base = Conflict.objects.prefetch_related(Prefetch("links", queryset=links)).order_by("-id")
    fs = ConflictFilterSet(params, queryset=base)
    if not fs.is_valid():  # a bad value is said, not silently ignored
        return render(
            request,
            "conflicts/list.html",
            {"filter": fs, "conflicts": [], "summary": stats_section(), "invalid": True},
            status=400,
        )
    rows = fs.qs
    before = _before(request)
    if before:
        rows = rows.filter(pk__lt=before)
    page = list(rows[: PAGE + 1])
    more = page[PAGE].pk + 1 if len(page) > PAGE else None
    page = page[:PAGE]
    for c in page:
        c.workers = sorted({link.item.source.name for link in c.links.all()})
    next_query = None
    if more:
        q = params.copy()
        q["before"] = page[-1].pk
        next_query = q.urlencode()
    return render(
        request,
        "conflicts/list.html",
        {"filter": fs, "conflicts": page, "next_query": next_query, "summary": stats_section()},
    )


#: Decisions that throw away every claim or the conflict itself: a confirm step first.
CONFIRM_DECISIONS = {
    Decision.REJECT: "Reject every claim: all of its active items are superseded.",
    Decision.DISMISS: "Dismiss: it is not a real conflict; nothing is superseded and no "
    "worker's trust changes.",
}


def _done_message(conflict: Conflict) -> str:
    said = {
        Decision.PICK: f"“{conflict.decided_claim}” picked as the right claim",
        Decision.ACCEPT: f"the engine's proposal “{conflict.decided_claim}” accepted",
        Decision.REJECT: "every claim rejected",
        Decision.DISMISS: "dismissed as not a real conflict",
    }.get(conflict.decision, conflict.get_decision_display())
    return f"Conflict #{conflict.pk}: {said}."


def next_in_queue(after: Conflict) -> Conflict | None:
    """The next conflict waiting for a person, in the queue's order (newest first)."""
    waiting = Conflict.objects.unsettled().exclude(pk=after.pk).order_by("-id")
    return waiting.filter(pk__lt=after.pk).first() or waiting.first()


@staff_member_required
@require_http_methods(["GET", "POST"])
def detail(request, pk: int):
    conflict = get_object_or_404(
        Conflict.objects.select_related("flagged_by", "decided_by_user"), pk=pk
    )
    evidence = conflict_evidence(conflict)
    if request.method == "POST":
        decision = request.POST.get("decision", "")
        winner = request.POST.get("winner_item") or None
        version = request.POST.get("version") or None
        note = request.POST.get("note", "")[:2000]
        if decision in CONFIRM_DECISIONS and request.POST.get("confirmed") != "yes":
            return render(
                request,
                "conflicts/confirm.html",
                {
                    "conflict": conflict,
                    "decision": decision,
                    "consequence": CONFIRM_DECISIONS[decision],
                    "version": version,
                    "note": note,
                    "active_items": [r for r in evidence if r["item"]["status"] == "active"],
                },
            )
        try:
            decided = actions.do_resolve(
                conflict.pk,
                decision,
                user=request.user,
                winner_item_id=int(winner) if winner else None,
                note=note,
                version=int(version) if version else None,
            )
        except ActionError as exc:
            messages.error(request, exc.message)
        except ValueError:
            messages.error(
                request,
                "The form was damaged (the winner or version is not a number): reload the page.",
            )
        else:
            messages.success(request, _done_message(decided))
        return redirect("conflicts:detail", pk=conflict.pk)
    return render(
        request,
        "conflicts/detail.html",
        {
            "conflict": conflict,
            "evidence": evidence,
            "resolutions": conflict.resolutions.order_by("id"),
            "active_items": [r for r in evidence if r["item"]["status"] == "active"],
            "next": next_in_queue(conflict),
        },
    )


@staff_member_required
def history(request):
    rows = Resolution.objects.select_related("conflict").order_by("-id")
    before = _before(request)
    if before:
        rows = rows.filter(pk__lt=before)
    page = list(rows[: PAGE + 1])
    next_before = page[PAGE - 1].pk if len(page) > PAGE else None
    return render(
        request,
        "conflicts/history.html",
        {"resolutions": page[:PAGE], "next_before": next_before},
    )

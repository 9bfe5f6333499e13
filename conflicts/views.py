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


@staff_member_required
@require_http_methods(["GET", "POST"])
def detail(request, pk: int):
    conflict = get_object_or_404(
        Conflict.objects.select_related("flagged_by", "decided_by_user"), pk=pk
    )
    if request.method == "POST":
        decision = request.POST.get("decision", "")
        winner = request.POST.get("winner_item") or None
        version = request.POST.get("version") or None
        try:
            actions.do_resolve(
                conflict.pk,
                decision,
                user=request.user,
                winner_item_id=int(winner) if winner else None,
                note=request.POST.get("note", "")[:2000],
                version=int(version) if version else None,
            )
        except ActionError as exc:
            messages.error(request, exc.message)
        except ValueError:
            messages.error(request, "winner_item and version must be numbers")
        else:
            messages.success(request, f"Conflict {conflict.pk}: {decision} recorded.")
        return redirect("conflicts:detail", pk=conflict.pk)
    evidence = conflict_evidence(conflict)
    return render(
        request,
        "conflicts/detail.html",
        {
            "conflict": conflict,
            "evidence": evidence,
            "resolutions": conflict.resolutions.order_by("id"),
            "decisions": [Decision.PICK, Decision.ACCEPT, Decision.REJECT, Decision.DISMISS],
            "active_items": [r for r in evidence if r["item"]["status"] == "active"],
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

from django.apps import AppConfig


class ConflictsConfig(AppConfig):
    name = "conflicts"
    verbose_name = "Conflicts"

    def ready(self) -> None:
        from conflicts import stats
        from conflicts.actions import detect_conflicts
        from dashboard import alerts
        from dashboard.metrics import EXTRA_COLLECTORS
        from knowledge import hooks
        from knowledge.stats_hooks import register

        # The one way conflicts enters the broadcast transaction (knowledge/hooks.py).
        hooks.connect_items_stored(detect_conflicts)
        register("conflicts", stats.stats_section)
        alerts.register("unresolved_conflicts", stats.unresolved_conflicts_alert)
        if stats.collect_metrics not in EXTRA_COLLECTORS:
            EXTRA_COLLECTORS.append(stats.collect_metrics)

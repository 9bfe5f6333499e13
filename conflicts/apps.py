from django.apps import AppConfig


class ConflictsConfig(AppConfig):
    name = "conflicts"
    verbose_name = "Conflicts"

    def ready(self) -> None:
        from conflicts import stats
        from dashboard import alerts
        from dashboard.metrics import EXTRA_COLLECTORS
        from knowledge.stats_hooks import register

        register("conflicts", stats.stats_section, per_viewer=True)
        alerts.register("unresolved_conflicts", stats.unresolved_conflicts_alert)
        if stats.collect_metrics not in EXTRA_COLLECTORS:
            EXTRA_COLLECTORS.append(stats.collect_metrics)

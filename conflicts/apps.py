from django.apps import AppConfig


class ConflictsConfig(AppConfig):
    name = "conflicts"
    verbose_name = "Conflicts"

    def ready(self) -> None:
        from conflicts import stats
        from dashboard.metrics import EXTRA_COLLECTORS
        from knowledge.stats_hooks import register

        register("conflicts", stats.stats_section)
        if stats.collect_metrics not in EXTRA_COLLECTORS:
            EXTRA_COLLECTORS.append(stats.collect_metrics)

from django.apps import AppConfig


class ConflictsConfig(AppConfig):
    name = "conflicts"
    verbose_name = "Conflicts"

    def ready(self) -> None:
        # The dashboard pulls conflict statistics (alerts, /metrics) itself: conflicts knows
        # nothing of the layer above it.
        from conflicts import stats
        from knowledge.stats_hooks import register

        register("conflicts", stats.stats_section, per_viewer=True)

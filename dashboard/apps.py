from django.apps import AppConfig


class DashboardConfig(AppConfig):
    name = "dashboard"
    verbose_name = "Dashboard"

    def ready(self):
        from conflicts import stats as conflict_stats
        from dashboard import alerts, metrics, realtime
        from knowledge import stats_hooks

        stats_hooks.register("realtime", realtime.stats_section)
        for provider in (
            alerts.alert_metrics,
            conflict_stats.collect_metrics,
            realtime.collect_metrics,
        ):
            if provider not in metrics.EXTRA_COLLECTORS:
                metrics.EXTRA_COLLECTORS.append(provider)

from django.apps import AppConfig


class DashboardConfig(AppConfig):
    name = "dashboard"
    verbose_name = "Dashboard"

    def ready(self):
        from dashboard import metrics, realtime
        from knowledge import stats_hooks

        stats_hooks.register("realtime", realtime.stats_section)
        if realtime.collect_metrics not in metrics.EXTRA_COLLECTORS:
            metrics.EXTRA_COLLECTORS.append(realtime.collect_metrics)

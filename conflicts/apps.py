from django.apps import AppConfig


class ConflictsConfig(AppConfig):
    name = "conflicts"
    verbose_name = "Conflicts"

    def ready(self) -> None:
        # The dashboard pulls conflict statistics (alerts, /metrics) itself: conflicts knows
        # nothing of the layer above it.
        from conflicts import stats
        from conflicts.actions import detect_conflicts
        from knowledge import hooks
        from knowledge.stats_hooks import register

        # The one way conflicts enters the broadcast transaction (knowledge/hooks.py).
        hooks.connect_items_stored(detect_conflicts)
        register("conflicts", stats.stats_section, per_viewer=True)

        from conflicts.contested import TYPES_KEY, contested_item_ids, contested_marks
        from knowledge.item_hooks import register_contested

        register_contested(contested_marks, contested_item_ids, cache_keys=(TYPES_KEY,))

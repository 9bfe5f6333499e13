from django.apps import AppConfig


class KnowledgeConfig(AppConfig):
    name = "knowledge"
    verbose_name = "Knowledge"

    def ready(self):
        # Registers the after-commit hook that wakes this process's relay and publishes one
        # wake message on the Redis channel layer, in every process that publishes events.
        from knowledge import relay  # noqa: F401

from django.apps import AppConfig


class IdentityConfig(AppConfig):
    """Who is calling: worker identities, their tokens, token authentication, permissions."""

    name = "identity"
    verbose_name = "Identity"

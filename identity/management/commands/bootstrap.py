"""Prepare an embedded installation: built-in workers, an admin account, tokens file."""

import json
import secrets
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from identity.actions import do_ensure_builtin_workers, do_rotate_token


class Command(BaseCommand):
    help = (
        "Create the five built-in workers and an admin account if missing. New credentials are "
        "printed once; worker tokens are also kept in .credentials.json (mode 600) for the local "
        "worker runner."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--credentials", default=str(Path(settings.BASE_DIR) / ".credentials.json")
        )

    def handle(self, credentials, **options):
        path = Path(credentials)
        saved = json.loads(path.read_text()) if path.exists() else {}
        tokens = saved.get("workers", {})
        for worker, token in do_ensure_builtin_workers():
            if token is None and worker.name not in tokens:
                token = do_rotate_token(worker)  # lost token: issue a new one for the runner
            if token is not None:
                tokens[worker.name] = token
                self.stdout.write(f"worker {worker.name}: token {token}")
        User = get_user_model()
        if not User.objects.filter(is_superuser=True).exists():
            password = secrets.token_urlsafe(12)
            User.objects.create_superuser("admin", "admin@localhost", password)
            self.stdout.write(self.style.WARNING(f"admin account: admin / {password} (shown once)"))
        saved = {"workers": tokens}
        path.write_text(json.dumps(saved, indent=2))
        path.chmod(0o600)

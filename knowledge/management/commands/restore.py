"""``manage.py restore PATH --yes``: replace the database with a backup; a new log epoch."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from knowledge.backup import BackupError, restore_database


class Command(BaseCommand):
    help = (
        "Restore a backup made by `manage.py backup` over the configured database. The event "
        "log starts a new epoch: live clients and inboxes are told recovered: false and re-sync."
    )

    def add_arguments(self, parser):
        parser.add_argument("path")
        parser.add_argument("--yes", action="store_true", help="confirm: current data is replaced")

    def handle(self, path, yes, **options):
        if not yes:
            raise CommandError("restore replaces every row of the database; pass --yes to confirm")
        try:
            state = restore_database(path)
        except BackupError as exc:
            raise CommandError(str(exc))
        self.stdout.write(
            f"restored {path}; event log epoch {state.epoch}, horizon {state.pruned_through}"
        )

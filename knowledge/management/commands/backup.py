"""``manage.py backup PATH``: a consistent copy of the configured database (knowledge/backup.py)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from knowledge.backup import BackupError, backup_database


class Command(BaseCommand):
    help = "Back up the database: pg_dump (PostgreSQL) or SQLite's online backup API (embedded)."

    def add_arguments(self, parser):
        parser.add_argument("path", help="file to write (mode 600)")

    def handle(self, path, **options):
        try:
            written = backup_database(path)
        except BackupError as exc:
            raise CommandError(str(exc))
        self.stdout.write(f"backup written to {written} ({written.stat().st_size:,} bytes)")

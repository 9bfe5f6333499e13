from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from identity.actions import do_create_worker, do_rotate_token
from identity.choices import WorkerKind
from identity.models import Worker


class Command(BaseCommand):
    help = "Create a worker identity and print its token (shown once)."

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument("--kind", choices=WorkerKind.values, default=None)
        parser.add_argument("--description", default="")
        parser.add_argument(
            "--rotate", action="store_true", help="If the worker exists, give it a new token."
        )

    def handle(self, name, kind, description, rotate, **options):
        existing = Worker.objects.filter(name=name).first()
        if existing is not None:
            if not rotate:
                raise CommandError(f"worker {name!r} exists; pass --rotate for a new token")
            token = do_rotate_token(existing)
        else:
            try:
                _, token = do_create_worker(name, kind, description)
            except ValidationError as exc:
                raise CommandError("; ".join(f"{k}: {v[0]}" for k, v in exc.message_dict.items()))
        self.stdout.write(token)

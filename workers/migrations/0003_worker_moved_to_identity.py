"""Worker moved to the identity app (identity/migrations/0001_initial.py): forget it here."""

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('conflicts', '0002_worker_moved_to_identity'),
        ('knowledge', '0004_worker_moved_to_identity'),
        ('workers', '0002_project'),
    ]

    operations = [
        # State only: the table keeps its name and its rows; only Django's idea of which app
        # owns the model changes (docs/architecture.md, "What moved where").
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.DeleteModel(
                    name='Worker',
                ),
            ],
            database_operations=[],
        ),
    ]

"""Worker, moved here from the workers app. State only: the table ``workers_worker`` stays."""

import django.core.validators
from django.db import migrations, models


def _relabel(apps, old: str, new: str) -> None:
    # Permissions and admin log entries hang on the content type: relabel it, keep its id.
    ContentType = apps.get_model("contenttypes", "ContentType")
    if not ContentType.objects.filter(app_label=new, model="worker").exists():
        ContentType.objects.filter(app_label=old, model="worker").update(app_label=new)


def move_content_type(apps, schema_editor):
    _relabel(apps, "workers", "identity")


def move_content_type_back(apps, schema_editor):
    _relabel(apps, "identity", "workers")


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        # The table was created by the workers app's first migration.
        ("workers", "0002_project"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [
        # State only: the table keeps its name and its rows; only Django's idea of which app
        # owns the model changes (docs/architecture.md, "What moved where").
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name='Worker',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('name', models.CharField(max_length=64, unique=True, validators=[django.core.validators.RegexValidator('^[a-z0-9][a-z0-9_.-]*$', 'lower-case letters, digits, _ . -')])),
                        ('kind', models.CharField(choices=[('think', 'Think'), ('learning', 'Learning'), ('analysis', 'Analysis'), ('dream', 'Dream'), ('recall', 'Recall'), ('custom', 'Custom')], default='custom', max_length=16)),
                        ('description', models.CharField(blank=True, max_length=200)),
                        ('token_hash', models.CharField(editable=False, max_length=64, unique=True)),
                        ('token_prefix', models.CharField(blank=True, editable=False, max_length=16)),
                        ('is_active', models.BooleanField(default=True)),
                        ('trust_pin', models.FloatField(blank=True, help_text='Pinned trust 0..1 overriding the learned trust for every type.', null=True, validators=[django.core.validators.MinValueValidator(0.0), django.core.validators.MaxValueValidator(1.0)])),
                        ('state', models.JSONField(blank=True, default=dict)),
                        ('broadcast_count', models.PositiveBigIntegerField(default=0)),
                        ('received_count', models.PositiveBigIntegerField(default=0)),
                        ('created_at', models.DateTimeField(auto_now_add=True)),
                        ('last_seen_at', models.DateTimeField(blank=True, null=True)),
                    ],
                    options={
                        'db_table': 'workers_worker',
                        'ordering': ['name'],
                    },
                ),
            ],
            database_operations=[],
        ),
        migrations.RunPython(move_content_type, move_content_type_back, elidable=True),
    ]

"""Worker moved from the workers app to identity: point the foreign keys at identity.Worker."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('identity', '0001_initial'),
        ('knowledge', '0003_subject_trigram_index'),
    ]

    operations = [
        # State only: the table keeps its name and its rows; only Django's idea of which app
        # owns the model changes (docs/architecture.md, "What moved where").
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name='idempotencyrecord',
                    name='worker',
                    field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='idempotency_keys', to='identity.worker'),
                ),
                migrations.AlterField(
                    model_name='inboxcursor',
                    name='worker',
                    field=models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, primary_key=True, related_name='cursor', serialize=False, to='identity.worker'),
                ),
                migrations.AlterField(
                    model_name='knowledgeitem',
                    name='source',
                    field=models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='items', to='identity.worker'),
                ),
                migrations.AlterField(
                    model_name='knowledgetarget',
                    name='worker',
                    field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='targeted_links', to='identity.worker'),
                ),
                migrations.AlterField(
                    model_name='subscription',
                    name='worker',
                    field=models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, primary_key=True, related_name='subscription', serialize=False, to='identity.worker'),
                ),
                migrations.AlterField(
                    model_name='validationrecord',
                    name='validator',
                    field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.CASCADE, related_name='validations', to='identity.worker'),
                ),
            ],
            database_operations=[],
        ),
    ]

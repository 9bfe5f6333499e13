"""Worker moved from the workers app to identity: point the foreign keys at identity.Worker."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('conflicts', '0001_conflicts_trust_history'),
        ('identity', '0001_initial'),
    ]

    operations = [
        # State only: the table keeps its name and its rows; only Django's idea of which app
        # owns the model changes (docs/architecture.md, "What moved where").
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name='conflict',
                    name='flagged_by',
                    field=models.ForeignKey(blank=True, db_constraint=False, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='flagged_conflicts', to='identity.worker'),
                ),
                migrations.AlterField(
                    model_name='sourcetrust',
                    name='worker',
                    field=models.ForeignKey(db_constraint=False, on_delete=django.db.models.deletion.CASCADE, related_name='trust', to='identity.worker'),
                ),
            ],
            database_operations=[],
        ),
    ]

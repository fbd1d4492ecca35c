from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('core', '0003_metric_fold'),
    ]

    operations = [
        migrations.AddField(
            model_name='metricfold',
            name='folded_at',
            field=models.FloatField(blank=True, null=True),
        ),
    ]

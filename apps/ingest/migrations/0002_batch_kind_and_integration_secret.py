import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('ingest', '0001_initial'),
        ('tenants', '0003_tenant_max_plugins'),
    ]

    operations = [
        migrations.AddField(
            model_name='ingestbatch',
            name='kind',
            field=models.CharField(choices=[('logs', 'Log events'), ('alertmanager', 'Prometheus Alertmanager alerts'), ('grafana', 'Grafana alerts'), ('events', 'Generic events'), ('metrics', 'Metric samples')], default='logs', max_length=16),
        ),
        migrations.CreateModel(
            name='IntegrationSecret',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('kind', models.CharField(choices=[('grafana', 'Grafana')], max_length=16)),
                ('secret_encrypted', models.TextField()),
                ('header', models.CharField(default='X-Grafana-Alerting-Signature', help_text='Request header carrying hex(HMAC-SHA256(secret, ...))', max_length=100)),
                ('timestamp_header', models.CharField(blank=True, help_text="If set, the signature covers '<this header's value>:<body>' and the timestamp must be recent", max_length=100)),
                ('created_at', models.DateTimeField()),
                ('updated_at', models.DateTimeField()),
                ('tenant', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to='tenants.tenant')),
            ],
            options={
                'constraints': [models.UniqueConstraint(fields=('tenant', 'kind'), name='integrationsecret_tenant_kind')],
            },
        ),
    ]

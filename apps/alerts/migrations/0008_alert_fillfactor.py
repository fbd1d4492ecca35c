"""Room on each page of alerts, so rewriting an alert's delivery state is a HOT update.

A new alert is written once and then updated at least twice by delivery alone (its delivery
state: pending, then delivered). None of those columns is indexed, but with full pages each
update still went to another page and added an entry to all 17 indexes of the table, the two
trigram GIN indexes of title and summary among them (bench/storm.py: 72% of alert updates were
not HOT). With 30% of each page free, such an update stays on its page and touches no index.
PostgreSQL only (SQLite has no fillfactor); existing pages keep their layout until rewritten.
"""
from django.db import migrations

from apps.core.schema_ops import set_fillfactor


class Migration(migrations.Migration):

    dependencies = [
        ('alerts', '0007_opened_count'),
    ]

    operations = [
        set_fillfactor("alerts_alert", 70, previous=85),  # 0006 set 85
    ]

"""Half of each page of alerts free (was 30 %), so every delivery-state rewrite of a new alert is HOT.

A storm writes its new alerts page by page in one COPY (~9 per page at fillfactor 70), and their
first delivery report rewrites them a moment later, often several in one transaction. Before the
earlier versions can be pruned, the page needs room for a second copy of each row it rewrites: at
70 only about half of those updates (46 %) found it, and each of the others went to another page
and added an entry to all 16 indexes, the two trigram GIN indexes among them. At 50 all of them
stayed HOT (bench/storm.py, N = 10,000: 10,800 of 10,800), and PostgreSQL wrote 11 % less WAL per
alert (16.0 -> 14.2 KiB). The heap takes more pages; the indexes no longer bloat with the second
entries. PostgreSQL only (SQLite has no fillfactor); existing pages keep their layout until rewritten.
"""
from django.db import migrations

from apps.core.schema_ops import set_fillfactor


class Migration(migrations.Migration):

    dependencies = [
        ('alerts', '0009_lean_indexes'),
    ]

    operations = [
        set_fillfactor("alerts_alert", 50, previous=70),
    ]

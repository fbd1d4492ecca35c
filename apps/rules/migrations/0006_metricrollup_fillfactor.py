"""Leave 30% of each MetricRollup page free so intake's per-minute upserts are HOT updates.

Every scrape rewrites its series' rows of the current minute (``ON CONFLICT DO UPDATE``). On full
pages each new row version is written elsewhere and all four indexes get a new entry; with room on
the page PostgreSQL updates in place of the index entries (HOT), none of the updated columns being
indexed. Measured with bench/metrics.py's 5,000-series bodies: 1% -> 89% HOT updates, the upsert
from ~100 to ~50-70 ms of PostgreSQL time per request. Cost: rollup pages ~1.4x larger.
PostgreSQL only (SQLite has no fillfactor); existing pages keep their layout until rewritten.
"""
from django.db import migrations

from apps.core.schema_ops import set_fillfactor


class Migration(migrations.Migration):
    dependencies = [("rules", "0005_log_rates")]

    operations = [set_fillfactor("rules_metricrollup", 70)]

"""Window rows: no index on ``updated_at``, and room on each page, so the engine's rewrite of a
window (state, updated_at) is a HOT update.

The engine rewrites every window it counts, once per batch. ``window_state_updated`` indexed the
one column that changes every time and nothing reads by it, so each rewrite was a new row version
elsewhere plus a new entry in all six indexes. Without it, and with 20% of each page free, a
rewrite that keeps the window's alert stays on its page and touches no index. PostgreSQL only for
the fillfactor (SQLite has none); existing pages keep their layout until rewritten.
"""
from django.db import migrations

from apps.core.schema_ops import set_fillfactor


class Migration(migrations.Migration):

    dependencies = [
        ('rules', '0006_metricrollup_fillfactor'),
    ]

    operations = [
        migrations.RemoveIndex(
            model_name='windowstate',
            name='window_state_updated',
        ),
        set_fillfactor("rules_windowstate", 80),
    ]

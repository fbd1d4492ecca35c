"""PluginCount, kept by triggers on the plugin table (see the model), and filled from the plugins
there are. PostgreSQL: statement triggers over transition tables, one upsert per statement whatever
its size, tenants in id order; SQLite (the embedded default): row triggers."""

import django.db.models.deletion
from django.db import migrations, models

POSTGRESQL = """
SET LOCAL lock_timeout = '10s';  -- waits this long for open plugin writers, not forever with intake queued
LOCK TABLE tenants_plugin IN SHARE MODE;
CREATE FUNCTION tenants_plugin_added() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO tenants_plugincount (tenant_id, n)
    SELECT tenant_id, count(*) FROM added GROUP BY tenant_id ORDER BY tenant_id
    ON CONFLICT (tenant_id) DO UPDATE SET n = tenants_plugincount.n + excluded.n;
    RETURN NULL;
END $$;
CREATE FUNCTION tenants_plugin_removed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Locked in tenant order first, as the upserts lock: a delete across tenants cannot deadlock them.
    PERFORM 1 FROM tenants_plugincount WHERE tenant_id IN (SELECT tenant_id FROM removed)
        ORDER BY tenant_id FOR UPDATE;
    UPDATE tenants_plugincount AS c SET n = c.n - r.k
    FROM (SELECT tenant_id, count(*) AS k FROM removed GROUP BY tenant_id) AS r WHERE c.tenant_id = r.tenant_id;
    RETURN NULL;
END $$;
CREATE FUNCTION tenants_plugin_moved() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Each moved plugin: +1 to its new tenant, -1 to its old one.
    INSERT INTO tenants_plugincount (tenant_id, n)
    SELECT d.tenant_id, sum(d.k) FROM removed o JOIN added n ON n.id = o.id
        CROSS JOIN LATERAL (VALUES (n.tenant_id, 1), (o.tenant_id, -1)) AS d(tenant_id, k)
    WHERE n.tenant_id <> o.tenant_id GROUP BY d.tenant_id ORDER BY d.tenant_id
    ON CONFLICT (tenant_id) DO UPDATE SET n = tenants_plugincount.n + excluded.n;
    RETURN NULL;
END $$;
CREATE TRIGGER tenants_plugin_count_insert AFTER INSERT ON tenants_plugin
    REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION tenants_plugin_added();
CREATE TRIGGER tenants_plugin_count_delete AFTER DELETE ON tenants_plugin
    REFERENCING OLD TABLE AS removed FOR EACH STATEMENT EXECUTE FUNCTION tenants_plugin_removed();
CREATE TRIGGER tenants_plugin_count_update AFTER UPDATE ON tenants_plugin
    REFERENCING OLD TABLE AS removed NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION tenants_plugin_moved();
INSERT INTO tenants_plugincount (tenant_id, n) SELECT tenant_id, count(*) FROM tenants_plugin GROUP BY tenant_id;
"""

POSTGRESQL_REVERSE = """
DROP TRIGGER tenants_plugin_count_insert ON tenants_plugin;
DROP TRIGGER tenants_plugin_count_delete ON tenants_plugin;
DROP TRIGGER tenants_plugin_count_update ON tenants_plugin;
DROP FUNCTION tenants_plugin_added();
DROP FUNCTION tenants_plugin_removed();
DROP FUNCTION tenants_plugin_moved();
"""

SQLITE = [
    """CREATE TRIGGER tenants_plugin_count_insert AFTER INSERT ON tenants_plugin BEGIN
        INSERT INTO tenants_plugincount (tenant_id, n) VALUES (NEW.tenant_id, 1)
        ON CONFLICT (tenant_id) DO UPDATE SET n = n + 1;
    END""",
    """CREATE TRIGGER tenants_plugin_count_delete AFTER DELETE ON tenants_plugin BEGIN
        UPDATE tenants_plugincount SET n = n - 1 WHERE tenant_id = OLD.tenant_id;
    END""",
    """CREATE TRIGGER tenants_plugin_count_update AFTER UPDATE OF tenant_id ON tenants_plugin
        WHEN NEW.tenant_id <> OLD.tenant_id BEGIN
        UPDATE tenants_plugincount SET n = n - 1 WHERE tenant_id = OLD.tenant_id;
        INSERT INTO tenants_plugincount (tenant_id, n) VALUES (NEW.tenant_id, 1)
        ON CONFLICT (tenant_id) DO UPDATE SET n = n + 1;
    END""",
    "INSERT INTO tenants_plugincount (tenant_id, n) SELECT tenant_id, count(*) FROM tenants_plugin GROUP BY tenant_id",
]

SQLITE_REVERSE = [f"DROP TRIGGER tenants_plugin_count_{op}" for op in ("insert", "delete", "update")]


def _run(statements: dict):
    def run(apps, schema_editor):
        sql = statements.get(schema_editor.connection.vendor)
        if sql is None:
            raise NotImplementedError(f"plugin count triggers for {schema_editor.connection.vendor}")
        for statement in [sql] if isinstance(sql, str) else sql:
            schema_editor.execute(statement, params=None)
    return run


class Migration(migrations.Migration):

    dependencies = [
        ('tenants', '0005_drop_covered_plugin_tenant_index'),
    ]

    operations = [
        migrations.CreateModel(
            name='PluginCount',
            fields=[
                ('tenant', models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, primary_key=True, related_name='+', serialize=False, to='tenants.tenant')),
                ('n', models.IntegerField(default=0)),
            ],
        ),
        migrations.RunPython(_run({"postgresql": POSTGRESQL, "sqlite": SQLITE}),
                             _run({"postgresql": POSTGRESQL_REVERSE, "sqlite": SQLITE_REVERSE})),
    ]

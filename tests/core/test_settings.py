"""Bad or missing settings stop the process at start with a message naming the variable."""
import os
import subprocess
import sys

import pytest
from django.conf import settings

SETUP = "import django; django.setup(); print('ok')"


def start(**env_overrides):
    env = {k: v for k, v in os.environ.items()}
    env.update({"DEBUG": "0", "SECRET_KEY": "k" * 40})
    for key, value in env_overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    env["DJANGO_SETTINGS_MODULE"] = "alertcenter.settings"
    return subprocess.run([sys.executable, "-c", SETUP], cwd=settings.BASE_DIR, env=env,
                          capture_output=True, text=True, timeout=60)


def test_good_settings_start():
    result = start()
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


@pytest.mark.parametrize(
    "name,value,expected",
    [
        ("SECRET_KEY", None, "SECRET_KEY: not set"),
        ("DATABASE_URL", "mysql://root@localhost/x", "DATABASE_URL: unsupported URL"),
        ("CELERY_BROKER_URL", "kafka://x", "CELERY_BROKER_URL: unsupported URL"),
        ("REDIS_URL", "localhost:6379", "REDIS_URL: expected redis://"),
        ("INGEST_MAX_BYTES", "lots", "INGEST_MAX_BYTES: invalid value 'lots'"),
        ("INGEST_MAX_EVENTS", "0", "INGEST_MAX_EVENTS: must be a positive integer"),
        ("WEBHOOK_ALLOWED_NETWORKS", "10.0.0.0/33", "WEBHOOK_ALLOWED_NETWORKS:"),
        ("DEBUG", "maybe", "DEBUG: invalid value 'maybe'"),
        ("LOG_LEVEL", "LOUD", "LOG_LEVEL: expected"),
    ],
)
def test_bad_setting_fails_naming_the_variable(name, value, expected):
    result = start(**{name: value})
    assert result.returncode != 0
    assert expected in result.stderr, result.stderr[-2000:]

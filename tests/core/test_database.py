import pytest
from django.db import connection


@pytest.mark.django_db
def test_suite_runs_on_postgresql():
    # `make test` must exercise the production database, not the embedded SQLite default.
    assert connection.vendor == "postgresql"
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version_num")
        assert int(cursor.fetchone()[0]) >= 130000

import io
import subprocess
import sys

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command

from apps.tenants.models import FallbackContact, Tenant
from apps.tenants.tokens import authenticate_token

pytestmark = pytest.mark.django_db


def run(*args, stdin: str = "") -> str:
    out = io.StringIO()
    old_stdin = sys.stdin
    sys.stdin = io.StringIO(stdin)
    try:
        call_command(*args, stdout=out, stderr=io.StringIO())
    finally:
        sys.stdin = old_stdin
    return out.getvalue().strip()


def test_create_tenant_prints_slug_and_is_idempotent():
    assert run("create_tenant", "acme", "--name", "Acme Corp") == "acme"
    assert run("create_tenant", "acme") == "acme"
    assert Tenant.objects.get(slug="acme").name == "Acme Corp"
    with pytest.raises(CommandError, match="slug 'Bad Slug'"):
        run("create_tenant", "Bad Slug")


def test_issue_token_prints_a_working_token(tenant):
    plain = run("issue_token", "--tenant", "acme", "--scopes", "logs:write,alerts:read")
    token = authenticate_token(plain)
    assert token.tenant == tenant and token.scopes == ["alerts:read", "logs:write"]
    platform = authenticate_token(run("issue_token", "--platform", "--scopes", "alerts:read"))
    assert platform.tenant is None
    with pytest.raises(CommandError, match="unknown scope"):
        run("issue_token", "--tenant", "acme", "--scopes", "logs:read")
    with pytest.raises(CommandError, match="tenant 'nope' does not exist"):
        run("issue_token", "--tenant", "nope", "--scopes", "logs:write")


def test_create_operator_reads_password_from_stdin():
    assert run("create_operator", "alice", "--password-stdin", "--group", "governance", stdin="a-long-passphrase\n") == "alice"
    user = get_user_model().objects.get(username="alice")
    assert user.check_password("a-long-passphrase")
    assert list(user.groups.values_list("name", flat=True)) == ["governance"]
    with pytest.raises(CommandError, match="password"):
        run("create_operator", "bob", "--password-stdin", stdin="short\n")


def test_commands_work_as_black_box_processes(tenant):
    # What operators type: prints exactly the value on stdout.
    env_cmd = [sys.executable, "manage.py"]
    from tests.support.processes import child_env

    result = subprocess.run(env_cmd + ["create_tenant", "initech"], cwd=settings.BASE_DIR, env=child_env(),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "initech\n"


def test_fallback_contacts_are_validated(tenant):
    FallbackContact.objects.create(tenant=tenant, kind="email", value="oncall@acme.example")
    FallbackContact.objects.create(tenant=tenant, kind="sms", value="+14155550100")
    with pytest.raises(ValidationError, match="not a valid email"):
        FallbackContact.objects.create(tenant=tenant, kind="email", value="not-an-email")
    with pytest.raises(ValidationError, match="E.164"):
        FallbackContact.objects.create(tenant=tenant, kind="sms", value="555-0100")

import io
import subprocess
import sys

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.test import Client

from apps.alerts.models import AlertState
from apps.tenants.models import FallbackContact, Tenant, TenantMembership
from apps.tenants.tokens import authenticate_token
from tests.alerts.conftest import make_alert  # noqa: F401  (alert factory)

pytestmark = pytest.mark.django_db
PASSPHRASE = "a-long-passphrase"


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


def console_sign_in(username: str) -> Client:
    client = Client()
    resp = client.post("/login/", {"username": username, "password": PASSPHRASE})
    assert resp.status_code == 302 and resp["Location"] == "/", resp.content.decode()[-500:]
    return client


def test_create_operator_with_tenant_and_role_can_acknowledge_in_console(make_alert, other_tenant):
    mine = make_alert()
    theirs = make_alert(tenant=other_tenant, plugin=None)
    # The README's example.
    assert run("create_operator", "alice", "--password-stdin", "--tenant", "acme", "--role", "operator",
               stdin=PASSPHRASE + "\n") == "alice"
    user = get_user_model().objects.get(username="alice")
    assert not user.is_staff
    assert list(TenantMembership.objects.filter(user=user).values_list("tenant__slug", "role")) == [("acme", "operator")]
    client = console_sign_in("alice")
    resp = client.post(f"/alerts/{mine.pk}/ack", {"note": "on it"})
    assert resp.status_code == 302
    mine.refresh_from_db()
    assert mine.state == AlertState.ACKNOWLEDGED and mine.acknowledged_by == "alice"
    # Only their tenant: another tenant's alert does not exist for them.
    assert client.post(f"/alerts/{theirs.pk}/ack").status_code == 404


def test_create_operator_platform_role_is_staff_and_works_every_tenant(make_alert, other_tenant):
    theirs = make_alert(tenant=other_tenant, plugin=None)
    # The old README line: an operator in the staff group must be able to work alerts.
    run("create_operator", "olga", "--password-stdin", "--group", "operators", stdin=PASSPHRASE + "\n")
    run("create_operator", "otto", "--password-stdin", "--role", "auditor", stdin=PASSPHRASE + "\n")
    assert get_user_model().objects.get(username="olga").is_staff
    assert console_sign_in("olga").post(f"/alerts/{theirs.pk}/ack").status_code == 302
    theirs.refresh_from_db()
    assert theirs.state == AlertState.ACKNOWLEDGED
    assert console_sign_in("otto").post(f"/alerts/{theirs.pk}/resolve").status_code == 403  # auditors read


def test_create_operator_viewer_role_and_several_tenants(other_tenant, make_alert):
    alert = make_alert()
    run("create_operator", "vera", "--password-stdin", "--tenant", "acme", "--tenant", "globex", "--role", "viewer",
        stdin=PASSPHRASE + "\n")
    assert sorted(TenantMembership.objects.filter(user__username="vera").values_list("tenant__slug", "role")) == [
        ("acme", "viewer"), ("globex", "viewer")]
    client = console_sign_in("vera")
    assert client.get(f"/alerts/{alert.pk}").status_code == 200
    assert client.post(f"/alerts/{alert.pk}/ack").status_code == 403
    # Re-running updates the role in place.
    run("create_operator", "vera", "--password-stdin", "--tenant", "acme", "--role", "admin", stdin=PASSPHRASE + "\n")
    assert TenantMembership.objects.get(user__username="vera", tenant__slug="acme").role == "admin"


@pytest.mark.parametrize("args,message", [
    (["--tenant", "nope"], "tenant 'nope' does not exist"),
    (["--tenant", "acme", "--role", "auditor"], "--role auditor is not a role with --tenant"),
    (["--role", "viewer"], "--role viewer is not a role without --tenant"),
    (["--tenant", "acme", "--group", "operators"], "--group is a staff group"),
    (["--group", "auditors", "--role", "operator"], "disagree"),
])
def test_create_operator_refuses_bad_combinations_and_writes_nothing(tenant, args, message):
    with pytest.raises(CommandError, match=message):
        run("create_operator", "zed", "--password-stdin", *args, stdin=PASSPHRASE + "\n")
    assert not get_user_model().objects.filter(username="zed").exists()


def test_user_without_membership_sees_what_is_missing_after_sign_in(tenant):
    get_user_model().objects.create_user(username="nina", password=PASSPHRASE)
    resp = console_sign_in("nina").get("/")
    body = resp.content.decode()
    assert resp.status_code == 403
    assert "no tenant membership" in body and "create_operator nina --password-stdin --tenant" in body


@pytest.mark.django_db(transaction=True)  # the child commits its tenant: flushed after the test, not left behind
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

"""Write side of notification channels and routing policies, used by the API, admin and console.

Channels: create / update / delete / test. Their config is split by ``CONFIG_FIELDS``: public keys in
``config``, secret keys sealed in ``secrets_encrypted`` (never returned). URLs pass the SSRF guard at
save time (``validate_config``); template overrides are validated and rendered against a real alert
of the tenant when the caller hands one (delivery may not load alerts itself).

Policies: create / update / delete / reorder, matchers from ``routing.validate_matchers``, channels
of the same tenant only. Every change writes its audit row in the same transaction; bad input raises
``Unprocessable`` whose message and ``details`` name the field.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction

from apps.audit.services import record as audit
from apps.core.errors import Conflict, Unprocessable
from apps.core.vocabulary import EVENT_TEST, EVENT_TRIGGERED

from . import routing
from .models import CHANNEL_KINDS, NotificationChannel, NotificationPolicy
from .secrets import channel_secrets, seal_channel_secrets
from .transports import TransportError
from .transports import channels as kinds
from .transports.channel_templates import (
    compile_template,
    context,
    escape_slack,
    escape_teams,
    render_with,
)

_ESCAPE = {"slack": escape_slack, "teams": escape_teams}
_SLUG = re.compile(r"[-a-zA-Z0-9_]{1,100}")
_LABEL = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,99}")
CHANNEL_FIELDS = ("name", "config", "templates", "rate_limit_per_minute", "enabled")
POLICY_FIELDS = ("name", "position", "enabled", "matchers", "channels", "webhooks", "continue_matching", "group_by",
                 "group_wait_seconds", "group_interval_seconds", "repeat_interval_seconds", "fallback_channels")


def _refuse(field: str, message: str, code: str | None = None) -> Unprocessable:
    return Unprocessable(f"{field}: {message}", code=code, details={field: message})


def _name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not _SLUG.fullmatch(value):
        raise _refuse("name", f"give a {what} name of 1-100 letters, digits, '-' or '_'")
    return value


# --------------------------------------------------------------------------- channels


def _kind(value: Any) -> str:
    if value not in CHANNEL_KINDS:
        raise _refuse("kind", f"unknown {value!r}; known: {', '.join(CHANNEL_KINDS)} (webhooks: /api/v1/webhooks)")
    return str(value)


def _split_config(kind: str, raw: Any) -> tuple[dict, dict]:
    """Validate and split into (public, secret); SSRF-refused URLs are 422 ``unsafe_url``."""
    try:
        clean = kinds.validate_config(kind, raw)
    except ValueError as exc:
        message = str(exc)
        field, _, reason = message.partition(": ")
        key = field.removeprefix("config.")
        is_url = bool(kinds.CONFIG_FIELDS[kind].get(key, {}).get("url"))
        raise Unprocessable(message, code="unsafe_url" if is_url else None, details={field: reason}) from None
    secret_keys = {k for k, spec in kinds.CONFIG_FIELDS[kind].items() if spec["secret"]}
    return ({k: v for k, v in clean.items() if k not in secret_keys},
            {k: v for k, v in clean.items() if k in secret_keys})


def preview_templates(kind: str, templates: Any, alert: dict | None = None, tenant_slug: str | None = None) -> dict:
    """Validate ``templates`` ({title, body} overrides) and render them for ``alert`` (a payload;
    when None, the kind's sample alert, of ``tenant_slug`` if given). Returns the rendered request
    payload (no secret in it)."""
    if templates is None:
        templates = {}
    if not isinstance(templates, dict):
        raise _refuse("templates", "give an object of template name -> text")
    sample = alert or {**kinds.sample_alert(), **({"tenant": tenant_slug} if tenant_slug else {})}
    for name, text in templates.items():
        try:
            kinds.validate_template(kind, name, text)
            # render() falls back to the default on a failing override; here the tenant must hear of it.
            render_with(compile_template(text), context(sample, EVENT_TRIGGERED, "triggered", _ESCAPE.get(kind)))
        except ValueError as exc:
            raise _refuse(f"templates.{name}", str(exc)) from None
        except Exception as exc:  # noqa: BLE001 - any rendering failure on the real alert is the template's
            raise _refuse(f"templates.{name}", f"fails on alert #{sample.get('id')}: {type(exc).__name__}: {exc}") from None
    request = kinds.render(kind, EVENT_TRIGGERED, sample, templates=templates or None)
    return request.payload if request else {}


def _rate_limit(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 100_000:
        raise _refuse("rate_limit_per_minute", "give a whole number from 1 to 100000, or null for the kind's default")
    return value


def _save_channel(channel: NotificationChannel) -> None:
    try:
        with transaction.atomic():
            channel.save()
    except IntegrityError:
        raise _refuse("name", f"tenant already has a channel named {channel.name!r}", code="conflict") from None


def create_channel(*, tenant: Any, kind: str, name: str, config: Any, templates: Any = None,
                   rate_limit_per_minute: Any = None, enabled: bool = True, alert: dict | None = None,
                   actor: Any = None) -> tuple[NotificationChannel, dict]:
    """Create a channel; returns it and the rendered preview of its templates (for ``alert``)."""
    kind = _kind(kind)
    public, secret = _split_config(kind, config if config is not None else {})
    preview = preview_templates(kind, templates, alert, tenant.slug)
    channel = NotificationChannel(tenant=tenant, kind=kind, name=_name(name, "channel"), config=public,
                                  secrets_encrypted=seal_channel_secrets(secret), templates=dict(templates or {}),
                                  rate_limit_per_minute=_rate_limit(rate_limit_per_minute), enabled=bool(enabled))
    with transaction.atomic():
        _save_channel(channel)
        audit("channel.created", actor=actor, target=channel, tenant=tenant,
              data={"kind": kind, "name": channel.name, "config": public, "secret_keys": sorted(secret),
                    "templates": sorted(channel.templates), "enabled": channel.enabled})
    return channel, preview


def update_channel(*, channel: NotificationChannel, actor: Any = None, alert: dict | None = None,
                   **changes: Any) -> tuple[NotificationChannel, dict]:
    """Change name / config / templates / rate limit / enabled. ``config`` is merged into the
    stored one: a secret key left out keeps its value (the tenant need not resend a routing key to
    move the base URL). Re-enabling clears the failure streak and the downgrade."""
    unknown = sorted(set(changes) - set(CHANNEL_FIELDS))
    if unknown:
        raise _refuse(unknown[0], f"cannot be changed (changeable: {', '.join(CHANNEL_FIELDS)})")
    data: dict[str, Any] = {}
    changed_secrets: list[str] = []
    if "name" in changes:
        channel.name = _name(changes["name"], "channel")
    if "config" in changes:
        given = changes["config"]
        if not isinstance(given, dict):
            raise _refuse("config", "give an object")
        stored_secret = channel_secrets(channel)
        public, secret = _split_config(channel.kind, {**channel.config, **stored_secret, **given})
        changed_secrets = sorted(k for k in secret if secret[k] != stored_secret.get(k))
        data["config"] = {"from": channel.config, "to": public}
        channel.config, channel.secrets_encrypted = public, seal_channel_secrets(secret)
    templates = changes.get("templates", channel.templates)
    preview = preview_templates(channel.kind, templates, alert, channel.tenant.slug)
    if "templates" in changes:
        channel.templates = dict(templates or {})
    if "rate_limit_per_minute" in changes:
        channel.rate_limit_per_minute = _rate_limit(changes["rate_limit_per_minute"])
    if "enabled" in changes:
        if changes["enabled"] and not channel.enabled:
            channel.failure_streak, channel.downgraded_at = 0, None
        channel.enabled = bool(changes["enabled"])
    with transaction.atomic():
        _save_channel(channel)
        audit("channel.updated", actor=actor, target=channel, tenant=channel.tenant_id,
              data={**data, "fields": sorted(changes), "secret_keys_changed": changed_secrets})
    return channel, preview


def policies_using(channel: NotificationChannel) -> list[dict]:
    """The policies that route to ``channel``: [{"id", "name", "as": ["channels", "fallback_channels"]}]."""
    uses: dict[int, dict] = {}
    for key in ("channels", "fallback_channels"):
        for pk, name in NotificationPolicy.objects.filter(**{key: channel}).values_list("pk", "name"):
            uses.setdefault(pk, {"id": pk, "name": name, "as": []})["as"].append(key)
    return sorted(uses.values(), key=lambda use: use["name"])


def delete_channel(*, channel: NotificationChannel, actor: Any = None) -> None:
    """Delete; its deliveries stay (history). Conflict (409) while a policy routes to it, as one
    of its channels or fallback channels: the delete would change silently where that policy's
    alerts go (to nobody, if it was the only channel). Grafana refuses such a contact point too."""
    with transaction.atomic():
        # Locked before the check: a policy linking the channel meanwhile either committed before
        # (and is seen) or waits for this delete (``link_channels`` locks the channels it links);
        # it cannot slip between.
        list(NotificationChannel.objects.select_for_update().filter(pk=channel.pk).values_list("pk"))
        users = policies_using(channel)
        if users:
            names = ", ".join(repr(use["name"]) for use in users)
            raise Conflict(f"channel {channel.name!r} is used by {'policy' if len(users) == 1 else 'policies'} "
                           f"{names}; take it out of them first", code="channel_in_use",
                           details={"policies": users})
        audit("channel.deleted", actor=actor, target=channel, tenant=channel.tenant_id,
              data={"kind": channel.kind, "name": channel.name})
        channel.delete()


@dataclass(frozen=True)
class ChannelTestResult:
    ok: bool
    status_code: int | None
    latency_ms: int
    error: str
    response: str

    def as_dict(self) -> dict:
        return asdict(self)


def test_channel(*, channel: NotificationChannel, alert: dict | None = None) -> ChannelTestResult:
    """Send a test notification now (synchronously) and report what the far side said.

    Works on disabled channels too (that is how a tenant checks a fix). Never raises for a send
    failure: the failure is the answer.
    """
    sample = {**(alert or kinds.sample_alert()), "tenant": channel.tenant.slug}
    request = kinds.render(channel.kind, EVENT_TEST, sample, templates=channel.templates or None)
    config = {**channel.config, **channel_secrets(channel)}
    try:
        result = kinds.send(channel.kind, request, config, timeout=settings.CHANNEL_TIMEOUT_SECONDS)
    except TransportError as exc:
        return ChannelTestResult(False, exc.status_code, exc.latency_ms or 0, exc.message,
                                 getattr(exc, "response_excerpt", "") or "")
    return ChannelTestResult(True, result.status_code, result.latency_ms, "", result.response_excerpt or "")


test_channel.__test__ = False  # type: ignore[attr-defined]  # not a pytest test, despite the name


# --------------------------------------------------------------------------- policies


def _channels_of(tenant_id: int, ids: Any, field: str) -> list[NotificationChannel]:
    if ids is None:
        return []
    if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        raise _refuse(field, "give a list of channel ids")
    found = {c.pk: c for c in NotificationChannel.objects.filter(tenant_id=tenant_id, pk__in=ids)}
    missing = [i for i in ids if i not in found]
    if missing:
        raise _refuse(field, f"no channel {missing[0]} in this tenant")
    return [found[i] for i in dict.fromkeys(ids)]


def _group_by(value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) and _LABEL.fullmatch(v) for v in value):
        raise _refuse("group_by", f"give a list of label names or fields ({', '.join(routing.GROUP_FIELDS)})")
    return list(dict.fromkeys(value))


def _seconds(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= 7 * 86400:
        raise _refuse(field, "give whole seconds > 0 (at most 7 days)")
    return value


def clean_policy(tenant_id: int, raw: dict, *, partial: bool = False) -> tuple[dict, dict]:
    """Validate policy fields: (model values, {"channels": [...], "fallback_channels": [...]})."""
    unknown = sorted(set(raw) - set(POLICY_FIELDS))
    if unknown:
        raise _refuse(unknown[0], f"unknown field (known: {', '.join(POLICY_FIELDS)})")
    values: dict[str, Any] = {}
    links: dict[str, list[NotificationChannel]] = {}
    if "name" in raw or not partial:
        values["name"] = _name(raw.get("name"), "policy")
    if "position" in raw:
        pos = raw["position"]
        if isinstance(pos, bool) or not isinstance(pos, int) or not 0 <= pos <= 1_000_000:
            raise _refuse("position", "give a whole number >= 0")
        values["position"] = pos
    if "matchers" in raw:
        try:
            values["matchers"] = routing.validate_matchers(raw["matchers"])
        except ValueError as exc:
            field, _, reason = str(exc).partition(": ")
            raise Unprocessable(str(exc), details={field: reason}) from None
    for key in ("enabled", "webhooks", "continue_matching"):
        if key in raw:
            if not isinstance(raw[key], bool):
                raise _refuse(key, "give true or false")
            values[key] = raw[key]
    if "group_by" in raw:
        values["group_by"] = _group_by(raw["group_by"])
    for key in ("group_wait_seconds", "group_interval_seconds", "repeat_interval_seconds"):
        if key in raw:
            values[key] = _seconds(raw[key], key)
    for key in ("channels", "fallback_channels"):
        if key in raw:
            links[key] = _channels_of(tenant_id, raw[key], key)
    return values, links


def link_channels(policy: NotificationPolicy, links: dict) -> None:
    """Set the policy's channel lists, in the caller's transaction. The channels are locked first
    (FOR NO KEY UPDATE, which a delete's FOR UPDATE waits for): the link rows' foreign keys are
    checked only at commit, so a channel deleted meanwhile would fail it with a 500; now it is
    either gone here (422) or its delete waits and then sees this policy (409)."""
    ids = sorted({c.pk for channels in links.values() for c in channels})
    if ids:
        kept = set(NotificationChannel.objects.select_for_update(no_key=True).filter(pk__in=ids)
                   .order_by("pk").values_list("pk", flat=True))
        for key, channels in links.items():
            gone = [c.pk for c in channels if c.pk not in kept]
            if gone:
                raise _refuse(key, f"no channel {gone[0]} in this tenant (deleted meanwhile)")
    for key, channels in links.items():
        getattr(policy, key).set(channels)


def _save_policy(policy: NotificationPolicy, links: dict) -> None:
    try:
        with transaction.atomic():
            policy.save()
    except IntegrityError:
        raise _refuse("name", f"tenant already has a policy named {policy.name!r}", code="conflict") from None
    link_channels(policy, links)


def summary(policy: NotificationPolicy) -> dict:
    return {"name": policy.name, "position": policy.position, "matchers": policy.matchers,
            "channels": sorted(c.name for c in policy.channels.all()),
            "fallback_channels": sorted(c.name for c in policy.fallback_channels.all()),
            "webhooks": policy.webhooks, "continue_matching": policy.continue_matching, "group_by": policy.group_by,
            "group_wait_seconds": policy.group_wait_seconds, "group_interval_seconds": policy.group_interval_seconds,
            "repeat_interval_seconds": policy.repeat_interval_seconds, "enabled": policy.enabled}


def create_policy(*, tenant: Any, actor: Any = None, **fields: Any) -> NotificationPolicy:
    """Create a policy; without ``position`` it goes last."""
    values, links = clean_policy(tenant.pk, fields)
    if "position" not in values:
        last = NotificationPolicy.objects.filter(tenant=tenant).order_by("-position").values_list("position", flat=True)
        values["position"] = (last.first() or 0) + 10
    policy = NotificationPolicy(tenant=tenant, **values)
    with transaction.atomic():
        _save_policy(policy, links)
        audit("policy.created", actor=actor, target=policy, tenant=tenant, data=summary(policy))
    return policy


def update_policy(*, policy: NotificationPolicy, actor: Any = None, **fields: Any) -> NotificationPolicy:
    values, links = clean_policy(policy.tenant_id, fields, partial=True)
    before = summary(policy)
    for key, value in values.items():
        setattr(policy, key, value)
    with transaction.atomic():
        _save_policy(policy, links)
        policy = NotificationPolicy.objects.get(pk=policy.pk)  # no stale prefetch of the old channels
        after = summary(policy)
        audit("policy.updated", actor=actor, target=policy, tenant=policy.tenant_id,
              data={k: {"from": before[k], "to": after[k]} for k in after if before[k] != after[k]})
    return policy


def delete_policy(*, policy: NotificationPolicy, actor: Any = None) -> None:
    with transaction.atomic():
        audit("policy.deleted", actor=actor, target=policy, tenant=policy.tenant_id, data=summary(policy))
        policy.delete()


def reorder_policies(*, tenant: Any, order: Any, actor: Any = None) -> list[NotificationPolicy]:
    """Set positions 10, 20, ... in the order of ``order`` (every policy id of the tenant, once)."""
    if not isinstance(order, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in order):
        raise _refuse("order", "give the list of the tenant's policy ids in the new order")
    with transaction.atomic():
        rows = {p.pk: p for p in NotificationPolicy.objects.select_for_update().filter(tenant=tenant)}
        foreign = [i for i in order if i not in rows]
        if foreign:
            raise _refuse("order", f"no policy {foreign[0]} in this tenant")
        missing = sorted(set(rows) - set(order))
        if missing:
            raise _refuse("order", f"list every policy of the tenant; missing {', '.join(map(str, missing))}")
        if len(order) != len(set(order)):
            raise _refuse("order", "list each policy once")
        for index, pk in enumerate(order, start=1):
            rows[pk].position = index * 10
        NotificationPolicy.objects.bulk_update(rows.values(), ["position"])
        audit("policy.reordered", actor=actor, tenant=tenant, target_type="delivery.notificationpolicy",
              data={"order": [rows[pk].name for pk in order]})
    return [rows[pk] for pk in order]

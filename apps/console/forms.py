"""Forms: the list/audit filters (read from the query string) and every action's input."""
from __future__ import annotations

from datetime import datetime, timedelta

from django import forms

from apps.core.vocabulary import parse_period
from apps.alerts.models import ACTIVE_STATES, AlertState, Severity
from apps.alerts.selectors import AlertFilters
from apps.audit.selectors import AuditFilters
from apps.core import clock

from .selectors import SORTS

RANGES = {"1h": timedelta(hours=1), "6h": timedelta(hours=6), "24h": timedelta(hours=24),
          "7d": timedelta(days=7), "30d": timedelta(days=30)}
STATE_TABS = ("active", *AlertState.values, "all")
DATETIME_INPUT = forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M")


class _TimeRange(forms.Form):
    """A quick range (1h ... 30d) or explicit since/until."""

    range = forms.ChoiceField(choices=[("", "any time"), *((k, f"last {k}") for k in RANGES)], required=False)
    since = forms.DateTimeField(required=False, widget=DATETIME_INPUT)
    until = forms.DateTimeField(required=False, widget=DATETIME_INPUT)

    @property
    def values(self) -> dict:
        """The valid fields only: a bad value is dropped rather than failing the page, so a stale
        or hand-edited link still opens (``errors`` still lists what was ignored)."""
        self.errors  # noqa: B018 - runs full_clean once
        return self.cleaned_data

    def time_window(self) -> tuple[datetime | None, datetime | None]:
        data = self.values
        since, until = data.get("since"), data.get("until")
        if data.get("range"):
            since = clock.now() - RANGES[data["range"]]
        return since, until


class AlertFilterForm(_TimeRange):
    """The alert list's query string; invalid values are ignored field by field (a stale link still opens)."""

    state = forms.ChoiceField(choices=[(s, s) for s in STATE_TABS], required=False)
    severity = forms.MultipleChoiceField(choices=Severity.choices, required=False)
    tenant = forms.CharField(required=False, max_length=63)
    plugin = forms.CharField(required=False, max_length=63)
    rule = forms.CharField(required=False, max_length=100)
    category = forms.CharField(required=False, max_length=64)
    assignee = forms.CharField(required=False, max_length=150)
    q = forms.CharField(required=False, max_length=200)
    sort = forms.ChoiceField(choices=[(k, k) for k in SORTS], required=False)

    def __init__(self, data, *, username: str = "", **kwargs):
        super().__init__(data, **kwargs)
        self.username = username

    @property
    def tab(self) -> str:
        return self.values.get("state") or "active"

    @property
    def sort_key(self) -> str:
        return self.values.get("sort") or "newest"

    def to_filters(self) -> AlertFilters:
        data = self.values
        tab = self.tab
        states = list(ACTIVE_STATES) if tab == "active" else ([] if tab == "all" else [tab])
        assignee = data.get("assignee") or None
        if assignee == "me":
            assignee = self.username
        since, until = self.time_window()
        return AlertFilters(states=states, severities=data.get("severity") or [], tenant=data.get("tenant") or None,
                            plugin=data.get("plugin") or None, rule=data.get("rule") or None, assignee=assignee,
                            since=since, until=until, q=(data.get("q") or "").strip() or None,
                            category=data.get("category") or None)

    def applied(self) -> dict[str, object]:
        """The filters in effect, as given (for the export's audit row); empty ones left out."""
        return {key: value.isoformat() if isinstance(value, datetime) else value
                for key, value in self.values.items() if value not in (None, "", [])}


class AuditFilterForm(_TimeRange):
    actor = forms.CharField(required=False, max_length=200)
    action = forms.CharField(required=False, max_length=100)
    target = forms.CharField(required=False, max_length=170, help_text='e.g. "alerts.alert:42" or "42"')
    tenant = forms.CharField(required=False, max_length=63)

    def to_filters(self) -> AuditFilters:
        data = self.values
        since, until = self.time_window()
        return AuditFilters(actor=data.get("actor") or None, action=data.get("action") or None,
                            target=data.get("target") or None, tenant=data.get("tenant") or None,
                            since=since, until=until)


# --- actions -----------------------------------------------------------------------------------

class NoteForm(forms.Form):
    note = forms.CharField(required=False, max_length=10_000, widget=forms.Textarea(attrs={"rows": 2}))


class AddNoteForm(forms.Form):
    text = forms.CharField(max_length=10_000, widget=forms.Textarea(attrs={"rows": 3}))


class AssignForm(forms.Form):
    assignee = forms.CharField(required=False, max_length=150, help_text="Empty to unassign")


class SuppressForm(forms.Form):
    duration = forms.CharField(max_length=20, initial="1h", help_text="30m, 2h, 1d (at most 30 days)")
    reason = forms.CharField(max_length=500)

    def clean_duration(self) -> timedelta:
        try:
            return parse_period(self.cleaned_data["duration"])
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from exc


class FallbackForm(forms.Form):
    channel = forms.ChoiceField(choices=[("email", "email"), ("sms", "SMS")])


class BulkAckForm(forms.Form):
    ids = forms.TypedMultipleChoiceField(coerce=int, required=True, choices=())
    note = forms.CharField(required=False, max_length=10_000)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Any integer id: visibility and state are the service's and selector's business.
        self.fields["ids"].valid_value = lambda value: str(value).isdigit()


class BulkResolveForm(BulkAckForm):
    # Own names, not ``note``: every bulk button posts the one form holding all their inputs.
    resolve_note = forms.CharField(required=False, max_length=10_000)


class BulkSuppressForm(BulkAckForm):
    duration = forms.CharField(max_length=20, initial="1h", help_text="30m, 2h, 1d (at most 30 days)")
    reason = forms.CharField(max_length=500)

    def clean_duration(self) -> timedelta:
        try:
            return parse_period(self.cleaned_data["duration"])
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from exc


class BulkAssignForm(BulkAckForm):
    assignee = forms.CharField(max_length=150, help_text='"me", a username, or "none" to unassign')


class SilenceForm(forms.Form):
    tenant = forms.ChoiceField(required=False)
    plugin = forms.CharField(required=False, max_length=63)
    rule = forms.CharField(required=False, max_length=100)
    severity = forms.ChoiceField(choices=[("", "any"), *Severity.choices], required=False)
    labels = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}),
                             help_text="One name=value per line; all must match")
    duration = forms.CharField(max_length=20, initial="2h", help_text="30m, 2h, 1d")
    reason = forms.CharField(max_length=500)

    def __init__(self, *args, tenant_choices: list[tuple[str, str]], **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["tenant"].choices = tenant_choices

    def clean_labels(self) -> dict[str, str]:
        labels = {}
        for line in (self.cleaned_data.get("labels") or "").splitlines():
            if not line.strip():
                continue
            name, sep, value = line.partition("=")
            if not sep or not name.strip():
                raise forms.ValidationError(f"{line.strip()!r} is not name=value")
            labels[name.strip()] = value.strip()
        return labels

    def clean_duration(self) -> timedelta:
        try:
            return parse_period(self.cleaned_data["duration"])
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from exc

    def matchers(self) -> dict:
        data = self.cleaned_data
        found = {key: data[key] for key in ("plugin", "rule", "severity") if data.get(key)}
        if data.get("labels"):
            found["labels"] = data["labels"]
        return found

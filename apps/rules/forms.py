"""Admin forms. Validation is the pack validator's (``services.validate_rule``): the form only
turns its fields into a pack-format mapping and files each error under the field it names."""
from __future__ import annotations

import re
from typing import Any

import yaml
from django import forms

from apps.core.vocabulary import format_duration
from apps.rules.models import LogRule, RuleOverride
from apps.rules.services import RuleInvalid, validate_override, validate_rule
from apps.core.vocabulary import SEVERITIES
from apps.rules.log_kind_spec import KEYS as LOG_KIND_KEYS

_ERROR_RE = re.compile(r"^rule [^:]+: (?P<where>[^:]+): ")
# First segment of the validator's location -> form field.
_FIELD_OF = {"id": "key", "name": "name", "category": "category", "description": "description",
             "enabled": "enabled", "match.levels": "levels", "match.keywords": "keywords",
             "match.patterns": "patterns", "match": "levels", "threshold.count": "threshold_count",
             "threshold.window": "window", "threshold": "threshold_count", "group_by": "group_by",
             "severity": "severity", "cooldown": "cooldown", "auto_resolve": "auto_resolve",
             "recommended_action": "recommended_action", "labels": "labels", "overrides": "overrides",
             **{key: "kind_options" for key in ("kind",) + LOG_KIND_KEYS["spike"] + LOG_KIND_KEYS["log_anomaly"]
                if key not in ("id", "name", "category", "enabled", "description", "match", "severity",
                               "recommended_action", "labels", "overrides", "group_by", "cooldown")}}
# Keys a spike / log anomaly rule has beyond the form's own fields, edited as one YAML mapping.
_KIND_ONLY = ("kind", "timeframe", "spike_height", "spike_type", "threshold_ref", "threshold_cur",
              "alert_on_new_data", "window", "baseline", "threshold", "min_samples", "floor", "direction", "for",
              "consecutive")


def _lines(text: str) -> list[str]:
    return [line.strip() for line in (text or "").splitlines() if line.strip()]


def _csv(text: str) -> list[str]:
    return [item.strip() for item in (text or "").split(",") if item.strip()]


def field_for(error: str) -> str | None:
    """The form field an error like ``rule 'x': match.patterns[0]: ...`` belongs to."""
    m = _ERROR_RE.match(error)
    if not m:
        return None
    where = re.sub(r"\[\d+\]", "", m.group("where"))
    while where:
        if where in _FIELD_OF:
            return _FIELD_OF[where]
        where = where.rpartition(".")[0]
    return None


class LogRuleForm(forms.ModelForm):
    key = forms.CharField(max_length=64, help_text="Stable id (the pack's id); cannot change later")
    name = forms.CharField(max_length=200)
    category = forms.CharField(max_length=64, initial="error", help_text="error | security | ...")
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False)
    enabled = forms.BooleanField(required=False, initial=True)
    levels = forms.CharField(required=False, help_text="Comma-separated, e.g. ERROR, FATAL (empty: any level)")
    keywords = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False,
                               help_text="One per line; case-insensitive substrings of the message")
    patterns = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False,
                               help_text="One RE2 regular expression per line (no backreferences/lookaround)")
    threshold_count = forms.IntegerField(min_value=1, initial=1, required=False, help_text="Count rules only")
    window = forms.CharField(initial="5m", required=False, help_text="30s, 5m, 1h, 1h30m or seconds")
    group_by = forms.CharField(initial="tenant_id, plugin_id", required=False,
                               help_text="Comma-separated: tenant_id, plugin_id, trace_id, fields.<name>")
    severity = forms.ChoiceField(choices=[(s, s) for s in SEVERITIES])
    cooldown = forms.CharField(initial="10m", required=False)
    auto_resolve = forms.CharField(required=False, help_text="Resolve after this long without occurrences")
    recommended_action = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False)
    labels = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False,
                             help_text="YAML mapping, e.g. {team: payments}")
    overrides = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False,
                                help_text="YAML list as in a pack, e.g. [{tenant: acme, threshold: {count: 50}}]")
    kind_options = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 4}), required=False,
        help_text="Spike / log anomaly rules only: YAML mapping as in a pack, e.g. {kind: spike, timeframe: 10m, "
                  "spike_height: 3, spike_type: up}; the threshold above is then not used")

    class Meta:
        model = LogRule
        fields: list[str] = []

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.spec_raw: dict[str, Any] | None = None
        if self.instance.pk:
            self.fields["key"].disabled = True
            for name, value in self.initial_from_spec(self.instance.spec).items():
                self.initial[name] = value

    @staticmethod
    def initial_from_spec(spec: dict) -> dict[str, Any]:
        m, t = spec.get("match", {}), spec.get("threshold", {})
        dump = (lambda v: yaml.safe_dump(v, default_flow_style=True, sort_keys=False).strip() if v else "")
        return {"key": spec["id"], "name": spec["name"], "category": spec["category"],
                "description": spec.get("description", ""), "enabled": spec.get("enabled", True),
                "levels": ", ".join(m.get("levels", [])), "keywords": "\n".join(m.get("keywords", [])),
                "patterns": "\n".join(m.get("patterns", [])), "threshold_count": t.get("count"),
                "window": t.get("window"), "group_by": ", ".join(spec.get("group_by", [])),
                "severity": spec["severity"], "cooldown": spec.get("cooldown", format_duration(0)),
                "auto_resolve": spec.get("auto_resolve", ""), "recommended_action": spec.get("recommended_action", ""),
                "labels": dump(spec.get("labels")), "overrides": dump(spec.get("overrides")),
                "kind_options": dump({k: spec[k] for k in _KIND_ONLY if k in spec and spec.get("kind")})}

    def _yaml(self, name: str, kind: type) -> Any:
        text = self.cleaned_data.get(name) or ""
        if not text.strip():
            return kind()
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as exc:
            self.add_error(name, f"not valid YAML: {exc}")
            return None

    def clean(self):
        data = super().clean()
        if self.errors:
            return data
        raw: dict[str, Any] = {
            "id": self.instance.key if self.instance.pk else data["key"], "name": data["name"],
            "category": data["category"], "enabled": data["enabled"], "description": data["description"],
            "match": {"levels": _csv(data["levels"]), "keywords": _lines(data["keywords"]),
                      "patterns": _lines(data["patterns"])},
            "threshold": {"count": data["threshold_count"], "window": (data["window"] or "").strip()},
            "group_by": _csv(data["group_by"]), "severity": data["severity"],
            "cooldown": (data["cooldown"] or "0s").strip(), "recommended_action": data["recommended_action"],
        }
        if data["auto_resolve"].strip():
            raw["auto_resolve"] = data["auto_resolve"].strip()
        labels, overrides = self._yaml("labels", dict), self._yaml("overrides", list)
        options = self._yaml("kind_options", dict)
        if self.errors:
            return data
        if options:
            if not isinstance(options, dict):
                self.add_error("kind_options", "must be a YAML mapping, e.g. {kind: spike, ...}")
                return data
            raw.pop("threshold")
            raw.pop("auto_resolve", None)
            if options.get("kind") == "log_anomaly":  # always per (tenant, plugin), no cooldown
                raw.pop("group_by")
                raw.pop("cooldown")
            raw.update(options)
        elif data["threshold_count"] is None or not data["window"].strip():
            self.add_error("threshold_count" if data["threshold_count"] is None else "window",
                           "required for a count rule (or give kind_options for a spike / log anomaly rule)")
            return data
        if labels:
            raw["labels"] = labels
        if overrides:
            raw["overrides"] = overrides
        try:
            validate_rule(raw)
        except RuleInvalid as exc:
            for error in exc.errors:
                self.add_error(field_for(error), error)
            return data
        self.spec_raw = raw
        return data


class DryRunForm(forms.Form):
    tenant = forms.CharField(required=False, initial="dry-run",
                             help_text="Whose overrides apply (a tenant slug); events belong to it")
    rules = forms.MultipleChoiceField(required=False, widget=forms.SelectMultiple(attrs={"size": 8}),
                                      help_text="Stored rules to test (none selected: all enabled rules)")
    rule_yaml = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 6, "cols": 90}),
                                label="Or an unsaved rule (YAML, pack format)")
    samples = forms.CharField(widget=forms.Textarea(attrs={"rows": 12, "cols": 90}),
                              help_text="One event per line: NDJSON objects or '<LEVEL> <message>'")

    def __init__(self, *args, keys: list[str] = (), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["rules"].choices = [(k, k) for k in keys]


class ImportForm(forms.Form):
    pack = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 16, "cols": 100}),
                           help_text="A YAML or JSON rule pack")
    file = forms.FileField(required=False)

    def text(self) -> str:
        upload = self.cleaned_data.get("file")
        if upload:
            return upload.read().decode("utf-8", "replace")
        return self.cleaned_data.get("pack") or ""


class RuleOverrideForm(forms.ModelForm):
    """A tenant override; validated like an ``overrides`` entry of a pack."""

    class Meta:
        model = RuleOverride
        fields = ("rule", "tenant", "threshold_count", "window_seconds", "severity", "cooldown_seconds", "enabled")

    def clean(self):
        data = super().clean()
        self.body: dict[str, Any] = {}
        if self.errors:
            return data
        threshold = {k: data[f] for k, f in (("count", "threshold_count"), ("window", "window_seconds"))
                     if data.get(f) is not None}
        if threshold:
            self.body["threshold"] = threshold
        if data.get("severity"):
            self.body["severity"] = data["severity"]
        if data.get("cooldown_seconds") is not None:
            self.body["cooldown"] = data["cooldown_seconds"]
        if data.get("enabled") is not None:
            self.body["enabled"] = data["enabled"]
        try:
            validate_override(rule=data["rule"], tenant_slug=data["tenant"].slug, body=self.body)
        except RuleInvalid as exc:
            for error in exc.errors:
                where = error.split(": ")[1] if error.count(": ") >= 2 else ""
                field = {"override.threshold.count": "threshold_count", "override.threshold.window": "window_seconds",
                         "override.severity": "severity", "override.cooldown": "cooldown_seconds"}.get(where)
                self.add_error(field, error)
        return data

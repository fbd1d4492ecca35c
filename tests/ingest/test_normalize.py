from __future__ import annotations

from datetime import datetime, timedelta, timezone

import orjson
import pytest

from apps.ingest.normalize import (
    DROPPED_FIELDS_KEY, LEVEL_NUMBERS, MAX_FIELD_DEPTH, MAX_FIELDS, MAX_MESSAGE_BYTES,
    TRUNCATION_MARKER, BodyError, Event, EventError, InvalidLine, normalize_event, parse_body,
)

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=timezone.utc)
PAST = timedelta(days=7)
FUTURE = timedelta(minutes=5)


def norm(raw, **kw):
    kw.setdefault("default_tenant", None)
    return normalize_event(raw, now=NOW, max_past=PAST, max_future=FUTURE, **kw)


def base(**over):
    raw = {"level": "ERROR", "message": "boom", "tenant_id": "acme", "plugin_id": "billing",
           "ts": "2024-05-01T11:59:00Z"}
    raw.update(over)
    return raw


def error_of(raw, **kw) -> EventError:
    with pytest.raises(EventError) as exc:
        norm(raw, **kw)
    return exc.value


# --------------------------------------------------------------------------- parse_body


def test_body_json_array():
    assert parse_body(b'[{"a":1},{"b":2}]', "application/json") == [{"a": 1}, {"b": 2}]


def test_body_events_wrapper():
    assert parse_body(b'{"events":[{"a":1}]}', "application/json") == [{"a": 1}]


def test_body_single_object_and_events_field_is_not_a_wrapper():
    assert parse_body(b'{"message":"x"}', "application/json") == [{"message": "x"}]
    assert parse_body(b'{"message":"x","events":3}', "") == [{"message": "x", "events": 3}]


def test_body_ndjson_by_content_type_with_a_bad_line():
    body = b'{"a":1}\n\nnot json\n{"b":2}\n'
    items = parse_body(body, "application/x-ndjson; charset=utf-8")
    assert items[0] == {"a": 1} and items[2] == {"b": 2}
    assert isinstance(items[1], InvalidLine) and "line 3" in items[1].error
    with pytest.raises(EventError, match="line 3"):
        norm(items[1])


def test_body_ndjson_detected_without_content_type():
    assert parse_body(b'{"a":1}\r\n{"b":2}', "application/json") == [{"a": 1}, {"b": 2}]


def test_body_pretty_printed_json_is_not_ndjson():
    assert parse_body(b'[\n  {"a": 1},\n  {"b": 2}\n]\n', "text/plain") == [{"a": 1}, {"b": 2}]


def test_body_bom_is_ignored():
    assert parse_body(b'\xef\xbb\xbf[{"a":1}]', "application/json") == [{"a": 1}]


@pytest.mark.parametrize("body,ctype,msg", [
    (b"", "application/json", "empty"),
    (b"  \n ", "application/json", "empty"),
    (b'\xff\xfe{"a":1}', "application/json", "UTF-8"),
    (b"hello", "application/json", "not valid JSON"),
    (b"42", "application/json", "got a number"),
    (b'"x"', "application/json", "got a string"),
    (b"null", "application/json", "got null"),
    (b'{"events": {"a": 1}}', "application/json", '"events" must be a list'),
    (b"line one\nline two\n", "application/x-ndjson", "no line"),
    (b"[" * 2000 + b"]" * 2000, "application/json", "not valid JSON"),
])
def test_body_never_valid(body, ctype, msg):
    with pytest.raises(BodyError, match=msg):
        parse_body(body, ctype)


def test_body_empty_array_is_valid():
    assert parse_body(b"[]", "application/json") == []


# --------------------------------------------------------------------------- event basics


def test_minimal_event():
    ev = norm(base())
    assert isinstance(ev, Event)
    assert (ev.level, ev.message, ev.tenant_id, ev.plugin_id) == ("ERROR", "boom", "acme", "billing")
    assert ev.level_no == LEVEL_NUMBERS["ERROR"]
    assert ev.ts == datetime(2024, 5, 1, 11, 59, tzinfo=timezone.utc)
    assert ev.trace_id is None and ev.fields == {}


def test_level_ordering():
    order = ["TRACE", "DEBUG", "INFO", "NOTICE", "WARNING", "ERROR", "CRITICAL", "FATAL",
             "ALERT", "EMERGENCY"]
    assert sorted(LEVEL_NUMBERS, key=LEVEL_NUMBERS.get) == order


@pytest.mark.parametrize("given,level", [
    ("warn", "WARNING"), ("WARN", "WARNING"), ("Err", "ERROR"), ("crit", "CRITICAL"),
    ("panic", "FATAL"), ("emerg", "EMERGENCY"), ("notice", "NOTICE"), ("trace", "TRACE"),
    ("alert", "ALERT"), (0, "EMERGENCY"), (1, "ALERT"), (2, "CRITICAL"), (3, "ERROR"),
    (4, "WARNING"), (5, "NOTICE"), (6, "INFO"), (7, "DEBUG"), ("3", "ERROR"), (" info ", "INFO"),
])
def test_level_aliases(given, level):
    assert norm(base(level=given)).level == level


@pytest.mark.parametrize("bad", ["EROR", 8, -1, True, 3.0, "", {"x": 1}])
def test_bad_level(bad):
    assert error_of(base(level=bad)).field == "level"


def test_missing_level():
    raw = base()
    del raw["level"]
    err = error_of(raw)
    assert err.field == "level" and str(err) == "level: required"


def test_syslog_ng_aliases():
    raw = {"PRIORITY": "err", "MESSAGE": "disk full", "ISODATE": "2024-05-01T13:58:00+02:00",
           "PROGRAM": "backup", "HOST": "web-1", "TENANT": "acme", "PID": "123"}
    ev = norm(raw)
    assert ev.level == "ERROR" and ev.message == "disk full" and ev.plugin_id == "backup"
    assert ev.ts == datetime(2024, 5, 1, 11, 58, tzinfo=timezone.utc)
    assert ev.fields == {"host": "web-1", "PID": "123"}


def test_other_aliases_and_precedence():
    raw = {"severity": "warning", "msg": "m1", "message": "m0", "@timestamp": "2024-05-01T11:00:00Z",
           "tenant": "acme", "plugin": "p1", "PROGRAM": "prog", "traceId": "abc-123"}
    ev = norm(raw)
    assert ev.message == "m0" and ev.fields["msg"] == "m1"
    assert ev.plugin_id == "p1" and ev.fields["PROGRAM"] == "prog"
    assert ev.trace_id == "abc-123" and ev.level == "WARNING"


def test_host_field_does_not_clobber_existing_host():
    ev = norm(base(HOST="a", host="b"))
    assert ev.fields == {"host": "b", "HOST": "a"}


# --------------------------------------------------------------------------- message


def test_message_rules():
    assert error_of(base(message="")).field == "message"
    assert error_of(base(message="  \n")).field == "message"
    assert error_of(base(message=5)).field == "message"
    assert norm(base(message="a\x00b\n")).message == "ab"


def test_message_truncated_to_byte_limit_without_splitting_characters():
    ev = norm(base(message="é" * MAX_MESSAGE_BYTES))
    assert ev.message.endswith(TRUNCATION_MARKER)
    assert len(ev.message.encode()) <= MAX_MESSAGE_BYTES
    assert "\ufffd" not in ev.message
    exact = "x" * MAX_MESSAGE_BYTES
    assert norm(base(message=exact)).message == exact


# --------------------------------------------------------------------------- ids, tenant


@pytest.mark.parametrize("bad", ["", "-acme", "a" * 64, "ac me", "acmé", 5])
def test_bad_ids(bad):
    assert error_of(base(tenant_id=bad)).field == "tenant_id"
    assert error_of(base(plugin_id=bad)).field == "plugin_id"


def test_ok_ids():
    ev = norm(base(tenant_id="Acme.Corp_1-eu", plugin_id="a" * 63))
    assert ev.tenant_id == "Acme.Corp_1-eu"


def test_missing_plugin_and_tenant():
    raw = base()
    del raw["plugin_id"], raw["tenant_id"]
    assert error_of(dict(raw, plugin_id="p")).field == "tenant_id"
    assert error_of(dict(raw, tenant_id="t")).field == "plugin_id"


def test_bound_tenant_fills_and_rejects_others():
    raw = base()
    del raw["tenant_id"]
    assert norm(raw, default_tenant="acme").tenant_id == "acme"
    assert norm(base(tenant_id="acme"), default_tenant="acme").tenant_id == "acme"
    err = error_of(base(tenant_id="globex"), default_tenant="acme")
    assert err.field == "tenant_id" and "bound to tenant 'acme'" in str(err)


def test_trace_id():
    assert norm(base(trace_id="4bf92f3577b34da6a3ce929d0e0e4736")).trace_id.startswith("4bf9")
    assert norm(base(trace_id="")).trace_id is None
    assert error_of(base(trace_id="x" * 129)).field == "trace_id"
    assert error_of(base(trace_id="has space")).field == "trace_id"
    assert error_of(base(trace_id=123)).field == "trace_id"


# --------------------------------------------------------------------------- timestamps


@pytest.mark.parametrize("given,expected", [
    ("2024-05-01T11:59:00Z", datetime(2024, 5, 1, 11, 59, tzinfo=timezone.utc)),
    ("2024-05-01t11:59:00z", datetime(2024, 5, 1, 11, 59, tzinfo=timezone.utc)),
    ("2024-05-01 11:59:00Z", datetime(2024, 5, 1, 11, 59, tzinfo=timezone.utc)),
    ("2024-05-01T07:59:00.5-04:00", datetime(2024, 5, 1, 11, 59, 0, 500000, tzinfo=timezone.utc)),
    ("2024-05-01T11:59:00.123456789Z", datetime(2024, 5, 1, 11, 59, 0, 123456, tzinfo=timezone.utc)),
    (1714564740, datetime(2024, 5, 1, 11, 59, tzinfo=timezone.utc)),
    (1714564740.25, datetime(2024, 5, 1, 11, 59, 0, 250000, tzinfo=timezone.utc)),
    (1714564740000, datetime(2024, 5, 1, 11, 59, tzinfo=timezone.utc)),
    ("1714564740", datetime(2024, 5, 1, 11, 59, tzinfo=timezone.utc)),
    ("1714564740123", datetime(2024, 5, 1, 11, 59, 0, 123000, tzinfo=timezone.utc)),
    (1714564740000000, datetime(2024, 5, 1, 11, 59, tzinfo=timezone.utc)),
    (1714564740000000000, datetime(2024, 5, 1, 11, 59, tzinfo=timezone.utc)),
])
def test_ts_formats(given, expected):
    ts = norm(base(ts=given)).ts
    assert ts == expected and ts.tzinfo == timezone.utc


@pytest.mark.parametrize("bad", [
    "2024-05-01T11:59:00", "2024-05-01", "yesterday", "2024-13-01T00:00:00Z",
    "2024-02-30T00:00:00Z", True, [], -5, "nan", float("inf"),
    # fromisoformat takes these; RFC 3339 does not, so neither do we
    "2024-05-01T11:59:00,5Z", "2024-05-01T11:59:00+0100", "20240501T115900Z", "2024-05-01T11:59Z",
    "2024-05-01T11:59:00+01:00:30",
    # digits int() refuses (over 4300) or float() cannot hold (over 308): were a 500
    "9" * 5000, "9" * 400, "-" + "9" * 400,
])
def test_bad_ts(bad):
    assert error_of(base(ts=bad)).field == "ts"


# Valid RFC 3339 whose instant in UTC falls before year 1 or after 9999: datetime cannot hold it
# (converting to UTC raised OverflowError, a 500); the lowercase 't' takes the parser's long way.
@pytest.mark.parametrize("text", [
    "0001-01-01T00:00:00+01:00", "0001-01-01T00:30:00+01:00", "9999-12-31T23:59:59-01:00",
    "0001-01-01t00:00:00+01:00", "9999-12-31t23:59:59-01:00",
])
def test_a_time_outside_the_calendar_in_utc_is_rejected_naming_ts(text):
    err = error_of(base(ts=text))
    assert err.field == "ts" and "out of range" in err.message and text in err.message


def test_rfc3339_timestamps_parse_to_the_instant_they_name():
    # Random instants, fractions of 0-9 digits and offsets, written out by hand: whichever way
    # the parser builds the datetime, it must be this one.
    import random

    rng = random.Random(3339)
    for _ in range(3000):
        instant = NOW - timedelta(seconds=rng.randrange(6 * 86400), microseconds=rng.randrange(10**6))
        minutes = rng.choice([0, 0, 60, -240, 330, -59, 14 * 60, -12 * 60])
        local = instant.astimezone(timezone(timedelta(minutes=minutes)))
        digits = rng.randrange(10)
        frac = f"{local.microsecond:06d}{rng.randrange(1000):03d}"[:digits]
        if minutes == 0 and rng.random() < 0.5:
            zone = rng.choice("Zz")
        else:
            zone = f"{'+' if minutes >= 0 else '-'}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
        text = f"{local:%Y-%m-%d}{rng.choice('Tt ')}{local:%H:%M:%S}{'.' + frac if frac else ''}{zone}"
        expected = instant.replace(microsecond=int(frac[:6].ljust(6, "0")) if frac else 0)
        ts = norm(base(ts=text)).ts
        assert ts == expected and ts.tzinfo is timezone.utc, text


def test_level_and_id_spellings_seen_before_are_judged_the_same():
    for _ in range(2):  # the second round is answered from what the first one learnt
        assert norm(base(level="warn", plugin_id="billing")).level == "WARNING"
        assert norm(base(level=4)).level == "WARNING"  # syslog severity 4
        assert error_of(base(level=True)).field == "level"
        assert error_of(base(level="nope")).field == "level"
        assert error_of(base(plugin_id="bad id")).field == "plugin_id"
        assert error_of(base(plugin_id=["billing"])).field == "plugin_id"


def test_missing_or_null_ts_means_now():
    raw = base()
    del raw["ts"]
    assert norm(raw).ts == NOW
    assert norm(base(ts=None)).ts == NOW


def test_clock_skew_messages():
    err = error_of(base(ts="2031-01-01T00:00:00Z"))
    assert err.field == "ts"
    assert str(err) == "ts: ts 2031-01-01T00:00:00Z is 2435 days in the future (max 5m)"
    err = error_of(base(ts="2024-04-01T12:00:00Z"))
    assert "30 days in the past (max 7d)" in str(err)
    assert norm(base(ts="2024-05-01T12:04:59Z")).ts.minute == 4
    assert "6 minutes in the future" in str(error_of(base(ts="2024-05-01T12:06:00Z")))


# --------------------------------------------------------------------------- fields


def test_fields_kept_and_bounded():
    raw = base(user={"id": 7, "roles": ["a", "b"]}, ok=True, ratio=0.5, nothing=None,
               big="x" * 5000, nul="a\x00b")
    f = norm(raw).fields
    assert f["user"] == {"id": 7, "roles": ["a", "b"]}
    assert f["ok"] is True and f["ratio"] == 0.5 and f["nothing"] is None
    assert f["big"].endswith(TRUNCATION_MARKER) and len(f["big"]) < 1100
    assert f["nul"] == "ab"
    orjson.dumps(f)


@pytest.mark.parametrize("field,value,expected", [
    ("plain", "short", {"plain": "short"}),  # flat and short: kept as it came
    ("big", "y" * 1025, {"big": "y" * 1024 + TRUNCATION_MARKER}),
    ("nul", "a\x00b", {"nul": "ab"}),
    ("ke\x00y", 1, {"key": 1}),
    ("k" * 200, 1, {"k" * 128: 1}),
])
def test_flat_fields_are_bounded_one_by_one(field, value, expected):
    assert norm(base(**{field: value})).fields == expected


def test_too_many_fields_are_dropped_and_counted():
    raw = base(**{f"k{i}": i for i in range(MAX_FIELDS + 10)})
    f = norm(raw).fields
    assert len(f) == MAX_FIELDS + 1 and f[DROPPED_FIELDS_KEY] == 10


def test_long_lists_are_cut():
    f = norm(base(items=list(range(500)))).fields
    assert len(f["items"]) == 51 and f["items"][-1] == TRUNCATION_MARKER


def test_deep_nesting_rejects_event():
    deep: dict = {"leaf": 1}
    for _ in range(MAX_FIELD_DEPTH):
        deep = {"d": deep}
    err = error_of(base(x=deep))
    assert "nested deeper" in str(err) and err.field.startswith("fields.x.d")
    ok: dict = {"leaf": 1}
    for _ in range(MAX_FIELD_DEPTH - 2):
        ok = {"d": ok}
    norm(base(x=ok))


def test_deep_lists_reject_event_too():
    v: list = [1]
    for _ in range(MAX_FIELD_DEPTH + 1):
        v = [v]
    assert "nested deeper" in str(error_of(base(x=v)))


def test_total_field_values_bounded():
    raw = base(**{f"k{i}": [[j for j in range(45)] for _ in range(45)] for i in range(3)})
    assert error_of(raw).field == "fields"


def test_non_object_items():
    for item in [1, "x", [1], None]:
        assert error_of(item).field == "event"


def test_end_to_end_body_to_events():
    body = b"\n".join(orjson.dumps(base(message=f"m{i}")) for i in range(3)) + b"\n{bad\n"
    items = parse_body(body, "application/x-ndjson")
    results = []
    for i, item in enumerate(items):
        try:
            results.append(norm(item).message)
        except EventError as exc:
            results.append((i, str(exc)))
    assert results[:3] == ["m0", "m1", "m2"] and results[3][0] == 3

"""Body templates and response paths: pure functions, no database."""
from __future__ import annotations

import json

import pytest

from apps.actions.templating import dig, render_json
from apps.core.errors import Unprocessable


def test_tojson_keeps_quotes_and_markup_intact_where_autoescape_would_break_json():
    alert = {"title": 'He said "<b>boom</b>" & left', "labels": {"env": "prod"}, "id": 7}
    body = render_json('{"t": {{ alert.title|tojson }}, "l": {{ alert.labels|tojson }}, "id": {{ alert.id }}}',
                       {"alert": alert}, field="body_template")
    assert json.loads(body) == {"t": 'He said "<b>boom</b>" & left', "l": {"env": "prod"}, "id": 7}


def test_a_template_rendering_broken_json_or_failing_to_parse_is_refused_naming_the_field():
    with pytest.raises(Unprocessable, match="body_template: the rendered body is not valid JSON"):
        render_json('{"t": {{ alert.title }}}', {"alert": {"title": "x y"}}, field="body_template")
    with pytest.raises(Unprocessable, match="body_template: template error"):
        render_json('{% if %}', {"alert": {}}, field="body_template")


def test_dig_reads_dotted_paths_and_list_indexes_and_is_none_when_missing():
    document = {"data": {"ticket": {"id": "INC-1"}, "items": [{"key": "A"}]}}
    assert dig(document, "data.ticket.id") == "INC-1"
    assert dig(document, "data.items.0.key") == "A"
    assert dig(document, "data.items.5.key") is None and dig(document, "data.nope.id") is None
    assert dig("text", "key") is None

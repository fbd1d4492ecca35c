import pytest

pytestmark = pytest.mark.django_db


def test_pages_render(login, make_alert):
    alert = make_alert(title="Checkout error burst")
    c = login("operator")
    for url in ("/", "/alerts/rows", f"/alerts/{alert.pk}", "/dashboard", "/audit", "/silences", "/silences/new",
                "/audit/export.csv"):
        resp = c.get(url)
        assert resp.status_code == 200, url

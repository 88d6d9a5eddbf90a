"""The API docs pages let the browser load nothing from another host, and a browser's
/favicon.ico finds an icon. The browser itself checks both in tests/system/test_admin_browser.py."""

import pytest

DOCS_PAGES = ["/api/docs/", "/api/redoc/"]


@pytest.mark.parametrize("page", DOCS_PAGES)
def test_docs_pages_let_the_browser_load_from_this_host_only(client, db, page):
    response = client.get(page)

    assert response.status_code == 200
    policy = dict(directive.split(" ", 1) for directive in response["Content-Security-Policy"].split("; "))
    assert policy["default-src"] == "'self'"
    # Images (ReDoc's sidebar shows Redocly's logo from their CDN): this host and data: URIs.
    assert policy["img-src"] == "'self' data:"
    # No directive names another host, a scheme or a wildcard that would let one in.
    for sources in policy.values():
        assert set(sources.split()) <= {"'self'", "'none'", "'unsafe-inline'", "data:", "blob:"}, sources


def test_swagger_ui_runs_no_inline_script(client, db):
    # Its set-up script comes from this host as a file (?script), as the policy requires.
    html = client.get("/api/docs/").content.decode()
    assert '<script src="/api/docs/?script=">' in html
    assert "<script>" not in html
    script = client.get("/api/docs/?script=")
    assert script.status_code == 200
    assert "SwaggerUIBundle" in script.content.decode()


def test_favicon_is_an_icon(client, db):
    response = client.get("/favicon.ico", follow=True)

    assert response.status_code == 200
    assert response.redirect_chain == [("/static/executions/favicon.svg", 302)]
    assert response["Content-Type"] == "image/svg+xml"
    assert b"<svg" in b"".join(response.streaming_content)

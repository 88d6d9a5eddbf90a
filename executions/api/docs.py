"""The API docs pages (Swagger UI, ReDoc) load nothing from another host: they work offline,
and tell no third party who reads them.

drf-spectacular-sidecar serves both from this process, but ReDoc's sidebar still shows
Redocly's logo from their CDN (an <img> in its bundle, with no option to leave it out). A
Content-Security-Policy allowing this host only makes the browser refuse that request (and
any other a future version adds); ReDoc then drops the image, its onError handler hides it.
"""

import functools

DOCS_CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        # Both draw their icons from data: URIs.
        "img-src 'self' data:",
        # Both inject their styles at run time.
        "style-src 'self' 'unsafe-inline'",
        # ReDoc's search index runs in a worker built from a blob.
        "worker-src 'self' blob:",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)


def only_this_host(view):
    """The docs page `view`, answered with DOCS_CONTENT_SECURITY_POLICY."""

    @functools.wraps(view)
    def view_with_policy(request, *args, **kwargs):
        response = view(request, *args, **kwargs)
        response.headers["Content-Security-Policy"] = DOCS_CONTENT_SECURITY_POLICY
        return response

    return view_with_policy

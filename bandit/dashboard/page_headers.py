"""The security headers of the dashboard's pages and assets, set on their route handlers.

The pages load only their own script, style and plotly.js from /dashboard/assets/, and talk
only to this service (the overview's fetch, the events stream, the controls): nothing inline,
nothing from elsewhere, so the policy allows the page's own origin and nothing else.
"""

from __future__ import annotations

from litestar.datastructures import ResponseHeader

# `data:` images only for the pages' empty favicon (`<link rel="icon" href="data:,">`), which
# spares browsers a request for /favicon.ico.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "form-action 'self'",
    ]
)

#: Every asset is served with its own media type: browsers must not guess another.
ASSET_HEADERS = [ResponseHeader(name="X-Content-Type-Options", value="nosniff")]

#: The HTML pages: no framing (clickjacking of the controls), no leak of the URL to other sites.
PAGE_HEADERS = [
    *ASSET_HEADERS,
    ResponseHeader(name="Content-Security-Policy", value=CONTENT_SECURITY_POLICY),
    ResponseHeader(name="X-Frame-Options", value="DENY"),
    ResponseHeader(name="Referrer-Policy", value="no-referrer"),
]

"""The baseline for bench/token_api.py: a bare WSGI callable answering a constant token.

It does what no real token endpoint can skip — read the request, answer JSON of the
same shape and size — and nothing else, so it measures the server's own ceiling.
"""

import json

BODY = json.dumps(
    {
        "access_token": "x" * 96 + "_P0A1_00000000-0000-0000-0000-000000000000",
        "token_type": "Bearer",
        "expires_at": "2026-12-13T12:00:00Z",
        "expires_in": 1209600,
        "org": "org-0",
        "provider_org_id": "00000000-0000-0000-0000-000000000000",
        "cluster_id": "P0A1",
    }
).encode()
HEADERS = [
    ("Content-Type", "application/json"),
    ("Content-Length", str(len(BODY))),
    ("Cache-Control", "no-store"),
]


def application(environ, start_response):
    """Answer every request with the constant token."""
    start_response("200 OK", HEADERS)
    return [BODY]

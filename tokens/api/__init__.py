"""The token API: a consumer's key buys a currently valid access token for an org.

`GET /api/v1/orgs/<slug>/token` with `Authorization: Bearer tc_…`, and `GET /api/token`
with the sample app's headers for flows not yet moved. Every answer is JSON with
`Cache-Control: no-store`; every error is `{"error": code, "message": text}`, an
unexpected one too (500 `internal_error`, the exception logged, never an HTML page). Each
endpoint's hot path is one indexed query (the client, the org, its token and the client's
scope together), and writes nothing per request.

- views.py: the endpoints, and the JSON handler500 for /api/;
- errors.py: ApiError, its JSON rendering, the api_view wrapper;
- auth.py: key and legacy-header authentication, the failure throttle, source networks;
- addresses.py: the caller's source address (also used by the admin lockout and /metrics);
- throttle.py: failed authentications per source address.

This module stays empty: settings (AXES_CLIENT_IP_CALLABLE) and tokens.metrics import
tokens.api.addresses, which must not pull in the views.
"""

"""Property-based fuzzing of the token API against its own OpenAPI document (schemathesis).

Whatever schemathesis generates — slugs, headers, credentials — the API answers over real
HTTP without a 5xx, and every answer conforms to the document: documented status, JSON
body of the documented shape, documented headers.
"""

import json
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import ignored_auth, missing_required_header

from tokens import services

pytestmark = pytest.mark.django_db(transaction=True)

OPENAPI = Path(__file__).parent.parent / "tokens" / "api" / "openapi.json"
DOCUMENT = json.loads(OPENAPI.read_text())
schema = schemathesis.openapi.from_dict(DOCUMENT)
FUZZ = settings(
    max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None
)


@pytest.fixture
def api_server(live_server, connected_org, settings):
    """The console on a real HTTP port, one connected org, and no 429 lock-out to hide bugs."""
    settings.TOKEN_CONSOLE = {**settings.TOKEN_CONSOLE, "API_AUTH_FAILURE_LIMIT": 10**9}
    _, key = services.api_client_create(
        name="fuzz", orgs=[connected_org], legacy_from="flow", legacy_passphrase="phrase"
    )
    return live_server.url, key, connected_org


@schema.parametrize()
@FUZZ
def test_any_generated_request_gets_a_documented_answer(case, api_server):
    base_url, _, _ = api_server
    case.call_and_validate(base_url=base_url)


@schema.parametrize()
@FUZZ
def test_generated_requests_with_valid_credentials_get_documented_answers(case, api_server):
    base_url, key, org = api_server
    if case.path_parameters and len(case.path_parameters.get("slug", "")) % 2 == 0:
        case.path_parameters["slug"] = org.slug  # half the cases name the real org
    case.headers = {
        **(case.headers or {}),
        "Authorization": f"Bearer {key}",
        "X-Organization-Id": org.provider_org_id,
        "X-From": "flow",
        "X-API-Phrase": "phrase",
    }
    # The credentials are put back, valid, on purpose here: the checks that expect
    # generated or missing credentials to be refused run in the test above.
    response = case.call_and_validate(
        base_url=base_url, excluded_checks=[ignored_auth, missing_required_header]
    )
    # Schemathesis also sends other methods to check they are refused.
    expected = {200, 404} if case.method.upper() in {"GET", "HEAD"} else {405}
    assert response.status_code in expected

"""import_seed_env: the sample app's .env becomes an org, its token and a legacy API client."""

from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from tokens import clock
from tokens.demo.provider import FakeProvider, webex_id
from tokens.management.commands.import_seed_env import read_env_file
from tokens.models import ApiClient, Integration, Org, Token, TokenEvent
from tokens.selectors import tokens_due

pytestmark = pytest.mark.django_db

ORG_UUID = "1eb65fdf-9643-417f-9974-ad72cae0e10f"
SAMPLE = {
    "CLIENT_ID": "C0ffee1234sampleclientid",
    "CLIENT_SECRET": "sample-client-secret-value-0123456789",
    "ORG_ID": ORG_UUID,
    "ACCESS_TOKEN": f"SampleAccessTokenValue0123456789_P0A1_{ORG_UUID}",
    "REFRESH_TOKEN": "SampleRefreshTokenValue0123456789",
    "PASSPHRASE": "sample passphrase value",
    "FROM": "flow-designer",
    "SOURCE_IP": "203.0.113.7",
}
SECRET_KEYS = ("CLIENT_SECRET", "ACCESS_TOKEN", "REFRESH_TOKEN", "PASSPHRASE")


def write_env(directory: Path, values: dict[str, str], extra: str = "") -> Path:
    path = directory / ".env"
    lines = ["# the sample app's settings", ""] + [f"{k}={v}" for k, v in values.items()]
    path.write_text("\n".join(lines) + "\n" + extra)
    return path


def import_env(path: Path, slug: str = "acme", **options) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("import_seed_env", str(path), org=slug, stdout=out, stderr=err, **options)
    return out.getvalue(), err.getvalue()


def row_counts() -> dict[str, int]:
    return {m.__name__: m.objects.count() for m in (Integration, Org, Token, ApiClient, TokenEvent)}


def test_import_creates_integration_org_token_event_and_legacy_client(tmp_path, frozen_clock):
    out, err = import_env(write_env(tmp_path, SAMPLE), name="Acme Contact Center")
    integration = Integration.objects.get(name="Webex")
    assert (integration.client_id, integration.client_secret) == (
        SAMPLE["CLIENT_ID"],
        SAMPLE["CLIENT_SECRET"],
    )
    assert integration.token_url == "https://webexapis.com/v1/access_token"  # preset defaults
    org = Org.objects.get(slug="acme")
    assert (org.name, org.status, org.integration) == (
        "Acme Contact Center",
        "connected",
        integration,
    )
    assert (org.provider_org_id, org.cluster_id) == (ORG_UUID, "P0A1")
    token = Token.objects.get(org=org)
    assert (token.access_token, token.refresh_token) == (
        SAMPLE["ACCESS_TOKEN"],
        SAMPLE["REFRESH_TOKEN"],
    )
    assert token.version == 1
    assert token.access_expires_at == token.next_refresh_at == frozen_clock.current
    event = TokenEvent.objects.get()
    assert (event.org, event.kind, event.trigger, event.outcome) == (
        org,
        "connected",
        "command",
        "success",
    )
    assert "Imported" in event.message
    assert event.access_fingerprint == token.access_fingerprint
    client = ApiClient.objects.get()
    assert client.name == "acme (sample app)"
    assert list(client.orgs.all()) == [org]
    assert (client.legacy_from, client.allowed_networks) == ("flow-designer", "203.0.113.7")
    assert token.access_fingerprint in out and token.refresh_fingerprint in out
    assert "acme (sample app)" in out and "http://testserver/api/token" in out
    for key in SECRET_KEYS:
        assert SAMPLE[key] not in out + err
        assert SAMPLE[key] not in event.message


def test_the_imported_org_is_due_at_once(tmp_path, frozen_clock):
    import_env(write_env(tmp_path, SAMPLE))
    org = Org.objects.get(slug="acme")
    assert tokens_due(now=clock.now(), limit=10) == [(org.pk, org.integration_id)]


def test_the_legacy_endpoint_serves_the_org_with_the_samples_headers(
    tmp_path, client, integration, provider: FakeProvider
):
    """Reuses the fake provider's integration; the imported refresh token is live there.
    The expiry is unknown (due now), so the first call refreshes with the imported
    refresh token before it answers."""
    access, refresh = provider.issue_tokens_directly()
    values = {
        **SAMPLE,
        "CLIENT_ID": provider.client_id,
        "CLIENT_SECRET": provider.client_secret,
        "ORG_ID": webex_id("ORGANIZATION", provider.org_id),  # Webex's base64 form
        "ACCESS_TOKEN": access,
        "REFRESH_TOKEN": refresh,
        "SOURCE_IP": "127.0.0.1",
    }
    out, _ = import_env(write_env(tmp_path, values), integration=integration.name)
    assert f"Reused integration {integration.name!r}" in out
    provider.reset_records()
    response = client.get(
        "/api/token",
        HTTP_X_ORGANIZATION_ID=values["ORG_ID"],
        HTTP_X_FROM=values["FROM"],
        HTTP_X_API_PHRASE=values["PASSPHRASE"],
    )
    assert response.status_code == 200, response.content
    served = response.json()["access_token"]
    assert served == Token.objects.get(org__slug="acme").access_token
    assert provider.refresh_call_count() == 1
    assert provider.current_refresh_token_for(served) == refresh  # the imported grant
    assert provider.is_access_token_valid(served)


def test_without_from_and_passphrase_no_api_client_is_created(tmp_path):
    values = {k: v for k, v in SAMPLE.items() if k not in ("FROM", "PASSPHRASE")}
    out, _ = import_env(write_env(tmp_path, values))
    assert Org.objects.filter(slug="acme").exists()
    assert not ApiClient.objects.exists()
    assert "no API client" in out


def test_env_file_reader_handles_quotes_comments_and_blank_lines(tmp_path):
    path = tmp_path / ".env"
    path.write_text(
        "# comment\n\n"
        'CLIENT_ID="quoted id"\n'
        "CLIENT_SECRET='single quoted # not a comment'\n"
        "export ORG_ID=abc  # trailing comment\n"
        "FROM = spaced \n"
        "PASSPHRASE=with#hash\n"
    )
    assert read_env_file(path) == {
        "CLIENT_ID": "quoted id",
        "CLIENT_SECRET": "single quoted # not a comment",
        "ORG_ID": "abc",
        "FROM": "spaced",
        "PASSPHRASE": "with#hash",
    }


def _without(key: str) -> dict[str, str]:
    return {k: v for k, v in SAMPLE.items() if k != key}


BAD_INPUTS = {
    "missing key": (_without("REFRESH_TOKEN"), "REFRESH_TOKEN"),
    "placeholder in brackets": ({**SAMPLE, "CLIENT_ID": "<your-client-id-here>"}, "CLIENT_ID"),
    "placeholder your_": ({**SAMPLE, "CLIENT_SECRET": "your_client_secret"}, "CLIENT_SECRET"),
    "placeholder changeme": ({**SAMPLE, "PASSPHRASE": "changeme"}, "PASSPHRASE"),
    "empty value": ({**SAMPLE, "ACCESS_TOKEN": ""}, "ACCESS_TOKEN"),
    "bad source ip": ({**SAMPLE, "SOURCE_IP": "not-an-address"}, "SOURCE_IP"),
    "bad org id": ({**SAMPLE, "ORG_ID": "not-an-org-id"}, "ORG_ID"),
    "token of another org": (
        {**SAMPLE, "ORG_ID": "00000000-0000-4000-8000-000000000000"},
        "ACCESS_TOKEN belongs to org",
    ),
    "from without passphrase": (_without("PASSPHRASE"), "PASSPHRASE"),
}


@pytest.mark.parametrize("values, expected", BAD_INPUTS.values(), ids=BAD_INPUTS.keys())
def test_bad_env_values_are_refused_and_nothing_is_created(tmp_path, values, expected):
    before = row_counts()
    with pytest.raises(CommandError) as excinfo:
        import_env(write_env(tmp_path, values))
    assert expected in str(excinfo.value)
    assert "Nothing was created" in str(excinfo.value)
    assert row_counts() == before
    for key in SECRET_KEYS:
        assert not values.get(key) or values[key] not in str(excinfo.value)


def test_missing_file_is_refused(tmp_path):
    with pytest.raises(CommandError, match="No file at"):
        import_env(tmp_path / "absent.env")
    assert row_counts() == dict.fromkeys(row_counts(), 0)


def test_a_line_that_is_not_key_value_is_refused_without_echoing_it(tmp_path):
    path = write_env(tmp_path, SAMPLE, extra="secret-looking-line-without-equals\n")
    with pytest.raises(CommandError, match=r"line \d+: not KEY=value") as excinfo:
        import_env(path)
    assert "secret-looking-line" not in str(excinfo.value)
    assert not Org.objects.exists()


def test_an_existing_slug_is_refused_and_nothing_is_created(tmp_path, org):
    before = row_counts()
    with pytest.raises(CommandError, match="slug 'acme' exists already"):
        import_env(write_env(tmp_path, SAMPLE))
    assert row_counts() == before


def test_an_integration_with_another_client_id_is_refused(tmp_path, integration):
    before = row_counts()
    with pytest.raises(CommandError, match="another client id"):
        import_env(write_env(tmp_path, SAMPLE), integration=integration.name)
    assert row_counts() == before


def test_an_integration_with_another_client_secret_is_refused(tmp_path, integration):
    integration.client_id = SAMPLE["CLIENT_ID"]
    integration.save()
    before = row_counts()
    with pytest.raises(CommandError, match="another client secret") as refused:
        import_env(write_env(tmp_path, SAMPLE), integration=integration.name)
    assert SAMPLE["CLIENT_SECRET"] not in str(refused.value)
    assert row_counts() == before


def test_an_org_already_bound_to_the_provider_org_is_refused(tmp_path, org):
    Org.objects.filter(pk=org.pk).update(provider_org_id=ORG_UUID)
    before = row_counts()
    with pytest.raises(CommandError, match="already bound"):
        import_env(write_env(tmp_path, SAMPLE), "acme-2")
    assert row_counts() == before


def test_a_bad_slug_is_refused_and_nothing_is_created(tmp_path):
    with pytest.raises(CommandError, match="slug"):
        import_env(write_env(tmp_path, SAMPLE), "Not a slug")
    assert row_counts() == dict.fromkeys(row_counts(), 0)


def test_dry_run_shows_what_it_would_create_and_changes_nothing(tmp_path, caplog):
    before = row_counts()
    out, err = import_env(write_env(tmp_path, SAMPLE), name="Acme Contact Center", dry_run=True)
    assert row_counts() == before  # nothing created, not even the event
    assert "Would create integration 'Webex'." in out
    assert "Would create org 'acme' (Acme Contact Center), connected: provider org" in out
    assert "Would create API client 'acme (sample app)'" in out
    assert "Dry run: nothing was created." in out
    assert "org imported" not in caplog.text
    for key in SECRET_KEYS:
        assert SAMPLE[key] not in out + err + caplog.text

    out, _ = import_env(write_env(tmp_path, SAMPLE))  # the real import still works after it
    assert "Created org 'acme'" in out
    assert Org.objects.filter(slug="acme").exists()


def test_dry_run_refuses_what_the_import_would_refuse(tmp_path, org):
    before = row_counts()
    with pytest.raises(CommandError, match="exists already"):
        import_env(write_env(tmp_path, SAMPLE), slug=org.slug, dry_run=True)
    assert row_counts() == before

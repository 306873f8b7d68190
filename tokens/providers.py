"""Provider presets and what we know about the shape of their tokens."""

import base64
import binascii
import re
import uuid
from dataclasses import dataclass


@dataclass(frozen=True)
class ProviderPreset:
    """Default endpoints and scopes for one kind of OAuth2 provider."""

    key: str
    label: str
    authorize_url: str = ""
    token_url: str = ""
    userinfo_url: str = ""
    revocation_url: str = ""
    scopes: str = ""
    token_auth_method: str = "client_secret_post"


WEBEX = ProviderPreset(
    key="webex",
    label="Webex / Webex Contact Center",
    authorize_url="https://webexapis.com/v1/authorize",
    token_url="https://webexapis.com/v1/access_token",
    userinfo_url="https://webexapis.com/v1/people/me",
    revocation_url="https://webexapis.com/v1/authorizations",
    scopes="cjp:config_read cjp:config_write spark:people_read",
    token_auth_method="client_secret_post",
)

GENERIC = ProviderPreset(key="generic", label="Generic OAuth2")

PRESETS: dict[str, ProviderPreset] = {preset.key: preset for preset in (WEBEX, GENERIC)}
PROVIDER_CHOICES = [(preset.key, preset.label) for preset in PRESETS.values()]


@dataclass(frozen=True)
class WebexTokenSuffix:
    """The routing suffix of a Webex access token: `<token>_<clusterId>_<orgId>`."""

    cluster_id: str
    org_id: str


_CLUSTER_ID = re.compile(r"[A-Za-z0-9]{2,16}")


def parse_webex_access_token(access_token: str) -> WebexTokenSuffix | None:
    """Read cluster and org id from a Webex access token's suffix; None when it has none.

    The whole string stays the bearer value: the suffix is only read, never cut off.
    """
    parts = access_token.rsplit("_", 2)
    if len(parts) != 3 or not parts[0]:
        return None
    _, cluster_id, org_id = parts
    if not _CLUSTER_ID.fullmatch(cluster_id):
        return None
    try:
        parsed_org = uuid.UUID(org_id)
    except ValueError:
        return None
    return WebexTokenSuffix(cluster_id=cluster_id, org_id=str(parsed_org))


# Longer than any base64 of `ciscospark://<region>/ORGANIZATION/<uuid>`: not decoded at all.
_ORG_ID_MAX_LENGTH = 256
_ORG_HYDRA_ID = re.compile(r"ciscospark://[a-z0-9-]+/ORGANIZATION/(?P<uuid>[0-9a-fA-F-]{36})")


def normalise_org_id(org_id: str) -> str | None:
    """A provider org id as stored: the UUID itself, or decoded from Webex's base64 form."""
    try:
        return str(uuid.UUID(org_id))
    except ValueError:
        return decode_webex_org_id(org_id)


def decode_webex_org_id(encoded: str) -> str | None:
    """Decode people/me's orgId (url-safe base64 of `ciscospark://us/ORGANIZATION/<uuid>`).

    Returns the uuid, or None when the value is not of that shape.
    """
    if not encoded or len(encoded) > _ORG_ID_MAX_LENGTH:
        return None
    padded = encoded + "=" * (-len(encoded) % 4)
    try:
        decoded = base64.urlsafe_b64decode(padded.encode("ascii")).decode("utf-8")
    except (binascii.Error, UnicodeError, ValueError):
        return None
    match = _ORG_HYDRA_ID.fullmatch(decoded)
    if not match:
        return None
    try:
        return str(uuid.UUID(match["uuid"]))
    except ValueError:
        return None

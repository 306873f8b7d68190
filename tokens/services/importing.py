"""Importing an org from the single-org sample app (its .env), so a flow can move over."""

import logging
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.db import transaction

from tokens import apikeys, clock
from tokens.apikeys import constant_time_equal
from tokens.models import ApiClient, Integration, Org, Token, TokenEvent, fingerprint
from tokens.providers import normalise_org_id, parse_webex_access_token

from .api_clients import api_client_create
from .events import token_event_record

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SeedImport:
    """What an import created or reused. The API client's key is not kept: it was never shown."""

    integration: Integration
    integration_created: bool
    org: Org
    token: Token
    api_client: ApiClient | None


@transaction.atomic
def org_import_seed(
    *,
    slug: str,
    org_name: str,
    integration_name: str,
    client_id: str,
    client_secret: str,
    org_id: str,
    access_token: str,
    refresh_token: str,
    legacy_from: str = "",
    legacy_passphrase: str = "",
    allowed_networks: str = "",
    dry_run: bool = False,
) -> SeedImport:
    """Create the sample app's org, its token and its legacy API client in one transaction.

    The token's expiry is unknown, so it is due at once: the next sweep refreshes it.
    Raises ValidationError (naming the sample's .env key where one is at fault); then
    nothing is created. With `dry_run`, everything is created, checked and rolled back,
    so the result shows what an import would create.
    """
    provider_org_id = _provider_org_id(org_id, access_token)
    _check_networks(allowed_networks)
    if Org.objects.filter(slug=slug).exists():
        raise ValidationError(f"An org with slug {slug!r} exists already; choose another --org.")
    bound = Org.objects.filter(provider_org_id=provider_org_id).first()
    if bound is not None:
        raise ValidationError(
            f"Org {bound.slug!r} is already bound to provider org {provider_org_id} (ORG_ID)."
        )
    integration, created = _integration(integration_name, client_id, client_secret)
    org = _org_create(slug, org_name, integration, provider_org_id, access_token)
    token = _token_create(org, access_token, refresh_token)
    token_event_record(
        org=org,
        kind=TokenEvent.Kind.CONNECTED,
        trigger=TokenEvent.Trigger.COMMAND,
        outcome=TokenEvent.Outcome.SUCCESS,
        token=token,
        message="Imported from the sample app's .env; expiry unknown, so refreshed at once.",
    )
    client = None
    if legacy_from and legacy_passphrase:
        client, _key = api_client_create(
            name=f"{slug} (sample app)",
            orgs=[org],
            legacy_from=legacy_from,
            legacy_passphrase=legacy_passphrase,
            allowed_networks=allowed_networks,
        )
    if dry_run:
        transaction.set_rollback(True)  # checked and shown, never kept
    else:
        logger.info("org imported org=%s access_fp=%s", org.slug, token.access_fingerprint)
    return SeedImport(integration, created, org, token, client)


def _provider_org_id(org_id: str, access_token: str) -> str:
    """ORG_ID as a UUID (it may be Webex's base64 org id), checked against the token suffix."""
    provider_org_id = normalise_org_id(org_id)
    if not provider_org_id:
        raise ValidationError("ORG_ID is neither a UUID nor a Webex (base64) org id.")
    suffix = parse_webex_access_token(access_token)
    if suffix and suffix.org_id != provider_org_id:
        raise ValidationError(
            f"ACCESS_TOKEN belongs to org {suffix.org_id}, but ORG_ID names {provider_org_id}."
        )
    return provider_org_id


def _check_networks(allowed_networks: str) -> None:
    try:
        apikeys.networks_parse(allowed_networks)
    except ValueError as exc:
        raise ValidationError(f"SOURCE_IP: {exc}") from None


def _integration(name: str, client_id: str, client_secret: str) -> tuple[Integration, bool]:
    """The Webex integration of that name (its client id must match), or a new one."""
    existing = Integration.objects.filter(name=name).first()
    if existing is not None:
        if existing.client_id != client_id:
            raise ValidationError(
                f"Integration {name!r} exists with another client id than CLIENT_ID; "
                "name a new one with --integration."
            )
        if not constant_time_equal(existing.client_secret, client_secret):
            raise ValidationError(
                f"Integration {name!r} holds another client secret than CLIENT_SECRET: update "
                "it in the admin first, or name a new one with --integration."
            )
        return existing, False
    integration = Integration(
        name=name, provider="webex", client_id=client_id, client_secret=client_secret
    )
    integration.apply_preset_defaults()
    integration.full_clean()
    integration.save()
    return integration, True


def _org_create(
    slug: str, name: str, integration: Integration, provider_org_id: str, access_token: str
) -> Org:
    suffix = parse_webex_access_token(access_token)
    org = Org(
        name=name,
        slug=slug,
        integration=integration,
        status=Org.Status.CONNECTED,
        provider_org_id=provider_org_id,
        cluster_id=suffix.cluster_id if suffix else "",
        connected_at=clock.now(),
    )
    org.full_clean()
    org.save()
    return org


def _token_create(org: Org, access_token: str, refresh_token: str) -> Token:
    """Version 1 of the org's token; due now, since the sample never says when it expires."""
    now = clock.now()
    return Token.objects.create(
        org=org,
        integration_id=org.integration_id,
        access_token=access_token,
        refresh_token=refresh_token,
        access_fingerprint=fingerprint(access_token),
        refresh_fingerprint=fingerprint(refresh_token),
        obtained_at=now,
        access_expires_at=now,
        next_refresh_at=now,
        version=1,
    )

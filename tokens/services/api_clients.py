"""API clients: create one (its key is returned once), revoke it, note when it was used."""

from collections.abc import Iterable
from datetime import datetime, timedelta

from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q

from tokens import apikeys, clock, selectors
from tokens.conf import app_settings
from tokens.models import ApiClient, Org

from .events import acting_user


@transaction.atomic
def api_client_create(
    *,
    name: str,
    orgs: Iterable[Org] = (),
    all_orgs: bool = False,
    allowed_networks: str = "",
    legacy_from: str = "",
    legacy_passphrase: str = "",
    created_by: AbstractBaseUser | None = None,
) -> tuple[ApiClient, str]:
    """Create an API client and return it with its key, which is never stored or shown again.

    Raises ValidationError for a duplicate name, a bad network, a legacy X-From without a
    passphrase (or the reverse), or a legacy X-From that another client may use for one of
    the same orgs.
    """
    client = ApiClient(
        name=name,
        all_orgs=all_orgs,
        allowed_networks=allowed_networks,
        legacy_from=legacy_from,
        created_by=acting_user(created_by),
    )
    key = api_client_key_assign(client=client)
    api_client_legacy_passphrase_set(client=client, passphrase=legacy_passphrase)
    client.full_clean()
    orgs = list(orgs)
    api_client_rules_check(
        legacy_from=legacy_from,
        legacy_passphrase=legacy_passphrase,
        passphrase_stored=False,
        all_orgs=all_orgs,
        orgs=orgs,
        exclude_pk=None,
    )
    client.save()
    client.orgs.set(orgs)
    return client, key


@transaction.atomic
def api_client_update(
    *,
    client: ApiClient,
    name: str,
    orgs: Iterable[Org] = (),
    all_orgs: bool = False,
    allowed_networks: str = "",
    legacy_from: str = "",
    legacy_passphrase: str = "",
) -> ApiClient:
    """Change an API client's name, scope, networks and legacy headers; its key stays.

    A blank `legacy_passphrase` keeps the stored one; a blank `legacy_from` ends legacy
    access and forgets the passphrase. Raises ValidationError as api_client_create does.
    """
    orgs = list(orgs)
    api_client_rules_check(
        legacy_from=legacy_from,
        legacy_passphrase=legacy_passphrase,
        passphrase_stored=bool(client.legacy_passphrase_hash),
        all_orgs=all_orgs,
        orgs=orgs,
        exclude_pk=client.pk,
    )
    client.name, client.all_orgs = name, all_orgs
    client.allowed_networks, client.legacy_from = allowed_networks, legacy_from
    if legacy_passphrase:
        api_client_legacy_passphrase_set(client=client, passphrase=legacy_passphrase)
    if not legacy_from:
        client.legacy_passphrase_hash = ""
    client.full_clean()
    client.save()
    client.orgs.set(orgs)
    return client


def api_client_rules_check(
    *,
    legacy_from: str,
    legacy_passphrase: str,
    passphrase_stored: bool,
    all_orgs: bool,
    orgs: list[Org],
    exclude_pk: int | None,
) -> None:
    """Raise ValidationError, by field, for legacy headers given by half or clashing with
    another client's; the admin form shows these errors before anything is saved."""
    errors: dict[str, list] = {}
    half = "Legacy access needs both X-From and X-API-Phrase."
    if legacy_from and not (legacy_passphrase or passphrase_stored):
        errors["legacy_passphrase"] = [half]
    if legacy_passphrase and not legacy_from:
        errors["legacy_from"] = [half]
    try:
        api_client_legacy_from_check(
            legacy_from=legacy_from, all_orgs=all_orgs, orgs=orgs, exclude_pk=exclude_pk
        )
    except ValidationError as exc:
        exc.update_error_dict(errors)
    if errors:
        raise ValidationError(errors)


def api_client_legacy_from_check(
    *, legacy_from: str, all_orgs: bool, orgs: list[Org], exclude_pk: int | None
) -> None:
    """Raise ValidationError when another active client with this legacy X-From may read
    one of the same orgs: /api/token checks one passphrase, so it must find one client."""
    other = selectors.api_client_legacy_overlap(
        legacy_from=legacy_from, all_orgs=all_orgs, orgs=orgs, exclude_pk=exclude_pk
    )
    if other is not None:
        raise ValidationError(
            {
                "legacy_from": f"API client {other.name!r} has this X-From and may read one "
                "of the same orgs, so /api/token could not tell the two apart. Choose "
                "another X-From."
            }
        )


def api_client_key_assign(*, client: ApiClient) -> str:
    """Give a (new or unsaved) client a fresh key; return the key. The caller saves."""
    new = apikeys.key_generate()
    while ApiClient.objects.filter(key_prefix=new.prefix).exists():
        new = apikeys.key_generate()  # a prefix collision: 1 in 36^8 per client
    client.key_prefix, client.key_hash = new.prefix, new.digest
    return new.key


def api_client_legacy_passphrase_set(*, client: ApiClient, passphrase: str) -> None:
    """Store a legacy X-API-Phrase as a salted hash (blank: no legacy access). The caller saves."""
    client.legacy_passphrase_hash = apikeys.passphrase_hash(passphrase) if passphrase else ""


def api_client_revoke(*, client: ApiClient) -> bool:
    """Revoke a client's key at once; return False when it was revoked already."""
    return bool(
        ApiClient.objects.filter(pk=client.pk, revoked_at__isnull=True).update(
            revoked_at=clock.now()
        )
    )


def api_client_touch(*, client_id: int, last_used_at: datetime | None, now: datetime) -> None:
    """Note that a client was used, at most once per API_LAST_USED_INTERVAL (not per call).

    `last_used_at` is the value the caller read; only when it is stale is there a write,
    and the conditional update keeps concurrent processes to one.
    """
    stale = now - timedelta(seconds=app_settings.API_LAST_USED_INTERVAL)
    if last_used_at is not None and last_used_at > stale:
        return
    ApiClient.objects.filter(pk=client_id).filter(
        Q(last_used_at__isnull=True) | Q(last_used_at__lte=stale)
    ).update(last_used_at=now)

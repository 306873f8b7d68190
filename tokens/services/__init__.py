"""Everything that changes token state. Views, admin, tasks and commands call these;
nothing else writes a Token, and each write is one transaction with its TokenEvent."""

from .api_clients import (
    api_client_create,
    api_client_key_assign,
    api_client_legacy_from_check,
    api_client_legacy_passphrase_set,
    api_client_revoke,
    api_client_rules_check,
    api_client_touch,
    api_client_update,
)
from .connect import org_connect, org_connect_failed
from .consumer import ConsumerToken, token_for_consumer
from .disconnect import DisconnectResult, org_disconnect
from .dispatch import refresh_dispatch, refresh_dispatch_due, refresh_expiry_alerts_send
from .events import token_event_record
from .importing import SeedImport, org_import_seed
from .keys import KeySample, encryption_keys_rotate, encryption_keys_sample
from .refresh import RefreshOutcome, RefreshResult, token_refresh
from .retention import PruneResult, token_events_prune
from .served import served_flush, served_record

__all__ = [
    "ConsumerToken",
    "DisconnectResult",
    "KeySample",
    "PruneResult",
    "RefreshOutcome",
    "RefreshResult",
    "SeedImport",
    "api_client_create",
    "api_client_key_assign",
    "api_client_legacy_from_check",
    "api_client_legacy_passphrase_set",
    "api_client_revoke",
    "api_client_rules_check",
    "api_client_touch",
    "api_client_update",
    "encryption_keys_rotate",
    "encryption_keys_sample",
    "org_connect",
    "org_connect_failed",
    "org_disconnect",
    "org_import_seed",
    "refresh_dispatch",
    "refresh_dispatch_due",
    "refresh_expiry_alerts_send",
    "served_flush",
    "served_record",
    "token_event_record",
    "token_events_prune",
    "token_for_consumer",
    "token_refresh",
]

"""Everything that changes token state. Views, admin, tasks and commands call these;
nothing else writes a Token, and each write is one transaction with its TokenEvent."""

from .connect import org_connect, org_connect_failed
from .dispatch import refresh_dispatch_due, refresh_expiry_alerts_send
from .events import token_event_record
from .refresh import RefreshResult, token_refresh

__all__ = [
    "RefreshResult",
    "org_connect",
    "org_connect_failed",
    "refresh_dispatch_due",
    "refresh_expiry_alerts_send",
    "token_event_record",
    "token_refresh",
]

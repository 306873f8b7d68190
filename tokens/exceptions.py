"""The Token Console's own exceptions. No message ever contains a secret."""


class TokenConsoleError(Exception):
    """Base class of the app's errors."""


class EncryptionKeyError(TokenConsoleError):
    """FIELD_ENCRYPTION_KEYS is missing, malformed, or cannot decrypt a stored value."""

    #: Recorded on the event and in the org's status reason when a refresh meets one.
    error_code = "encryption_key"


class ProviderError(TokenConsoleError):
    """The OAuth provider refused a request or answered something unusable.

    A refresh treats only InvalidGrant and InvalidClient as permanent; any other
    provider error is retried with backoff (see services.refresh).
    """

    def __init__(
        self,
        message: str,
        *,
        error_code: str = "",
        http_status: int | None = None,
        description: str = "",
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.error_code = error_code
        self.http_status = http_status
        self.description = description
        self.retry_after = retry_after


class ProviderUnavailable(ProviderError):
    """The provider could not be reached, timed out, or answered 5xx / 429."""


class ProviderResponseInvalid(ProviderError):
    """The provider answered, but not with a usable token response (HTML, missing fields).

    Often a proxy or maintenance page in front of the provider: worth another try.
    """


class InvalidGrant(ProviderError):
    """The code or refresh token was rejected (invalid_grant): a human must reconnect."""


class InvalidClient(ProviderError):
    """The client id or secret was rejected (invalid_client): fix the integration."""


class ConnectError(TokenConsoleError):
    """A connect flow cannot go on; the message says why and what to do."""

    def __init__(self, message: str, *, error_code: str = "connect_refused") -> None:
        super().__init__(message)
        #: Recorded on the connect_failed event (a ProviderError has its own).
        self.error_code = error_code


class OAuthStateError(ConnectError):
    """The callback's state is missing, unknown, expired or already used."""


class OrgNotRefreshable(TokenConsoleError):
    """The org is pending, disabled or needs a reconnect: no refresh is attempted."""


class OrgNotConnected(TokenConsoleError):
    """The org holds no token: there is nothing to disconnect."""


class TwoFactorError(TokenConsoleError):
    """A second-factor device cannot be enrolled as asked."""


class RefreshInProgress(TokenConsoleError):
    """A refresh holds the org's token right now: try again once it is over."""


class DisconnectInProgress(TokenConsoleError):
    """A disconnect holds the org's token right now: it is being wiped already."""


class OrgReconnected(TokenConsoleError):
    """The org was reconnected while a disconnect was at the provider: its new tokens stay."""


class AnswerNotStored(ProviderError):
    """The provider answered, but storing its answer failed (a database fault, a bug).

    Not the provider's fault, but handled like a transient provider error: an event is
    recorded and a retry is planned with backoff.
    """


class UnsafeURL(TokenConsoleError):
    """A webhook URL is not https to a public address (the SSRF guard refused it)."""


class AlertChannelError(TokenConsoleError):
    """An alert channel (mail, Webex space) did not take an alert; it is retried."""


class TokenUnavailable(TokenConsoleError):
    """The org has no access token to serve: it is pending, disabled or needs a reconnect
    (no refresh token, a refused refresh, or no configured key decrypts its token)."""

    def __init__(self, message: str, *, reason: str, status_reason: str = "") -> None:
        super().__init__(message)
        #: pending | needs_reconnect | disabled: what the API answers as its error code.
        self.reason = reason
        self.status_reason = status_reason


class TokenExpired(TokenConsoleError):
    """The org's access token has expired and the provider could not give a new one."""

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        #: Seconds until the planned retry (at least 1).
        self.retry_after = retry_after

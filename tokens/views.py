"""The OAuth connect flow: send an admin to the provider, take the callback."""

import logging
import re
import secrets
from collections.abc import Callable
from functools import wraps

from django.contrib import admin, messages
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods

from . import clock, display, oauth, services
from .conf import app_settings, console_base_url
from .exceptions import ConnectError, EncryptionKeyError, OAuthStateError, ProviderError
from .models import Org
from .twofactor import staff_access_allowed

logger = logging.getLogger(__name__)

SESSION_KEY = "tokens_oauth_pending"
_ERROR_CODE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
# Lengths accepted from the callback's query, which anyone can send: what we issued is far
# shorter (a state is 43 characters), and what a provider sends fits well within them.
STATE_MAX_LENGTH = 128
CODE_MAX_LENGTH = 2048
# The provider's error_description is shown to the admin and recorded, cut to this length.
ERROR_DESCRIPTION_MAX_LENGTH = 300
# C0 and C1 controls, DEL and the bidi controls that reorder what an admin page shows.
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def redirect_uri() -> str:
    """The callback URL to register at the provider, built from CONSOLE_BASE_URL."""
    return console_base_url() + reverse("tokens:oauth-callback")


def staff_permission_required(perm: str) -> Callable:
    """Anonymous (or, with REQUIRE_STAFF_2FA, OTP-unconfirmed) users go to the login page;
    signed-in users without staff + perm get 403."""

    def decorator(view: Callable) -> Callable:
        @wraps(view)
        def wrapped(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
            if not (request.user.is_authenticated and staff_access_allowed(request.user)):
                # Unconfirmed by OTP (when required) counts as signed out: the admin's
                # login page asks for the code.
                return redirect_to_login(request.get_full_path(), reverse("admin:login"))
            if not (request.user.is_active and request.user.is_staff):
                raise PermissionDenied("Only staff can connect orgs.")
            if not request.user.has_perm(perm):
                raise PermissionDenied(f"You need the {perm} permission.")
            return view(request, *args, **kwargs)

        return wrapped

    return decorator


@require_http_methods(["GET", "POST"])
@staff_permission_required("tokens.connect_org")
def oauth_connect(request: HttpRequest, slug: str) -> HttpResponse:
    """GET: a confirmation page. POST (CSRF-checked): start an authorization-code + PKCE
    flow for one org and send the admin to the provider."""
    org = get_object_or_404(Org.objects.select_related("integration"), slug=slug)
    if org.status == Org.Status.DISABLED:
        messages.error(request, f"{org} is disabled: enable it before connecting.")
        return HttpResponseRedirect(_org_admin_url(org))
    try:  # the client secret is decrypted here: refuse before anything is remembered
        config = org.integration.client_config()
    except EncryptionKeyError:
        return _error_page(request, _undecryptable_secret_message(org), status=409)
    if request.method != "POST":
        # A link from another site must not start (or, with a provider that consents
        # at once, finish) a reconnect: only the form's POST does.
        return _confirm_connect_page(request, org)
    state = secrets.token_urlsafe(32)
    pkce = oauth.make_pkce_pair()
    _remember_state(request, state, org=org, verifier=pkce.verifier)
    url = oauth.build_authorize_url(
        config,
        redirect_uri=redirect_uri(),
        state=state,
        code_challenge=pkce.challenge,
    )
    logger.info("connect started org=%s user=%s", org.slug, request.user.get_username())
    return HttpResponseRedirect(url)


@require_GET
@staff_permission_required("tokens.connect_org")
def oauth_callback(request: HttpRequest) -> HttpResponse:
    """Finish a connect flow: check the state, exchange the code, store the tokens."""
    try:
        pending = _take_state(request, request.GET.get("state", ""))
    except OAuthStateError as exc:
        return _error_page(request, str(exc), status=400)
    org = Org.objects.select_related("integration").filter(pk=pending["org"]).first()
    if org is None:
        return _error_page(request, "The org of this sign-in no longer exists.", status=404)
    if pending.get("integration", org.integration_id) != org.integration_id:
        # The code was issued to the other integration: never send it to this one.
        return _error_page(
            request,
            f"{org} was moved to another integration during the sign-in. Start again with Connect.",
            status=409,
        )
    error_code = request.GET.get("error", "")
    if error_code:
        if not _ERROR_CODE.fullmatch(error_code):
            error_code = "invalid_error_code"
        description = _printable(request.GET.get("error_description", ""))[
            :ERROR_DESCRIPTION_MAX_LENGTH
        ]
        services.org_connect_failed(
            org=org, error_code=error_code, description=description, actor=request.user
        )
        messages.error(request, f"{org} was not connected: the provider answered {error_code}.")
        return HttpResponseRedirect(_org_admin_url(org))
    action = "Connected" if org.status == Org.Status.PENDING else "Reconnected"
    code = request.GET.get("code", "")
    if not code or len(code) > CODE_MAX_LENGTH:
        return _error_page(request, "The provider sent no usable authorization code.", status=400)
    try:
        token = services.org_connect(
            org=org,
            code=code,
            code_verifier=pending["verifier"],
            redirect_uri=redirect_uri(),
            actor=request.user,
        )
    except (ProviderError, ConnectError) as exc:
        messages.error(request, f"{org} was not connected: {exc} Its current tokens are kept.")
        return HttpResponseRedirect(_org_admin_url(org))
    except EncryptionKeyError as exc:  # a key went missing while the admin was at the provider
        return _error_page(
            request, f"{org} was not connected: {exc} Nothing was changed.", status=409
        )
    _log_change(request, org, f"{action} (token version {token.version}).")
    messages.success(
        request,
        f"{org} is connected. Access token {token.access_fingerprint} "
        f"expires {display.exact(token.access_expires_at)}.",
    )
    return HttpResponseRedirect(_org_admin_url(org))


def _log_change(request: HttpRequest, org: Org, message: str) -> None:
    """Record a connect in Django's change log, as the admin records its own actions."""
    LogEntry.objects.log_actions(
        user_id=request.user.pk,
        queryset=[org],
        action_flag=CHANGE,
        change_message=message,
        single_object=True,
    )


def _remember_state(request: HttpRequest, state: str, *, org: Org, verifier: str) -> None:
    """Keep a few pending flows per session, newest last; the oldest falls out."""
    pending = request.session.get(SESSION_KEY, {})
    pending[state] = {
        "org": org.pk,
        "integration": org.integration_id,
        "verifier": verifier,
        "user": request.user.pk,
        "created": clock.now().timestamp(),
    }
    newest = sorted(pending.items(), key=lambda item: item[1]["created"])
    request.session[SESSION_KEY] = dict(newest[-app_settings.OAUTH_MAX_PENDING_STATES :])


def _take_state(request: HttpRequest, state: str) -> dict:
    """Pop the pending flow for `state` (single use) and check it is this user's and fresh."""
    if not state:
        raise OAuthStateError(
            "The callback carries no state, so it cannot be matched to a connect "
            "request. Start again with Connect on the org page."
        )
    pending = request.session.get(SESSION_KEY, {})
    entry = pending.pop(state, None) if len(state) <= STATE_MAX_LENGTH else None
    request.session[SESSION_KEY] = pending
    if entry is None:
        raise OAuthStateError(
            "This sign-in does not match a connect request of your session: it was already "
            "used, started in another browser, or forged. Start again with Connect."
        )
    if entry["user"] != request.user.pk:
        raise OAuthStateError("This sign-in was started by another user. Start again.")
    age = clock.now().timestamp() - entry["created"]
    if age > app_settings.OAUTH_STATE_TTL:
        raise OAuthStateError(
            f"This sign-in took longer than {app_settings.OAUTH_STATE_TTL} s and expired. "
            "Start again with Connect."
        )
    return entry


def _confirm_connect_page(request: HttpRequest, org: Org) -> HttpResponse:
    """The page a GET of the connect URL shows: what connecting does, and a POST button."""
    context = {
        **admin.site.each_context(request),
        "title": f"{'Connect' if org.status == Org.Status.PENDING else 'Reconnect'} {org}",
        "org": org,
        "integration": org.integration,
        "opts": Org._meta,
    }
    return render(request, "admin/tokens/org/connect_confirmation.html", context)


def _undecryptable_secret_message(org: Org) -> str:
    return (
        f"{org} cannot be connected: the client secret of its integration "
        f"{org.integration} cannot be decrypted with the configured keys "
        "(FIELD_ENCRYPTION_KEYS). Put the key that encrypted it back, or enter the client "
        "secret again in the integration. Nothing was changed."
    )


def _printable(text: str) -> str:
    """Provider text with control characters gone and whitespace runs collapsed."""
    return " ".join(_CONTROL_CHARACTERS.sub(" ", text).split())


def _error_page(request: HttpRequest, message: str, *, status: int) -> HttpResponse:
    logger.warning("connect refused status=%s reason=%s", status, message)
    return render(
        request,
        "tokens/connect_error.html",
        {"message": message, "title": "Connection failed"},
        status=status,
    )


def _org_admin_url(org: Org) -> str:
    return reverse("admin:tokens_org_change", args=[org.pk])

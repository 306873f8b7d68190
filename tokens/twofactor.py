"""Two-factor sign-in for staff with django-otp (TOTP), switched by REQUIRE_STAFF_2FA."""

from itertools import islice

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django_otp import devices_for_user
from django_otp.admin import OTPAdminAuthenticationForm
from django_otp.models import Device
from django_otp.plugins.otp_totp.models import TOTPDevice

from .exceptions import TwoFactorError

OTP_LOGIN_TEMPLATE = "admin/otp_login.html"


def staff_2fa_required() -> bool:
    """Whether staff must confirm their sign-in with a one-time code."""
    return bool(getattr(settings, "REQUIRE_STAFF_2FA", False))


def user_is_verified(user: AbstractBaseUser) -> bool:
    """Whether this session's sign-in was confirmed by one of the user's OTP devices."""
    is_verified = getattr(user, "is_verified", None)  # installed by django-otp's middleware
    return bool(is_verified and is_verified())


def staff_access_allowed(user: AbstractBaseUser) -> bool:
    """The second factor, when required: False for a staff session not confirmed by OTP."""
    return not staff_2fa_required() or user_is_verified(user)


class StaffOTPAuthenticationForm(OTPAdminAuthenticationForm):
    """The admin login form with an OTP code; a user's only device is chosen for them."""

    otp_error_messages = {
        **OTPAdminAuthenticationForm.otp_error_messages,
        "token_required": "Enter the one-time code from your authenticator app.",
        "invalid_token": (
            "That one-time code is wrong, expired or already used: enter the current code "
            "from your authenticator app."
        ),
        "device_required": "Choose the device whose code you entered.",
        "no_device": (
            "This account has no authenticator enrolled, and this console requires one. "
            "An administrator can enrol one with: manage.py totp_enrol USERNAME"
        ),
    }

    def clean_otp(self, user: AbstractBaseUser | None) -> None:
        """Refuse, with a clear message, a user who has no device to confirm with."""
        if user is not None and next(devices_for_user(user, confirmed=True), None) is None:
            raise ValidationError(self.otp_error_messages["no_device"], code="no_device")
        super().clean_otp(user)

    def _chosen_device(self, user: AbstractBaseUser) -> Device | None:
        chosen = super()._chosen_device(user)
        if chosen is not None or self.cleaned_data.get("otp_device"):
            return chosen
        # django-otp asks for an explicit device so a wrong code is not counted against
        # every device; with exactly one confirmed device there is nothing to choose.
        devices = list(islice(devices_for_user(user, confirmed=True), 2))
        return devices[0] if len(devices) == 1 else None

    def _update_form(self, user: AbstractBaseUser) -> None:
        super()._update_form(user)
        # django-otp renders the password back into the page after a wrong code; a
        # password is never sent back, so it is typed again.
        self.fields["password"].widget.render_value = False


@transaction.atomic
def totp_device_enrol(*, user: AbstractBaseUser, name: str) -> TOTPDevice:
    """Create a confirmed TOTP device for `user`; its key is returned, never logged."""
    if TOTPDevice.objects.filter(user=user, name=name).exists():
        raise TwoFactorError(
            f"{user.get_username()} already has a TOTP device named {name!r}: delete it in "
            "the admin (TOTP devices) or choose another --name."
        )
    return TOTPDevice.objects.create(user=user, name=name, confirmed=True)

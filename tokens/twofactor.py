"""Two-factor sign-in for staff with django-otp (TOTP), switched by REQUIRE_STAFF_2FA."""

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django_otp.plugins.otp_totp.models import TOTPDevice

from .exceptions import TwoFactorError


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


@transaction.atomic
def totp_device_enrol(*, user: AbstractBaseUser, name: str) -> TOTPDevice:
    """Create a confirmed TOTP device for `user`; its key is returned, never logged."""
    if TOTPDevice.objects.filter(user=user, name=name).exists():
        raise TwoFactorError(
            f"{user.get_username()} already has a TOTP device named {name!r}: delete it in "
            "the admin (TOTP devices) or choose another --name."
        )
    return TOTPDevice.objects.create(user=user, name=name, confirmed=True)

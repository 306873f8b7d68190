"""The admin login form with a one-time code, for staff who need a second factor."""

from itertools import islice

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django_otp import devices_for_user
from django_otp.admin import OTPAdminAuthenticationForm
from django_otp.models import Device

OTP_LOGIN_TEMPLATE = "admin/otp_login.html"


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

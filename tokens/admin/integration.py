"""Integration admin: OAuth client registrations, the client secret write-only."""

from django import forms
from django.contrib import admin
from django.db.models import Count

from tokens.exceptions import EncryptionKeyError
from tokens.fields import SETTING
from tokens.models import Integration
from tokens.providers import PRESETS
from tokens.views import redirect_uri


class IntegrationForm(forms.ModelForm):
    """Client secret is write-only: never rendered back; left blank, the stored one stays."""

    client_secret = forms.CharField(
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Write-only. Leave blank to keep the stored secret.",
    )

    class Meta:
        model = Integration
        fields = [
            "name",
            "provider",
            "client_id",
            "client_secret",
            "token_auth_method",
            "scopes",
            "authorize_url",
            "token_url",
            "userinfo_url",
            "revocation_url",
        ]
        # The model's value is never read into the form (nor written from it): the page
        # opens even when no key decrypts the stored secret, and save() sets a typed one.
        exclude = ["client_secret"]  # noqa: DJ006 (fields is set too; the admin passes its own)

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.initial.pop("client_secret", None)
        for name in ("authorize_url", "token_url"):
            self.fields[name].required = False
            self.fields[name].help_text = "Blank: the provider preset's URL."
        self.fields["scopes"].help_text = "Space-separated. Blank: the provider preset's scopes."

    def clean_client_secret(self) -> str:
        secret = self.cleaned_data["client_secret"]
        if secret:
            return secret
        try:
            stored = self.instance.pk and self.instance.client_secret
        except EncryptionKeyError:
            raise forms.ValidationError(
                f"No key in {SETTING} decrypts the stored client secret: enter it again, "
                "or put the key that encrypted it back."
            ) from None
        if not stored:
            raise forms.ValidationError("A client secret is required for a new integration.")
        return secret

    def clean(self) -> dict:
        cleaned = super().clean()
        preset = PRESETS.get(cleaned.get("provider") or "")
        if preset is None:
            return cleaned
        for name in ("authorize_url", "token_url", "userinfo_url", "revocation_url", "scopes"):
            if not cleaned.get(name) and name not in self.errors:
                cleaned[name] = getattr(preset, name)
        for name in ("authorize_url", "token_url"):
            if not cleaned.get(name) and name not in self.errors:
                self.add_error(name, f"The {preset.label} preset has no default: enter the URL.")
        return cleaned

    def save(self, commit: bool = True) -> Integration:
        secret = self.cleaned_data.get("client_secret")
        if secret:  # left blank, the stored secret stays as it is
            self.instance.client_secret = secret
        return super().save(commit=commit)


class IntegrationAdmin(admin.ModelAdmin):
    """OAuth client registrations."""

    form = IntegrationForm
    list_display = ["name", "provider", "client_id", "token_auth_method", "org_count"]
    search_fields = ["name", "client_id"]
    readonly_fields = ["redirect_uri_to_register"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(org_total=Count("orgs"))

    @admin.display(description="orgs", ordering="org_total")
    def org_count(self, obj: Integration) -> int:
        return obj.org_total

    @admin.display(description="Redirect URI to register at the provider")
    def redirect_uri_to_register(self, obj: Integration | None) -> str:
        return redirect_uri()

    def get_fieldsets(self, request, obj=None):
        return [
            (None, {"fields": ["name", "provider", "redirect_uri_to_register"]}),
            ("Client", {"fields": ["client_id", "client_secret", "token_auth_method", "scopes"]}),
            (
                "Endpoints",
                {"fields": ["authorize_url", "token_url", "userinfo_url", "revocation_url"]},
            ),
        ]

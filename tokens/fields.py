"""EncryptedTextField: a text column encrypted with Fernet keys from FIELD_ENCRYPTION_KEYS.

We own this small field because django-fernet-fields no longer imports on Django 4+
and its successor returns ciphertext silently when a key does not match; here a
wrong or missing key is always a loud EncryptionKeyError.

A loaded value is decrypted when the attribute is first read, not when the row is
loaded: a list page, a cascade delete or the sweep never needs a secret, so one value
under a lost key must not break them. Only the code that reads the secret sees the
error, and a row saved without reading it writes the stored ciphertext back unchanged.
"""

from functools import cache, lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.signals import setting_changed
from django.db import models
from django.db.models.query_utils import DeferredAttribute

from .exceptions import EncryptionKeyError

SETTING = "FIELD_ENCRYPTION_KEYS"


def configured_keys() -> list[str]:
    """Return the configured key strings, first (the encrypting one) first."""
    raw = getattr(settings, SETTING, None) or []
    if isinstance(raw, str):
        raw = raw.split(",")
    return [key.strip() for key in raw if key and key.strip()]


@cache
def _fernet() -> MultiFernet:
    keys = configured_keys()
    if not keys:
        raise EncryptionKeyError(
            f"{SETTING} is not set: configure at least one Fernet key "
            "(generate one with `make env` or Fernet.generate_key())."
        )
    fernets = []
    for position, key in enumerate(keys, start=1):
        try:
            fernets.append(Fernet(key))
        except ValueError:
            raise EncryptionKeyError(
                f"{SETTING} entry {position} is not a valid Fernet key "
                "(32 url-safe base64-encoded bytes)."
            ) from None
    return MultiFernet(fernets)


@cache
def _first_fernet() -> Fernet:
    """The encrypting key alone: a value it decrypts needs no rotation."""
    _fernet()  # validates every key with a clear error first
    return Fernet(configured_keys()[0])


def validate_keys() -> None:
    """Raise EncryptionKeyError unless FIELD_ENCRYPTION_KEYS holds only valid keys."""
    _fernet()


def reset_keys() -> None:
    """Forget the cached keys (and what they decrypted) so the next use reads them again."""
    _fernet.cache_clear()
    _first_fernet.cache_clear()
    decrypt_cached.cache_clear()


def _on_setting_changed(*, setting: str, **kwargs: object) -> None:
    if setting == SETTING:
        reset_keys()


setting_changed.connect(_on_setting_changed)


def encrypt(plaintext: str) -> str:
    """Encrypt with the first key."""
    return _fernet().encrypt(plaintext.encode()).decode()


def decrypt(ciphertext: str, *, label: str = "a value") -> str:
    """Decrypt with any configured key; raise EncryptionKeyError when none fits."""
    try:
        return _fernet().decrypt(ciphertext.encode()).decode()
    except InvalidToken:
        raise EncryptionKeyError(
            f"Cannot decrypt {label} with any key in {SETTING}. The key that encrypted it "
            f"is missing: add it back to {SETTING} (old keys go after the new one)."
        ) from None


@lru_cache(maxsize=4096)
def decrypt_cached(ciphertext: str, *, label: str = "a value") -> str:
    """decrypt(), remembering recent answers: the token API serves the same ciphertext
    many times, and a Fernet decryption costs more than the rest of its lookup."""
    return decrypt(ciphertext, label=label)


def reencrypt(ciphertext: str) -> str:
    """Re-encrypt a stored value with the first key (key rotation)."""
    try:
        return _fernet().rotate(ciphertext.encode()).decode()
    except InvalidToken:
        raise EncryptionKeyError(
            f"Cannot decrypt a stored value with any key in {SETTING}."
        ) from None


def is_current(ciphertext: str) -> bool:
    """Whether a stored value is encrypted with the first key (rotation would not change it)."""
    try:
        _first_fernet().decrypt(ciphertext.encode())
    except InvalidToken:
        return False
    return True


class Sealed:
    """A stored value not decrypted yet; its model attribute decrypts it when first read."""

    __slots__ = ("ciphertext", "label")

    def __init__(self, ciphertext: str, label: str) -> None:
        self.ciphertext = ciphertext
        self.label = label

    def __repr__(self) -> str:
        return f"<Sealed {self.label}>"

    def open(self) -> str:
        """The plaintext; EncryptionKeyError when no configured key decrypts it."""
        return decrypt(self.ciphertext, label=self.label)


class DecryptOnRead(DeferredAttribute):
    """The attribute of an EncryptedTextField: decrypts a Sealed value on first read.

    A data descriptor (it has __set__), so reads pass through it even once the value
    sits in the instance's __dict__; the value is still kept there, as Django expects.
    """

    def __get__(self, instance, cls=None):
        value = super().__get__(instance, cls)
        if isinstance(value, Sealed):
            value = instance.__dict__[self.field.attname] = value.open()
        return value

    def __set__(self, instance, value) -> None:
        instance.__dict__[self.field.attname] = value


class EncryptedTextField(models.TextField):
    """A TextField stored as Fernet ciphertext. The empty string is stored as is.

    Loaded values stay Sealed until read (see the module docstring); values() and
    values_list() of the column yield Sealed objects, opened with .open().
    """

    descriptor_class = DecryptOnRead

    def from_db_value(self, value, expression, connection):
        if not value:
            return value
        return Sealed(value, label=f"{self.model.__name__}.{self.name}")

    def pre_save(self, model_instance, add):
        # A value never read is written back as stored: saving needs no key for it.
        value = model_instance.__dict__.get(self.attname)
        if isinstance(value, Sealed):
            return value
        return super().pre_save(model_instance, add)

    def get_prep_value(self, value):
        if isinstance(value, Sealed):
            return value.ciphertext
        value = super().get_prep_value(value)
        if not value:
            return value
        return encrypt(value)


class HttpsURLField(models.URLField):
    """A URLField whose form field reads a scheme-less URL as https (Django 6's default)."""

    def formfield(self, **kwargs):
        return super().formfield(**{"assume_scheme": "https", **kwargs})

"""EncryptedTextField: django-fernet-fields' encrypted field with the console's keys and errors.

Built on `fernet_fields` (the django-fernet-fields-v2 release, pinned): values are stored
as Fernet tokens in a binary column. The console's subclass adds three things:

- Keys come from FIELD_ENCRYPTION_KEYS (settings also copy them into FERNET_KEYS), used
  as the Fernet keys themselves, without HKDF: they are 32 random bytes already, checked
  as Fernet keys (tokens.E002), and any Fernet tool opens a value with the key an operator
  holds. They are read through a cache that a setting change resets (the package keeps
  them on the field for the life of the process).
- A wrong or missing key is a loud EncryptionKeyError naming the column and the setting,
  never cryptography's bare InvalidToken and never the ciphertext.
- A loaded value is decrypted when the attribute is first read, not when the row is
  loaded: a list page, a cascade delete or the sweep never needs a secret, so one value
  under a lost key must not break them. Only the code that reads the secret sees the
  error, and a row saved without reading it writes the stored ciphertext back unchanged.

The empty string is stored as empty bytes, not encrypted: a blank refresh token has no
ciphertext to rotate or lose a key for.
"""

from functools import cache

import fernet_fields
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
    """Forget the cached keys so the next use reads them again."""
    _fernet.cache_clear()
    _first_fernet.cache_clear()


def _on_setting_changed(*, setting: str, **kwargs: object) -> None:
    if setting == SETTING:
        reset_keys()


setting_changed.connect(_on_setting_changed)


def reencrypt(stored: bytes) -> bytes:
    """Re-encrypt a stored value with the first key (key rotation)."""
    try:
        return _fernet().rotate(stored)
    except InvalidToken:
        raise EncryptionKeyError(
            f"Cannot decrypt a stored value with any key in {SETTING}."
        ) from None


def is_current(stored: bytes) -> bool:
    """Whether a stored value is encrypted with the first key (rotation would not change it)."""
    try:
        _first_fernet().decrypt(stored)
    except InvalidToken:
        return False
    return True


class Sealed:
    """A stored value not decrypted yet; its model attribute decrypts it when first read."""

    __slots__ = ("ciphertext", "field")

    def __init__(self, ciphertext: bytes, field: "EncryptedTextField") -> None:
        self.ciphertext = ciphertext
        self.field = field

    def __repr__(self) -> str:
        return f"<Sealed {self.field.label}>"

    @property
    def label(self) -> str:
        """The column, as "Model.field"."""
        return self.field.label

    def open(self) -> str:
        """The plaintext; EncryptionKeyError when no configured key decrypts it."""
        return self.field.decrypt(self.ciphertext)


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


class EncryptedTextField(fernet_fields.EncryptedTextField):
    """fernet_fields' EncryptedTextField (a binary column of Fernet tokens) with the keys
    of FIELD_ENCRYPTION_KEYS, clear errors and decryption on first read.

    Loaded values stay Sealed until read (see the module docstring); values() and
    values_list() of the column yield Sealed objects, opened with .open(). Like the
    package's field it refuses every lookup but isnull.
    """

    descriptor_class = DecryptOnRead

    # The package caches these per field for the process; here they follow the settings.
    @property
    def keys(self) -> list[str]:
        return configured_keys()

    @property
    def fernet_keys(self) -> list[str]:
        return self.keys  # no HKDF: see the module docstring

    @property
    def fernet(self) -> MultiFernet:
        return _fernet()

    @property
    def label(self) -> str:
        """The column, as "Model.field", for messages (never a value)."""
        return f"{self.model.__name__}.{self.name}"

    def decrypt(self, stored: bytes) -> str:
        """The plaintext of a stored value, through the package's own from_db_value."""
        try:
            return super().from_db_value(stored, None, None)
        except InvalidToken:
            raise EncryptionKeyError(
                f"Cannot decrypt {self.label} with any key in {SETTING}. The key that "
                f"encrypted it is missing: add it back to {SETTING} (old keys go after the "
                "new one)."
            ) from None

    def from_db_value(self, value, expression, connection, *args):
        if value is None:
            return None
        value = bytes(value)
        if not value:
            return ""
        return Sealed(value, self)

    def pre_save(self, model_instance, add):
        # A value never read is written back as stored: saving needs no key for it.
        value = model_instance.__dict__.get(self.attname)
        if isinstance(value, Sealed):
            return value
        return super().pre_save(model_instance, add)

    def get_db_prep_save(self, value, connection):
        if hasattr(value, "as_sql"):
            return value  # an expression (update(col=Value(...))): the package would encrypt it
        if isinstance(value, Sealed):
            return connection.Database.Binary(value.ciphertext)
        if isinstance(value, str | bytes) and not value:
            return connection.Database.Binary(b"")
        return super().get_db_prep_save(value, connection)


class HttpsURLField(models.URLField):
    """A URLField whose form field reads a scheme-less URL as https (Django 6's default)."""

    def formfield(self, **kwargs):
        return super().formfield(**{"assume_scheme": "https", **kwargs})

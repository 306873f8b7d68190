"""Key rotation: re-encrypt every stored secret with the first key in FIELD_ENCRYPTION_KEYS."""

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from django.apps import apps
from django.db import models, transaction
from django.db.models import ExpressionWrapper, F, Value

from tokens.exceptions import EncryptionKeyError
from tokens.fields import SETTING, EncryptedTextField, is_current, reencrypt, validate_keys
from tokens.models import TokenEvent

from .events import token_event_record

logger = logging.getLogger(__name__)


@dataclass
class RotationCounts:
    """How many stored values a rotation (or one batch of it) re-encrypted or left alone."""

    reencrypted: int = 0
    current: int = 0
    # Rewritten by someone else (a refresh) between our read and our update: left as is.
    changed: int = 0

    def add(self, other: "RotationCounts") -> None:
        """Add another batch's counts to these."""
        self.reencrypted += other.reencrypted
        self.current += other.current
        self.changed += other.changed

    def summary(self) -> str:
        """The counts in words (no values, so safe for events and logs)."""
        text = f"{self.reencrypted} re-encrypted, {self.current} already current"
        if self.changed:
            text += f", {self.changed} changed meanwhile (run again to check them)"
        return text


@dataclass(frozen=True)
class RotationBatch:
    """One committed batch: which rows of which model, and what happened to their values."""

    model: str
    first_pk: object
    last_pk: object
    rows: int
    counts: RotationCounts


def encrypted_fields() -> dict[type[models.Model], list[EncryptedTextField]]:
    """Every EncryptedTextField column of every installed model, found through _meta."""
    found: dict[type[models.Model], list[EncryptedTextField]] = {}
    for model in apps.get_models():
        if model._meta.proxy or not model._meta.managed:
            continue
        fields = [f for f in model._meta.concrete_fields if isinstance(f, EncryptedTextField)]
        if fields:
            found[model] = fields
    return found


@dataclass(frozen=True)
class KeySample:
    """Which encrypted columns' newest stored value the keys decrypt ("Model.field"). No value."""

    decrypted: list[str]
    undecryptable: list[str]

    @property
    def nothing_decrypts(self) -> bool:
        """Values are stored and none decrypts: the keys are wrong, not one row."""
        return bool(self.undecryptable) and not self.decrypted


def encryption_keys_sample() -> KeySample:
    """Try the keys on the newest non-blank value of every encrypted column.

    One indexed query per column, for the system check and /healthz: a valid but wrong
    key passes every other check. Raises EncryptionKeyError when the keys are missing or
    malformed; nothing decrypted is kept.
    """
    validate_keys()
    decrypted, undecryptable = [], []
    for model, fields in encrypted_fields().items():
        for field in fields:
            stored = (
                model._base_manager.annotate(stored=_raw(field))
                .exclude(stored=b"")
                .order_by("-pk")
                .values_list("stored", flat=True)
                .first()
            )
            if not stored:
                continue
            try:
                field.decrypt(bytes(stored))
            except EncryptionKeyError:
                undecryptable.append(field.label)
            else:
                decrypted.append(field.label)
    return KeySample(decrypted=decrypted, undecryptable=undecryptable)


def encryption_keys_rotate(
    *,
    batch_size: int,
    on_batch: Callable[[RotationBatch], None] | None = None,
    trigger: str = TokenEvent.Trigger.COMMAND,
) -> RotationCounts:
    """Re-encrypt every stored secret with the first key, in batches; record `key_rotated`.

    Each batch is one transaction. A value is replaced only while its column still holds
    the ciphertext read, so a concurrent refresh's newer token is never overwritten. Values
    already under the first key are only read, so an interrupted run can simply be rerun.
    Raises EncryptionKeyError (naming model, field and pk) for a value no key decrypts.
    """
    total = RotationCounts()
    for model, fields in encrypted_fields().items():
        for batch in _model_batches(model, fields, batch_size):
            total.add(batch.counts)
            if on_batch is not None:
                on_batch(batch)
    token_event_record(
        org=None,
        kind=TokenEvent.Kind.KEY_ROTATED,
        trigger=trigger,
        outcome=TokenEvent.Outcome.SUCCESS,
        message=f"Stored secrets moved to the first key of {SETTING}: {total.summary()}.",
    )
    logger.info("encryption keys rotated: %s", total.summary())
    return total


def _model_batches(
    model: type[models.Model], fields: list[EncryptedTextField], batch_size: int
) -> Iterator[RotationBatch]:
    """Rotate a model's rows in primary-key order, one committed transaction per batch."""
    after = None
    while True:
        with transaction.atomic():
            rows = _raw_rows(model, fields, after=after, limit=batch_size)
            if not rows:
                return
            counts = _rotate_rows(model, fields, rows)
        after = rows[-1][0]
        yield RotationBatch(model.__name__, rows[0][0], after, len(rows), counts)


def _raw(field: EncryptedTextField) -> ExpressionWrapper:
    """The column as stored: a plain binary view of it skips the field's decryption."""
    return ExpressionWrapper(F(field.attname), output_field=models.BinaryField())


def _raw_rows(
    model: type[models.Model], fields: list[EncryptedTextField], *, after: object, limit: int
) -> list[tuple]:
    """(pk, ciphertext, ...) of the next `limit` rows after pk `after`."""
    raw = {f"raw_{field.attname}": _raw(field) for field in fields}
    rows = model._base_manager.order_by("pk").annotate(**raw)
    if after is not None:
        rows = rows.filter(pk__gt=after)
    return [(pk, *map(bytes, values)) for pk, *values in rows.values_list("pk", *raw)[:limit]]


def _rotate_rows(
    model: type[models.Model], fields: list[EncryptedTextField], rows: list[tuple]
) -> RotationCounts:
    """Re-encrypt the rows' stale values; every one is decrypted before the first write."""
    counts = RotationCounts()
    pending = []
    for pk, *values in rows:
        for field, old in zip(fields, values, strict=True):
            if not old:
                continue  # blank values are stored as they are, unencrypted
            if is_current(old):
                counts.current += 1
            else:
                pending.append((pk, field, old, _reencrypt(model, field, pk, old)))
    for pk, field, old, new in pending:
        written = (
            model._base_manager.filter(pk=pk)
            .alias(stored=_raw(field))
            .filter(stored=old)
            .update(**{field.attname: Value(new, output_field=models.BinaryField())})
        )
        if written:
            counts.reencrypted += 1
        else:
            counts.changed += 1
    return counts


def _reencrypt(
    model: type[models.Model], field: EncryptedTextField, pk: object, old: bytes
) -> bytes:
    try:
        return reencrypt(old)
    except EncryptionKeyError:
        raise EncryptionKeyError(
            f"Cannot decrypt {model.__name__}.{field.name} of pk {pk} with any key in "
            f"{SETTING}. Add the key that encrypted it back to {SETTING} (after the first) "
            "and run the rotation again; nothing in this batch was changed."
        ) from None

"""Move the secret columns to django-fernet-fields storage (tokens.fields.EncryptedTextField).

Before: Fernet tokens as text, encrypted with the raw keys of FIELD_ENCRYPTION_KEYS, blank
stored as is. After: the same kind of Fernet token as bytes in a binary column (the
package's storage), written with the first key; blank stored as empty bytes.

Every value is decrypted with the old scheme and encrypted again with the new one, both
frozen here (no live app code runs). A value no configured key decrypts stops the
migration with its model, field and pk (never the value); the migration is one
transaction, so nothing is changed then. Reversible: backwards converts the bytes to the
old text the same way.
"""

import fernet_fields
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import migrations, models
from django.db.models import ExpressionWrapper, F, Value

import tokens.fields

SETTING = "FIELD_ENCRYPTION_KEYS"
# (model, field, blank): the encrypted columns at 0005.
COLUMNS = [
    ("integration", "client_secret", False),
    ("token", "access_token", False),
    ("token", "refresh_token", True),
]
NEW = "{}_fernet"  # the new column while both exist
BATCH = 500


class Schemes:
    """The old text format and the new field's bytes, with the keys configured now."""

    def __init__(self) -> None:
        raw = getattr(settings, SETTING, None) or []
        if isinstance(raw, str):
            raw = raw.split(",")
        keys = [key.strip() for key in raw if key and key.strip()]
        if not keys:
            raise ImproperlyConfigured(
                f"{SETTING} is not set: the stored secrets cannot be converted. Set the keys "
                "the console runs with and migrate again; nothing was changed."
            )
        try:
            # The old field: Fernet text under the keys as they are, the first encrypting.
            self.old = MultiFernet([Fernet(key) for key in keys])
        except ValueError:
            raise ImproperlyConfigured(
                f"{SETTING} holds a value that is not a Fernet key; nothing was changed."
            ) from None
        # The new field: the package's field with these keys as Fernet keys (no HKDF).
        field = fernet_fields.EncryptedTextField()
        field.__dict__["fernet_keys"] = keys
        self.new = field.fernet


def undecryptable(model, name: str, pk: object) -> ImproperlyConfigured:
    return ImproperlyConfigured(
        f"Cannot decrypt {model.__name__}.{name} of pk {pk} with any key in {SETTING}. Put "
        f"the key that encrypted it back into {SETTING} (after the first) and migrate again; "
        "nothing was changed. If that key is lost, delete that row (an org then reconnects; "
        "an integration's client secret is entered again)."
    )


def convert(schema_editor, apps, source: str, target: str, types: tuple, recode) -> None:
    """Write recode(stored value) of every row's `source` column into its `target` column.

    `types` are the (source, target) column types; a blank value stays blank.
    """
    source_type, target_type = types
    schemes = None
    for model_name, name, _blank in COLUMNS:
        model = apps.get_model("tokens", model_name)
        stored = ExpressionWrapper(F(source.format(name)), output_field=source_type())
        rows = model._base_manager.order_by("pk").annotate(stored_value=stored)
        after = None
        while batch := list(
            rows.filter(pk__gt=after).values_list("pk", "stored_value")[:BATCH]
            if after is not None
            else rows.values_list("pk", "stored_value")[:BATCH]
        ):
            for pk, value in batch:
                new = b"" if target_type is models.BinaryField else ""
                if value:
                    schemes = schemes or Schemes()
                    try:
                        new = recode(schemes, value)
                    except InvalidToken:
                        raise undecryptable(model, name, pk) from None
                model._base_manager.filter(pk=pk).update(
                    **{target.format(name): Value(new, output_field=target_type())}
                )
            after = batch[-1][0]
    # PostgreSQL: run the deferred foreign-key checks the updates queued now, or the column
    # changes after this in the same transaction fail ("pending trigger events").
    schema_editor.connection.check_constraints()


def to_fernet_fields(apps, schema_editor) -> None:
    def recode(schemes: Schemes, text: str) -> bytes:
        return schemes.new.encrypt(schemes.old.decrypt(text.encode()))

    convert(schema_editor, apps, "{}", NEW, (models.TextField, models.BinaryField), recode)


def to_text(apps, schema_editor) -> None:
    def recode(schemes: Schemes, stored: bytes) -> str:
        return schemes.old.encrypt(schemes.new.decrypt(bytes(stored))).decode()

    convert(schema_editor, apps, NEW, "{}", (models.BinaryField, models.TextField), recode)


class Migration(migrations.Migration):
    dependencies = [
        ("tokens", "0006_event_rollups"),
    ]

    operations = [
        *(
            migrations.AddField(
                model_name=model,
                name=NEW.format(name),
                field=tokens.fields.EncryptedTextField(blank=blank, default=""),
                preserve_default=False,
            )
            for model, name, blank in COLUMNS
        ),
        migrations.RunPython(to_fernet_fields, to_text),
        # A default, so that going backwards can add the text column to rows that exist.
        *(
            migrations.AlterField(
                model_name=model, name=name, field=models.TextField(blank=blank, default="")
            )
            for model, name, blank in COLUMNS
        ),
        *(migrations.RemoveField(model_name=model, name=name) for model, name, _ in COLUMNS),
        *(
            migrations.RenameField(model_name=model, old_name=NEW.format(name), new_name=name)
            for model, name, _ in COLUMNS
        ),
    ]

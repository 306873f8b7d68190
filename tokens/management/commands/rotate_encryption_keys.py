"""manage.py rotate_encryption_keys [--batch-size N]"""

from django.core.management.base import BaseCommand, CommandError, CommandParser

from tokens import services
from tokens.exceptions import EncryptionKeyError
from tokens.fields import SETTING, configured_keys
from tokens.services.keys import RotationBatch


class Command(BaseCommand):
    help = (
        f"Re-encrypt every stored secret with the first key in {SETTING}, in batches. "
        "Safe to run again after an interruption; afterwards the old keys can be removed."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--batch-size", type=int, default=500, help="Rows per transaction (default 500)."
        )

    def handle(self, *args: object, batch_size: int, **options: object) -> None:
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1.")
        self._check_keys_decrypt()
        if len(configured_keys()) < 2:
            self.stdout.write(
                f"Only one key in {SETTING}: nothing to do. Put a new key first and keep "
                "the old one after it, restart the web server and the cluster, then run this."
            )
            return
        try:
            total = services.encryption_keys_rotate(batch_size=batch_size, on_batch=self._progress)
        except EncryptionKeyError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(self.style.SUCCESS(f"Rotation complete: {total.summary()}."))
        if total.changed:
            self.stdout.write("Some values changed while rotating: run the command once more.")
        else:
            self.stdout.write(
                f"Every value is under the first key: the old keys can be removed from {SETTING}."
            )

    def _check_keys_decrypt(self) -> None:
        """Stop before any batch when the keys decrypt nothing stored: they are wrong.

        A single value under a missing key is found, with its pk, by the rotation itself.
        """
        try:
            sample = services.encryption_keys_sample()
        except EncryptionKeyError as exc:
            raise CommandError(str(exc)) from None
        if sample.nothing_decrypts:
            raise CommandError(
                f"No key in {SETTING} decrypts the stored secrets "
                f"({', '.join(sample.undecryptable)}): these are not the keys that encrypted "
                f"them. Put the key that encrypted them back into {SETTING} (after the "
                "first) and run this again; nothing was changed."
            )

    def _progress(self, batch: RotationBatch) -> None:
        self.stdout.write(
            f"{batch.model} pk {batch.first_pk}..{batch.last_pk} "
            f"({batch.rows} row{'s' * (batch.rows != 1)}): "
            f"{batch.counts.summary()}"
        )

"""Record on each token the integration it was obtained through (existing ones: the org's)."""

import django.db.models.deletion
from django.db import migrations, models
from django.db.models import OuterRef, Subquery


def record_issuing_integration(apps, schema_editor):
    Org = apps.get_model("tokens", "Org")
    Token = apps.get_model("tokens", "Token")
    issuer = Org.objects.filter(pk=OuterRef("org_id")).values("integration_id")[:1]
    Token.objects.update(integration_id=Subquery(issuer))


class Migration(migrations.Migration):
    dependencies = [
        ("tokens", "0004_roles"),
    ]

    operations = [
        migrations.AddField(
            model_name="token",
            name="integration",
            field=models.ForeignKey(
                editable=False,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to="tokens.integration",
            ),
        ),
        migrations.AlterField(
            model_name="org",
            name="integration",
            field=models.ForeignKey(
                help_text="Fixed while the org holds a token: disconnect it to move it to another one.",
                on_delete=django.db.models.deletion.PROTECT,
                related_name="orgs",
                to="tokens.integration",
            ),
        ),
        migrations.RunPython(record_issuing_integration, migrations.RunPython.noop),
    ]

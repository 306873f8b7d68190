"""Running totals of the token history for /metrics, and indexes for the history list.

The data step fills the totals from the events already stored, in one grouped pass. Stop
the web processes and the cluster while migrating: an event written by the old code after
that pass would be missing from the totals.
"""

import tokens.clock
from django.conf import settings
from django.db import migrations, models
from django.db.models import Count, Q, Sum

# TokenEventRollup.DURATION_BUCKETS_MS when this migration was written.
BUCKETS_MS = (50, 100, 250, 500, 1000, 2500, 5000, 10000, 20000)


def fill_rollups(apps, schema_editor):
    TokenEvent = apps.get_model("tokens", "TokenEvent")
    TokenEventRollup = apps.get_model("tokens", "TokenEventRollup")
    buckets = {f"le_{ms}": Count("id", filter=Q(duration_ms__lte=ms)) for ms in BUCKETS_MS}
    rows = (
        TokenEvent.objects.order_by()
        .values("kind", "trigger", "outcome")
        .annotate(
            count=Count("id"), timed=Count("duration_ms"), duration_ms_sum=Sum("duration_ms"),
            **buckets,
        )
    )  # fmt: skip
    TokenEventRollup.objects.bulk_create(
        TokenEventRollup(**{**row, "duration_ms_sum": row["duration_ms_sum"] or 0})
        for row in rows
    )


def empty_rollups(apps, schema_editor):
    apps.get_model("tokens", "TokenEventRollup").objects.all().delete()


class Migration(migrations.Migration):

    dependencies = [
        ('tokens', '0005_bind_token_integration'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='TokenEventRollup',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('kind', models.CharField(choices=[('connected', 'Connected'), ('connect_failed', 'Connect failed'), ('refreshed', 'Refreshed'), ('refresh_failed', 'Refresh failed'), ('disconnected', 'Disconnected'), ('org_mismatch', 'Org mismatch'), ('key_rotated', 'Key rotated')], max_length=20)),
                ('trigger', models.CharField(choices=[('schedule', 'Schedule'), ('manual', 'Manual'), ('api', 'API'), ('callback', 'OAuth callback'), ('command', 'Command')], max_length=20)),
                ('outcome', models.CharField(choices=[('success', 'Success'), ('failure', 'Failure'), ('warning', 'Warning')], max_length=10)),
                ('count', models.PositiveBigIntegerField(default=0)),
                ('timed', models.PositiveBigIntegerField(default=0, help_text='Events with a duration.')),
                ('duration_ms_sum', models.PositiveBigIntegerField(default=0)),
                ('le_50', models.PositiveBigIntegerField(default=0)),
                ('le_100', models.PositiveBigIntegerField(default=0)),
                ('le_250', models.PositiveBigIntegerField(default=0)),
                ('le_500', models.PositiveBigIntegerField(default=0)),
                ('le_1000', models.PositiveBigIntegerField(default=0)),
                ('le_2500', models.PositiveBigIntegerField(default=0)),
                ('le_5000', models.PositiveBigIntegerField(default=0)),
                ('le_10000', models.PositiveBigIntegerField(default=0)),
                ('le_20000', models.PositiveBigIntegerField(default=0)),
            ],
            options={
                'verbose_name': 'token event totals',
                'verbose_name_plural': 'token event totals',
                'ordering': ['kind', 'trigger', 'outcome'],
            },
        ),
        migrations.RemoveIndex(
            model_name='tokenevent',
            name='tokenevent_org_time',
        ),
        migrations.AlterField(
            model_name='tokenevent',
            name='created_at',
            field=models.DateTimeField(default=tokens.clock.now),
        ),
        migrations.AddIndex(
            model_name='tokenevent',
            index=models.Index(fields=['-created_at', '-id'], name='tokenevent_time'),
        ),
        migrations.AddIndex(
            model_name='tokenevent',
            index=models.Index(fields=['org', '-created_at', '-id'], name='tokenevent_org_time'),
        ),
        migrations.AddIndex(
            model_name='tokenevent',
            index=models.Index(fields=['kind', '-created_at', '-id'], name='tokenevent_kind_time'),
        ),
        migrations.AddIndex(
            model_name='tokenevent',
            index=models.Index(fields=['outcome', '-created_at', '-id'], name='tokenevent_outcome_time'),
        ),
        migrations.AddIndex(
            model_name='tokenevent',
            index=models.Index(fields=['trigger', '-created_at', '-id'], name='tokenevent_trigger_time'),
        ),
        migrations.AddIndex(
            model_name='tokenevent',
            index=models.Index(fields=['org_slug', 'kind', '-created_at'], name='tokenevent_latest'),
        ),
        migrations.AddConstraint(
            model_name='tokeneventrollup',
            constraint=models.UniqueConstraint(fields=('kind', 'trigger', 'outcome'), name='rollup_once'),
        ),
        migrations.RunPython(fill_rollups, empty_rollups),
    ]

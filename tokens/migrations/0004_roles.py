"""Create the Token viewers and Token operators groups.

The role table is frozen here as it stood when this migration was written: a migration
must give the same result whatever tokens/roles.py says later. A later change of roles
is a new migration.
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations

_VIEW = [
    "tokens.view_org",
    "tokens.view_tokenevent",
    "tokens.view_tokenservedcount",
    "admin.view_logentry",
]
ROLE_PERMISSIONS = {
    "Token viewers": _VIEW,
    "Token operators": [
        *_VIEW,
        "tokens.add_org",
        "tokens.change_org",
        "tokens.connect_org",
        "tokens.refresh_org",
        "tokens.disconnect_org",
    ],
}


def create_roles(apps, schema_editor):
    # Permissions are normally created after all migrations (post_migrate); create
    # them now so a fresh database can reference them here.
    for label in ("tokens", "admin"):
        config = apps.get_app_config(label)
        config.models_module = True
        create_permissions(config, verbosity=0, apps=apps)
        config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, codes in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=name)
        for code in codes:
            app_label, codename = code.split(".")
            group.permissions.add(
                Permission.objects.get(content_type__app_label=app_label, codename=codename)
            )


def remove_roles(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=list(ROLE_PERMISSIONS)).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("tokens", "0003_api_clients"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("admin", "0003_logentry_add_action_flag_choices"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_roles, remove_roles)]

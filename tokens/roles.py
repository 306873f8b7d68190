"""The console's roles: Django groups with the permissions each role needs.

Integration secrets and API clients are left to superusers: no group holds their
permissions. Used by the data migration that creates the groups, and by tests.
"""

VIEWERS = "Token viewers"
OPERATORS = "Token operators"

_VIEW = [
    "tokens.view_org",
    "tokens.view_tokenevent",
    "tokens.view_tokenservedcount",
    "admin.view_logentry",
]
ROLE_PERMISSIONS: dict[str, list[str]] = {
    # See orgs and their history; nothing else.
    VIEWERS: _VIEW,
    # Also add and edit orgs, connect, refresh and disconnect them.
    OPERATORS: [
        *_VIEW,
        "tokens.add_org",
        "tokens.change_org",
        "tokens.connect_org",
        "tokens.refresh_org",
        "tokens.disconnect_org",
    ],
}

"""The console's roles: Django groups with the permissions each role needs.

Integration secrets and API clients are left to superusers: no group holds their
permissions. Migration 0004_roles created the groups with a frozen copy of this table;
a change here needs a new migration (tests/test_history.py compares the two).
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

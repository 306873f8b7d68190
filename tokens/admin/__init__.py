"""The console's admin, one module per admin, each registered here and nowhere else.

Django's admin autodiscovery imports this package. The site is the console's own
(site.py), which django.contrib.admin's `admin.site` resolves to.
"""

from django.contrib.admin.models import LogEntry

from tokens.models import (
    AlertChannel,
    AlertMessage,
    ApiClient,
    Integration,
    Org,
    TokenEvent,
    TokenServedCount,
    Webhook,
    WebhookDelivery,
)

from .api_client import ApiClientAdmin, TokenServedCountAdmin
from .history import LogEntryAdmin, TokenEventAdmin
from .integration import IntegrationAdmin
from .org import OrgAdmin
from .push import AlertChannelAdmin, AlertMessageAdmin, WebhookAdmin, WebhookDeliveryAdmin
from .site import site

site.register(Integration, IntegrationAdmin)
site.register(Org, OrgAdmin)
site.register(ApiClient, ApiClientAdmin)
site.register(TokenServedCount, TokenServedCountAdmin)
site.register(TokenEvent, TokenEventAdmin)
site.register(LogEntry, LogEntryAdmin)
site.register(Webhook, WebhookAdmin)
site.register(WebhookDelivery, WebhookDeliveryAdmin)
site.register(AlertChannel, AlertChannelAdmin)
site.register(AlertMessage, AlertMessageAdmin)

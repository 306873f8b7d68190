"""Template filters for the console's times (tokens/display.py): {{ moment|when }}."""

from datetime import datetime

from django import template
from django.utils.safestring import SafeString

from tokens import display

register = template.Library()


@register.filter
def when(moment: datetime | None) -> SafeString | str:
    """The moment as a <time> element: relative wording, exact time in the tooltip."""
    return display.when(moment)


@register.filter
def exact(moment: datetime | None) -> str:
    """The moment's exact time in TIME_ZONE, to the second."""
    return display.exact(moment) if moment is not None else display.EMPTY

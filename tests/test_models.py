"""Model rules the ORM enforces whoever writes: an org holding a token keeps its integration."""

import pytest
from django.core.exceptions import ValidationError

from tokens import services
from tokens.models import Org, Token

pytestmark = pytest.mark.django_db

REFUSAL = "Disconnect the org before moving it to another integration."


def test_saving_a_connected_org_with_another_integration_is_refused(
    connected_org, other_integration
):
    bound_to = connected_org.integration_id
    connected_org.integration = other_integration
    with pytest.raises(ValidationError, match=REFUSAL):
        connected_org.full_clean()
    with pytest.raises(ValidationError, match=REFUSAL):
        connected_org.save()
    assert Org.objects.get(pk=connected_org.pk).integration_id == bound_to
    connected_org.refresh_from_db()
    connected_org.name = "Acme renamed"  # its other fields stay editable
    connected_org.full_clean()
    connected_org.save()
    assert Org.objects.get(pk=connected_org.pk).name == "Acme renamed"


@pytest.mark.parametrize("status", [Org.Status.NEEDS_RECONNECT, Org.Status.DISABLED])
def test_an_org_holding_a_token_keeps_its_integration_in_any_status(
    connected_org, other_integration, status
):
    Org.objects.filter(pk=connected_org.pk).update(status=status)
    org = Org.objects.get(pk=connected_org.pk)
    org.integration = other_integration
    with pytest.raises(ValidationError, match=REFUSAL):
        org.save(update_fields=["integration"])


def test_a_disconnected_org_can_be_moved_to_another_integration(
    connected_org, provider, other_integration
):
    connected_org.integration = other_integration
    with pytest.raises(ValidationError, match=REFUSAL):
        connected_org.save()
    services.org_disconnect(org_id=connected_org.pk)
    org = Org.objects.get(pk=connected_org.pk)
    org.integration = other_integration
    org.full_clean()
    org.save()
    assert Org.objects.get(pk=org.pk).integration_id == other_integration.pk
    assert not Token.objects.filter(org=org).exists()


def test_a_token_records_the_integration_it_was_obtained_through(connected_org):
    assert Token.objects.get(org=connected_org).integration_id == connected_org.integration_id

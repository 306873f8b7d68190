"""Provider presets and Webex token / org id parsing."""

import base64

from tokens.providers import PRESETS, decode_webex_org_id, parse_webex_access_token

ORG = "1eb65fdf-9643-417f-9974-ad72cae0e10f"


def encode_org(value: str) -> str:
    return base64.urlsafe_b64encode(value.encode()).decode().rstrip("=")


def test_webex_preset_points_at_webexapis_with_contact_center_scopes():
    webex = PRESETS["webex"]
    assert webex.authorize_url == "https://webexapis.com/v1/authorize"
    assert webex.token_url == "https://webexapis.com/v1/access_token"
    assert webex.userinfo_url == "https://webexapis.com/v1/people/me"
    assert {"cjp:config_read", "cjp:config_write", "spark:people_read"} <= set(webex.scopes.split())
    assert PRESETS["generic"].authorize_url == ""


def test_webex_token_suffix_is_parsed_without_cutting_the_token():
    token = f"ZDI3MGEyYzQtNmFlNS00NDNhLWFl_P0A1_{ORG}"
    suffix = parse_webex_access_token(token)
    assert suffix is not None
    assert (suffix.cluster_id, suffix.org_id) == ("P0A1", ORG)
    assert token.endswith(ORG)  # the caller's string is untouched


def test_webex_token_body_may_contain_underscores():
    suffix = parse_webex_access_token(f"abc_def_ghi_PF84_{ORG}")
    assert suffix is not None
    assert suffix.cluster_id == "PF84"


def test_tokens_without_a_webex_suffix_give_none():
    assert parse_webex_access_token("opaque-token") is None
    assert parse_webex_access_token(f"_P0A1_{ORG}") is None
    assert parse_webex_access_token("abc_P0A1_not-a-uuid") is None
    assert parse_webex_access_token(f"abc_bad!cluster_{ORG}") is None


def test_a_cluster_id_with_a_trailing_newline_is_not_a_webex_suffix():
    assert parse_webex_access_token(f"abc_P0A1\n_{ORG}") is None


def test_people_me_org_id_decodes_to_the_uuid():
    assert decode_webex_org_id(encode_org(f"ciscospark://us/ORGANIZATION/{ORG}")) == ORG


def test_people_me_org_id_of_another_shape_gives_none():
    assert decode_webex_org_id(encode_org(f"ciscospark://us/PEOPLE/{ORG}")) is None
    assert decode_webex_org_id("%%%not base64%%%") is None
    assert decode_webex_org_id("") is None
    assert decode_webex_org_id("A" * 1000) is None


def test_people_me_org_id_with_a_trailing_newline_gives_none():
    assert decode_webex_org_id(encode_org(f"ciscospark://us/ORGANIZATION/{ORG}\n")) is None

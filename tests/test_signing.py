"""The deployment's signing key: what it accepts as a key, and what it signs."""

from __future__ import annotations

import pytest

from shared.errors import ConfigError
from shared.signing import Signer

KEY = "0123456789abcdef0123456789abcdef"


def test_a_value_signed_for_one_purpose_is_refused_for_another_and_when_altered():
    signer = Signer.from_settings({"MCP_GATEWAY_SIGNING_KEY": KEY})
    token = signer.sign("one", b"value")
    assert signer.verify("one", token) == b"value"
    assert signer.verify("two", token) is None
    value, mac = token.split(".")
    assert signer.verify("one", f"{value}A.{mac}") is None
    assert signer.verify("one", f"{value}.{mac[:-2]}AA") is None
    assert Signer.from_settings({"MCP_GATEWAY_SIGNING_KEY": KEY[::-1]}).verify("one", token) is None


def test_instances_with_the_setting_share_a_key_and_without_it_do_not():
    token = Signer.from_settings({"MCP_GATEWAY_SIGNING_KEY": KEY}).sign("p", b"v")
    assert Signer.from_settings({"MCP_GATEWAY_SIGNING_KEY": KEY}).verify("p", token) == b"v"
    alone = Signer.from_settings({})
    assert not alone.shared and Signer.from_settings({}).verify("p", alone.sign("p", b"v")) is None


@pytest.mark.parametrize(
    "value, why",
    [
        ("short", "too short"),
        ("@Microsoft.KeyVault(VaultName=kv-abc;SecretName=mcp-gateway-signing-key)", "unresolved Key Vault reference"),
    ],
)
def test_a_key_that_is_not_one_stops_the_gateway_naming_the_setting(value, why):
    with pytest.raises(ConfigError, match=f"MCP_GATEWAY_SIGNING_KEY: .*{why}"):
        Signer.from_settings({"MCP_GATEWAY_SIGNING_KEY": value})

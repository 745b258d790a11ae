"""The `outbound` section: typed modes from a closed set, and errors that name the field."""

from __future__ import annotations

import logging

import pytest

from shared.config import SecretRef, parse_config
from shared.config.outbound import (
    Certificate,
    ClientCredentialsOutbound,
    ClientSecret,
    ForwardAuthorizationOutbound,
    ManagedIdentityAssertion,
    ManagedIdentityOutbound,
    OnBehalfOfOutbound,
    SecretHeaderOutbound,
)
from shared.errors import ConfigError
from shared.outbound import BackendCredentials
from shared.outbound.cache import Token
from shared.secrets import SecretStore

TENANT = "contoso.onmicrosoft.com"
APP = {"tenantId": TENANT, "clientId": "app-id", "scope": "api://backend/.default"}
ENTRA = {"entra": {"tenantId": TENANT, "audiences": ["api://gw"]}}


def server(outbound: dict, auth: dict | None = None) -> dict:
    entry = {"url": "https://backend.example/mcp", "outbound": outbound}
    entry.update({"auth": auth} if auth else {"anonymous": True})
    return {"servers": {"api": entry}}


def outbound_of(outbound: dict, auth: dict | None = None):
    return parse_config(server(outbound, auth)).servers["api"].outbound


def test_every_mode_builds_its_typed_config_with_defaults():
    assert outbound_of({"managedIdentity": {"scope": "api://b/.default"}}) == ManagedIdentityOutbound("api://b/.default")
    cc = outbound_of({"clientCredentials": {**APP, "clientSecret": {"keyVaultSecret": {"name": "s", "version": "v1"}}}})
    assert isinstance(cc, ClientCredentialsOutbound)
    assert cc.app.credential == ClientSecret(SecretRef("s", version="v1"))
    assert cc.app.authority == f"https://login.microsoftonline.com/{TENANT}"
    cert = outbound_of({"clientCredentials": {**APP, "authorityHost": "https://login.microsoftonline.us/",
                                              "certificate": {"keyVaultSecret": {"name": "c", "vault": "https://kv.vault.usgovcloudapi.net"}}}})
    assert cert.app.credential == Certificate(SecretRef("c", vault_url="https://kv.vault.usgovcloudapi.net"))
    assert cert.app.authority == f"https://login.microsoftonline.us/{TENANT}"
    fic = outbound_of({"clientCredentials": {**APP, "managedIdentityAssertion": {}}})
    assert fic.app.credential == ManagedIdentityAssertion(audience="api://AzureADTokenExchange")
    obo = outbound_of({"onBehalfOf": {**APP, "scope": "api://b/Files.Read api://b/Files.Write",
                                      "managedIdentityAssertion": {"clientId": "uami"}}}, ENTRA)
    assert isinstance(obo, OnBehalfOfOutbound) and obo.scopes == ("api://b/Files.Read", "api://b/Files.Write")
    header = outbound_of({"secretHeader": {"name": "X-Api-Key", "keyVaultSecret": {"name": "k"}}})
    assert header == SecretHeaderOutbound("X-Api-Key", SecretRef("k"), "")
    assert outbound_of({"forwardAuthorization": True}) == ForwardAuthorizationOutbound()


@pytest.mark.parametrize(
    ("outbound", "auth", "field", "words"),
    [
        ({}, None, "servers.api.outbound", "exactly one mode"),
        ({"managedIdentity": {"scope": "api://b/.default"}, "forwardAuthorization": True}, None,
         "servers.api.outbound", "exactly one mode"),
        ({"managedIdentity": {"scope": "api://b/read"}}, None, "servers.api.outbound.managedIdentity.scope", "default"),
        ({"managedIdentity": {"scope": "api://b/.default", "extra": 1}}, None, "servers.api.outbound.managedIdentity", "unknown field"),
        ({"clientCredentials": {**APP}}, None, "servers.api.outbound.clientCredentials", "exactly one of"),
        ({"clientCredentials": {**APP, "clientSecret": {"keyVaultSecret": {"name": "s"}}, "managedIdentityAssertion": {}}},
         None, "servers.api.outbound.clientCredentials", "exactly one of"),
        ({"clientCredentials": {**APP, "scope": "api://b/x", "managedIdentityAssertion": {}}}, None,
         "servers.api.outbound.clientCredentials.scope", "default"),
        ({"clientCredentials": {"tenantId": TENANT, "scope": "api://b/.default", "managedIdentityAssertion": {}}}, None,
         "servers.api.outbound.clientCredentials.clientId", "is required"),
        ({"clientCredentials": {**APP, "clientSecret": "literal-secret"}}, None,
         "servers.api.outbound.clientCredentials.clientSecret", "object"),
        ({"onBehalfOf": {**APP, "managedIdentityAssertion": {}}}, None, "servers.api.outbound.onBehalfOf", "auth.entra"),
        ({"onBehalfOf": {**APP, "managedIdentityAssertion": {}}}, {"subscriptionKey": {}}, "servers.api.outbound.onBehalfOf",
         "auth.entra"),
        ({"onBehalfOf": {**APP, "managedIdentityAssertion": {}}}, {**ENTRA, "subscriptionKey": {}, "mode": "any"},
         "servers.api.outbound.onBehalfOf", "mode 'all'"),
        ({"secretHeader": {"name": "Host", "keyVaultSecret": {"name": "k"}}}, None, "servers.api.outbound.secretHeader.name",
         "cannot carry"),
        ({"secretHeader": {"name": "x-key", "keyVaultSecret": {"name": "k"}, "prefix": "a\nb"}}, None,
         "servers.api.outbound.secretHeader.prefix", ""),
        ({"secretHeader": {"name": "x-key", "keyVaultSecret": {"name": "k", "vault": "http://kv"}}}, None,
         "servers.api.outbound.secretHeader.keyVaultSecret.vault", ""),
        ({"forwardAuthorization": False}, None, "servers.api.outbound.forwardAuthorization", ""),
    ],
)
def test_bad_outbound_config_names_the_field(outbound, auth, field, words):
    with pytest.raises(ConfigError) as error:
        parse_config(server(outbound, auth))
    assert error.value.field == field, error.value.message
    assert words in error.value.message


def test_forward_authorization_warns_at_start_up_and_says_why(caplog):
    config = parse_config(server({"forwardAuthorization": True}))
    with caplog.at_level(logging.WARNING, logger="shared.outbound"):
        BackendCredentials(config, secrets=SecretStore(config.gateway, environ={}), environ={})
    assert "server 'api'" in caplog.text and "MCP spec forbids token passthrough" in caplog.text


def test_no_secret_value_in_reprs():
    assert "s3cr3t" not in repr(Token("s3cr3t", 1.0))
    config = parse_config(server({"secretHeader": {"name": "x", "keyVaultSecret": {"name": "named-only"}}}))
    assert "named-only" in repr(config.servers["api"].outbound)

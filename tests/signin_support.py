"""Sign-in test kit: the emulated tenant with the gateway's app registration, a gateway with
sign-in in front of a real MCP SDK server, a client metadata document host, and a scripted
user who drives the browser part of the flow over HTTP (consent form, Entra, callback)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html import unescape
from typing import Any, Callable
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.auth import OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientInformationFull, OAuthClientMetadata, OAuthToken
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from backends.mcp_servers import build_app
from emulators.entra import EntraEmulator, RegisteredApp
from emulators.server import BackgroundServer
from emulators.tls import TestPKI
from helpers import gateway_config
from shared.app import Gateway, create_app
from shared.config import parse_config
from shared.httpclient import tls_context

SIGNING_KEY = "sign-in-test-key-" + "0123456789abcdef" * 2
API = "api://mcp-gateway"
SCOPE = f"{API}/mcp.access"
REDIRECT = "http://127.0.0.1:33418/callback"
GATEWAY_SECRET = "gateway-app-secret-value"


def sign_in_server(url: str, entra: EntraEmulator, app: RegisteredApp, **sign_in: Any) -> dict[str, Any]:
    return {
        "url": url,
        "auth": {"entra": {
            "tenantId": entra.tenant_id,
            "audiences": [app.client_id, API],
            "requiredScopes": [SCOPE],
            "authorityHost": entra.authority_host,
            "signIn": {"clientId": app.client_id, "clientSecret": {"keyVaultSecret": {"name": "gateway-app-secret"}},
                       **sign_in},
        }},
    }


@dataclass
class SignInSetup:
    entra: EntraEmulator
    app: RegisteredApp
    pki: TestPKI
    base: str
    gateway: Gateway
    backend_url: str

    def url(self, server: str) -> str:
        return f"{self.base}/mcp/{server}"


@pytest.fixture
def gateway_app(entra, key_vault) -> RegisteredApp:
    """The gateway's one app registration: the API clients want, and the confidential client that signs users in."""
    key_vault.set_secret("gateway-app-secret", GATEWAY_SECRET)
    return entra.register_app(secret=GATEWAY_SECRET, identifier_uris=[API], access_token_version=2,
                              display_name="mcp-gateway")


@pytest.fixture
def start_sign_in(start_server, entra, key_vault, managed_identity_env, emulator_pki, gateway_app) -> Callable[..., SignInSetup]:
    def start(*, servers: Callable[[str], dict[str, dict[str, Any]]] | None = None, environ: dict[str, str] | None = None,
              gateway: dict[str, Any] | None = None, backend: Any = None) -> SignInSetup:
        backend_server = start_server(backend or build_app("stateless"))
        url = f"{backend_server.base_url}/mcp"
        entries = servers(url) if servers else {"docs": sign_in_server(url, entra, gateway_app),
                                                 "other": sign_in_server(url, entra, gateway_app)}
        settings = {"caBundle": emulator_pki.ca_path, "keyVaultUrl": key_vault.vault_url,
                    "signIn": {"allowPrivateNetworkClientMetadata": True}, **(gateway or {})}
        document = gateway_config(entries, **settings)
        app = create_app(parse_config(document), environ={"MCP_GATEWAY_SIGNING_KEY": SIGNING_KEY, **(environ or {})})
        base = start_server(app).base_url
        gateway_app.redirect_uris.append(f"{base}/oauth/callback")
        return SignInSetup(entra, gateway_app, emulator_pki, base, app, url)

    return start


class MetadataHost:
    """An HTTPS server (the test CA) serving client metadata documents, counting fetches."""

    def __init__(self, pki: TestPKI) -> None:
        self.documents: dict[str, tuple[bytes, dict[str, str]]] = {}
        self.fetches: dict[str, int] = {}
        self.server = BackgroundServer(Starlette(routes=[Route("/{path:path}", self._serve)]), pki=pki)

    async def _serve(self, request: Request) -> Response:
        path = "/" + request.path_params["path"]
        self.fetches[path] = self.fetches.get(path, 0) + 1
        if path not in self.documents:
            return JSONResponse({"error": "not found"}, status_code=404)
        body, headers = self.documents[path]
        return Response(body, headers={"content-type": "application/json", **headers})

    def publish(self, path: str, document: dict[str, Any] | None = None, *, raw: bytes | None = None,
                headers: dict[str, str] | None = None, **fields: Any) -> str:
        url = f"{self.server.base_url}{path}"
        if raw is None:
            import json

            raw = json.dumps(document if document is not None else {
                "client_id": url, "client_name": "Metadata Client", "redirect_uris": [REDIRECT],
                "token_endpoint_auth_method": "none", **fields}).encode()
        self.documents[path] = (raw, headers or {})
        return url


@pytest.fixture
def metadata_host(emulator_pki):
    host = MetadataHost(emulator_pki)
    host.server.start()
    yield host
    host.server.stop()


_FLOW = re.compile(r'name="flow" value="([^"]+)"')


@dataclass
class ScriptedUser:
    """Follows the authorization URL as a browser would, consents (or denies) by posting the form,
    and stops at the client's redirect URI. Keeps its cookies, as a browser does."""

    pki: TestPKI
    decision: str = "approve"
    pages: list[httpx.Response] = field(default_factory=list)
    landed: str | None = None

    def __post_init__(self) -> None:
        self.http = httpx.AsyncClient(verify=tls_context(self.pki.ca_path), timeout=15, follow_redirects=False)

    async def open(self, url: str, *, stop_at: str = REDIRECT) -> str:
        """Browse from `url` until a redirect leaves for the client's redirect URI; returns that URL."""
        method, data = "GET", None
        for _ in range(12):
            response = await self.http.request(method, url, data=data)
            self.pages.append(response)
            method, data = "GET", None
            if response.is_redirect:
                url = urljoin(url, response.headers["location"])
                if url.startswith(stop_at):
                    self.landed = url
                    return url
                continue
            match = _FLOW.search(response.text) if response.status_code == 200 else None
            if match is None:
                raise AssertionError(f"the browser stopped at {url}: {response.status_code} {response.text[:300]}")
            method, data = "POST", {"flow": unescape(match.group(1)), "decision": self.decision}
            url = urljoin(url, "/oauth/consent")
        raise AssertionError("too many hops")

    async def redirect_handler(self, url: str) -> None:
        await self.open(url)

    async def callback_handler(self) -> AuthorizationCodeResult:
        assert self.landed, "the flow never reached the redirect URI"
        query = {k: v[0] for k, v in parse_qs(urlsplit(self.landed).query).items()}
        if "error" in query:
            raise AssertionError(f"authorization failed: {query}")
        return AuthorizationCodeResult(code=query["code"], state=query.get("state"), iss=query.get("iss"))

    async def aclose(self) -> None:
        await self.http.aclose()


class MemoryTokens:
    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client_info: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client_info = client_info


def oauth_provider(server_url: str, user: ScriptedUser, storage: MemoryTokens, *,
                   client_metadata_url: str | None = None) -> OAuthClientProvider:
    metadata = OAuthClientMetadata(
        redirect_uris=[REDIRECT], client_name="SDK Test Client", token_endpoint_auth_method="none",
        grant_types=["authorization_code", "refresh_token"], response_types=["code"],
    )
    return OAuthClientProvider(server_url, metadata, storage, redirect_handler=user.redirect_handler,
                               callback_handler=user.callback_handler, client_metadata_url=client_metadata_url)


async def call_add(server_url: str, auth: Any) -> dict[str, Any]:
    """The MCP SDK client, signed in through `auth`, calls the backend's add tool."""
    async with httpx2.AsyncClient(auth=auth, timeout=30) as http:
        async with Client(streamable_http_client(server_url, http_client=http)) as client:
            result = await client.call_tool("add", {"a": 2, "b": 40})
    return result.structured_content

"""The authorization server facade: discovery, registration, authorize, consent, callback, token.

Every step is stateless except what must be single use (authorization codes, refresh
token generations), which lives in the shared store: any instance may serve any step.
The steps, and what binds them (docs/inbound.md, "Sign-in for every MCP client"):

    client --authorize--> consent page (sealed request + browser cookie)
    browser --POST consent--> Entra /authorize (state: sealed request, gateway PKCE, browser id)
    Entra --callback--> the client's redirect URI with a one-time code (record in the store)
    client --token--> access token (ES256, this server only) + refresh token (sealed)

Errors before the client and its redirect URI are known good are answered here, never
redirected (no open redirect); later ones go to that redirect URI with `state` and `iss`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
from typing import Any, Awaitable, Callable, Iterable, Mapping
from urllib.parse import parse_qsl, urlencode, urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from ..caller import Caller
from ..config import GatewayConfig, ServerConfig
from ..config.inbound import EntraSignIn
from ..config.outbound import OnBehalfOfOutbound
from ..errors import BodyTooLarge, CredentialUnavailable, GatewayError, OAuthError
from ..headers import get_header
from ..inbound.metadata import issuer_url, public_base_url, resource_url
from ..store import Store, StoreUnavailable
from . import consent, pkce
from .client_metadata import ClientMetadataFetcher
from .clients import Client, Registrations, is_metadata_url, redirect_allowed
from .entra import EntraSignInClient, EntraTokens, authorize_endpoint, authorize_url
from .keys import SignInKeys
from .tokens import AccessTokens, SignedInUser

logger = logging.getLogger("shared.oauth")

FLOW_SECONDS = 600
"""A sign-in must get from the consent page back to the callback within this time."""
CODE_SECONDS = 300
MAX_FORM_BYTES = 16 * 1024
MAX_PARAM_CHARS = 4096
_USED = b"used"
_JSON_HEADERS = {"cache-control": "no-store", "pragma": "no-cache"}

EntraTokenCheck = Callable[[ServerConfig, str], Awaitable[Caller]]
"""Checks an Entra access token as the server checks the tokens clients bring (inbound)."""


def _single(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Parameters, each at most once (RFC 6749 3.1); an empty value counts as absent."""
    params: dict[str, str] = {}
    for name, value in pairs:
        if name in params:
            raise OAuthError("invalid_request", f"parameter {name!r} is repeated")
        if len(value) > MAX_PARAM_CHARS:
            raise OAuthError("invalid_request", f"parameter {name!r} is too long")
        if value:
            params[name] = value
    return params


def _query(request: Request) -> dict[str, str]:
    raw = request.scope.get("query_string", b"").decode("latin-1")
    try:
        return _single(parse_qsl(raw, keep_blank_values=True, max_num_fields=64, errors="strict"))
    except (ValueError, UnicodeDecodeError):
        raise OAuthError("invalid_request", "the query string is malformed") from None


async def _form(request: Request, body: Any) -> dict[str, str]:
    """A bounded application/x-www-form-urlencoded body, read through the gateway's body limits."""
    content_type = (get_header(request.scope, b"content-type") or "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise OAuthError("invalid_request", "send the parameters as application/x-www-form-urlencoded")
    data = await _read(body)
    try:
        return _single(parse_qsl(data.decode("utf-8"), keep_blank_values=True, max_num_fields=64, errors="strict"))
    except (ValueError, UnicodeDecodeError):
        raise OAuthError("invalid_request", "the form is malformed") from None


async def _read(body: Any) -> bytes:
    data = bytearray()
    if body is None:
        return b""
    async for chunk in body:
        data += chunk
        if len(data) > MAX_FORM_BYTES:
            raise BodyTooLarge(f"sign-in requests are at most {MAX_FORM_BYTES} bytes")
    return bytes(data)


def _with_query(uri: str, params: Mapping[str, str]) -> str:
    """`uri` with `params` added to its own query (RFC 6749 3.1.2: the query is kept)."""
    parts = urlsplit(uri)
    query = "&".join(q for q in (parts.query, urlencode(params)) if q)
    return parts._replace(query=query, fragment="").geturl()


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


class SignInService:
    def __init__(
        self,
        config: GatewayConfig,
        *,
        keys: SignInKeys,
        store: Store,
        entra: EntraSignInClient,
        check_entra_token: EntraTokenCheck,
    ) -> None:
        self.config = config
        self.settings = config.gateway.sign_in
        self.keys = keys
        self.store = store
        self.entra = entra
        self.check_entra_token = check_entra_token
        self.tokens = AccessTokens(keys)
        self.registrations = Registrations(keys)
        self.client_metadata = ClientMetadataFetcher(
            ca_bundle=config.gateway.ca_bundle, allow_private=self.settings.allow_private_network_client_metadata
        )
        self.servers = {
            name: server
            for name, server in config.servers.items()
            if server.auth and server.auth.entra and server.auth.entra.sign_in
        }

    async def aclose(self) -> None:
        await self.client_metadata.aclose()
        await self.store.aclose()

    # -- the pieces every step needs --------------------------------------------------

    def _base(self, request: Request) -> str:
        return public_base_url(request, self.config.gateway)

    def _secure(self, request: Request) -> bool:
        return self._base(request).startswith("https://")

    @staticmethod
    def sign_in_of(server: ServerConfig) -> EntraSignIn:
        assert server.auth and server.auth.entra and server.auth.entra.sign_in
        return server.auth.entra.sign_in

    def _server(self, name: Any) -> ServerConfig:
        server = self.servers.get(name) if isinstance(name, str) else None
        if server is None:
            raise OAuthError("invalid_request", "this sign-in names no server that offers sign-in")
        return server

    async def _client(self, server: ServerConfig, client_id: str) -> Client:
        if is_metadata_url(client_id):
            if not self.settings.client_metadata_documents:
                raise OAuthError("invalid_client", "client metadata documents are not accepted here")
            return await self.client_metadata.get(client_id)
        client = self.registrations.client(server.name, client_id) if self.settings.dynamic_client_registration else None
        if client is None:
            raise OAuthError("invalid_client", "unknown client_id: register first, or use a client metadata document URL")
        return client

    # -- discovery ------------------------------------------------------------------------

    def metadata(self, server: ServerConfig, request: Request) -> dict[str, Any]:
        base = self._base(request)
        issuer = issuer_url(base, server)
        rules = server.auth.entra.rules  # type: ignore[union-attr]
        document: dict[str, Any] = {
            "issuer": issuer,
            "authorization_endpoint": f"{issuer}/authorize",
            "token_endpoint": f"{issuer}/token",
            "jwks_uri": f"{base}/oauth/jwks",
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["none"],
            "scopes_supported": list(rules.required_scopes or self.sign_in_of(server).scopes),
            "client_id_metadata_document_supported": self.settings.client_metadata_documents,
            "authorization_response_iss_parameter_supported": True,
        }
        if self.settings.dynamic_client_registration:
            document["registration_endpoint"] = f"{issuer}/register"
        return document

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.keys.public_jwk()]}

    # -- registration (RFC 7591) ------------------------------------------------------------

    async def register(self, server: ServerConfig, request: Request, body: Any) -> Response:
        if not self.settings.dynamic_client_registration:
            raise OAuthError("invalid_request", "dynamic client registration is off: use a client metadata document", status=403)
        content_type = (get_header(request.scope, b"content-type") or "").split(";")[0].strip().lower()
        if content_type != "application/json":
            raise OAuthError("invalid_client_metadata", "send the registration as application/json")
        try:
            document = json.loads(await _read(body))
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise OAuthError("invalid_client_metadata", "the registration is not JSON") from None
        client, answer = self.registrations.register(server.name, document)
        logger.info("sign-in: server %r registered a client named %r", server.name, client.name)
        return JSONResponse(answer, status_code=201, headers=_JSON_HEADERS)

    # -- authorize: check the request, then ask for consent -------------------------------------

    async def authorize(self, server: ServerConfig, request: Request) -> Response:
        params = _query(request)
        client_id = params.get("client_id")
        if not client_id:
            raise OAuthError("invalid_request", "client_id is required")
        client = await self._client(server, client_id)
        redirect_uri = params.get("redirect_uri")
        if not redirect_uri or not redirect_allowed(client, redirect_uri):
            # Never redirect to a URI the client did not register: that would be an open redirect.
            raise OAuthError("invalid_request", "redirect_uri is not one the client registered")
        base = self._base(request)
        issuer = issuer_url(base, server)
        state = params.get("state")
        try:
            self._check_authorization_request(server, params, base)
        except OAuthError as error:
            return self._to_client(redirect_uri, issuer, state, error.code, error.message)
        secure = self._secure(request)
        browser = consent.browser_id(request, secure) or consent.new_browser_id()
        flow = self.keys.seal_json(
            "consent form",
            {"s": server.name, "c": client.client_id, "n": client.name, "r": redirect_uri, "st": state,
             "cc": params["code_challenge"], "b": browser},
            FLOW_SECONDS,
        )
        page = consent.consent_page(
            client=client,
            redirect_uri=redirect_uri,
            server_label=server.description or server.name,
            resource=resource_url(base, server),
            flow=flow,
            form_targets=[authorize_endpoint(self.sign_in_of(server)), redirect_uri],
        )
        consent.set_browser_cookie(page, browser, secure)
        return page

    def _check_authorization_request(self, server: ServerConfig, params: Mapping[str, str], base: str) -> None:
        if params.get("response_type") != "code":
            raise OAuthError("unsupported_response_type", "response_type must be code")
        challenge = params.get("code_challenge")
        if not challenge:
            raise OAuthError("invalid_request", "PKCE is required: send code_challenge with code_challenge_method S256")
        if params.get("code_challenge_method") != "S256":
            raise OAuthError("invalid_request", "code_challenge_method must be S256")
        if not pkce.is_challenge(challenge):
            raise OAuthError("invalid_request", "code_challenge is not an S256 challenge")
        if "resource" in params and params["resource"] != resource_url(base, server):
            raise OAuthError("invalid_target", "resource is not this server")
        if "none" in params.get("prompt", "").split():
            raise OAuthError("consent_required", "this gateway asks for consent on every sign-in")
        if len(params.get("state", "")) > 1024:
            raise OAuthError("invalid_request", "state is too long")

    def _to_client(
        self, redirect_uri: str, issuer: str, state: str | None, error: str | None = None, description: str | None = None,
        **values: str,
    ) -> Response:
        answer = dict(values)
        if error:
            answer["error"] = error
            if description:
                answer["error_description"] = description
        if state:
            answer["state"] = state
        answer["iss"] = issuer
        return RedirectResponse(_with_query(redirect_uri, answer), status_code=302, headers=_JSON_HEADERS)

    # -- consent: approve (to Entra) or deny ---------------------------------------------------

    async def consent(self, request: Request, body: Any) -> Response:
        form = await _form(request, body)
        flow = self.keys.unseal_json("consent form", form.get("flow", ""))
        if flow is None:
            raise OAuthError("invalid_request", "the consent form has expired or was altered: start the sign-in again")
        secure = self._secure(request)
        if not consent.same_browser(request, secure, flow["b"]):
            raise OAuthError("invalid_request", "this consent form was not issued to this browser: start the sign-in again")
        server = self._server(flow["s"])
        base = self._base(request)
        issuer = issuer_url(base, server)
        decision = form.get("decision")
        if decision == "deny":
            logger.info("sign-in: server %r: the user denied client %s", server.name, flow["c"])
            return self._to_client(flow["r"], issuer, flow["st"], "access_denied", "the user denied the request")
        if decision != "approve":
            raise OAuthError("invalid_request", "decision must be approve or deny")
        verifier = pkce.new_verifier()
        state = self.keys.seal_json("entra state", {**{k: v for k, v in flow.items() if k != "exp"}, "v": verifier}, FLOW_SECONDS)
        url = authorize_url(
            self.sign_in_of(server), redirect_uri=f"{base}/oauth/callback", state=state, code_challenge=pkce.s256(verifier)
        )
        return RedirectResponse(url, status_code=303, headers={"cache-control": "no-store", "referrer-policy": "no-referrer"})

    # -- callback: Entra's code for the gateway's one-time code ----------------------------------

    async def callback(self, request: Request) -> Response:
        params = _query(request)
        flow = self.keys.unseal_json("entra state", params.get("state", ""))
        if flow is None:
            raise OAuthError("invalid_request", "the sign-in state is invalid or has expired: start the sign-in again")
        if not consent.same_browser(request, self._secure(request), flow["b"]):
            # A link made in another browser (perhaps the attacker's, after approving their own client).
            raise OAuthError("invalid_request", "this sign-in was started in another browser: start it again here")
        server = self._server(flow["s"])
        base = self._base(request)
        issuer = issuer_url(base, server)

        def fail(error: str, description: str) -> Response:
            return self._to_client(flow["r"], issuer, flow["st"], error, description)

        if "error" in params or "code" not in params:
            denied = params.get("error") in ("access_denied", "consent_required", "interaction_required", "login_required")
            logger.info("sign-in: server %r: Entra ID answered %s", server.name, params.get("error", "no code"))
            return fail("access_denied" if denied else "server_error", "the sign-in with Microsoft Entra ID did not complete")
        sign_in = self.sign_in_of(server)
        try:
            entra_tokens = await self.entra.redeem(
                sign_in, code=params["code"], redirect_uri=f"{base}/oauth/callback", verifier=flow["v"]
            )
        except CredentialUnavailable as failure:
            logger.warning("sign-in: server %r: the gateway could not redeem the Entra code (%d)", server.name, failure.status)
            logger.debug("sign-in: server %r: %s", server.name, failure.message)
            return fail("server_error" if failure.status != 503 else "temporarily_unavailable",
                        "the gateway could not complete the sign-in with Microsoft Entra ID")
        try:
            user = await self._user(server, entra_tokens)
        except GatewayError as refusal:
            logger.info("sign-in: server %r: the signed-in user may not use it: %s", server.name, refusal.message)
            return fail("access_denied", refusal.client_message)
        code = secrets.token_urlsafe(32)
        record = {
            "s": server.name, "c": flow["c"], "r": flow["r"], "cc": flow["cc"], "u": user.__dict__,
            "rt": entra_tokens.refresh_token,
            **self._carried(server, entra_tokens),
        }
        try:
            stored = await self.store.insert_if_absent(
                f"code-{_digest(code)}", self.keys.seal("code record", json.dumps(record).encode()).encode(), CODE_SECONDS
            )
        except StoreUnavailable as failure:
            logger.warning("sign-in: server %r: the store is unavailable: %s", server.name, failure)
            return fail("temporarily_unavailable", "the gateway's store is unavailable: try again")
        if not stored:  # 256 random bits met an earlier code: never expected
            return fail("server_error", "try again")
        logger.info("sign-in: server %r: user %s signed in for client %s", server.name, user.object_id, flow["c"])
        return self._to_client(flow["r"], issuer, flow["st"], code=code)

    def _carried(self, server: ServerConfig, tokens: EntraTokens) -> dict[str, Any]:
        """On-behalf-of needs the user's Entra token later: only then is it carried."""
        if isinstance(server.outbound, OnBehalfOfOutbound):
            return {"at": tokens.access_token, "ate": tokens.expires_at}
        return {}

    async def _user(self, server: ServerConfig, tokens: EntraTokens) -> SignedInUser:
        caller = await self.check_entra_token(server, tokens.access_token)
        if not caller.object_id:
            raise OAuthError("access_denied", "the Entra token names no user")
        rules = server.auth.entra.rules  # type: ignore[union-attr]
        claims = caller.claims
        return SignedInUser(
            object_id=str(caller.object_id),
            tenant_id=caller.tenant_id,
            name=claims.get("name") if isinstance(claims.get("name"), str) else None,
            username=next((claims[k] for k in ("preferred_username", "upn") if isinstance(claims.get(k), str)), None),
            roles=tuple(sorted(caller.roles)),
            scope=" ".join(rules.required_scopes or self.sign_in_of(server).scopes),
        )

    # -- token ------------------------------------------------------------------------------------

    async def token(self, server: ServerConfig, request: Request, body: Any) -> Response:
        form = await _form(request, body)
        grant = form.get("grant_type")
        if not form.get("client_id"):
            raise OAuthError("invalid_request", "client_id is required (public clients name themselves)")
        base = self._base(request)
        if "resource" in form and form["resource"] != resource_url(base, server):
            raise OAuthError("invalid_target", "resource is not this server")
        try:
            if grant == "authorization_code":
                return await self._code_grant(server, form, base)
            if grant == "refresh_token":
                return await self._refresh_grant(server, form, base)
        except StoreUnavailable as failure:
            logger.warning("sign-in: server %r: the store is unavailable: %s", server.name, failure)
            raise OAuthError("temporarily_unavailable", "the gateway's store is unavailable: try again", status=503) from None
        raise OAuthError("unsupported_grant_type", "grant_type must be authorization_code or refresh_token")

    async def _code_grant(self, server: ServerConfig, form: Mapping[str, str], base: str) -> Response:
        for name in ("code", "redirect_uri", "code_verifier"):
            if name not in form:
                raise OAuthError("invalid_request", f"{name} is required")
        key = f"code-{_digest(form['code'])}"
        entry = await self.store.get(key)
        if entry is None:
            raise OAuthError("invalid_grant", "the authorization code is unknown or has expired")
        if entry.value == _USED or not await self.store.replace(key, _USED, entry.etag, CODE_SECONDS):
            # Spent before it is checked: a code is good for one try, on any instance.
            raise OAuthError("invalid_grant", "the authorization code has been used already")
        opened = self.keys.unseal("code record", entry.value.decode())
        if opened is None:
            raise OAuthError("invalid_grant", "the authorization code is unknown or has expired")
        record = json.loads(opened)
        if record["s"] != server.name:
            raise OAuthError("invalid_grant", "the authorization code was issued for another server")
        if not hmac.compare_digest(record["c"].encode(), form["client_id"].encode()):
            raise OAuthError("invalid_grant", "the authorization code was issued to another client")
        if record["r"] != form["redirect_uri"]:
            raise OAuthError("invalid_grant", "redirect_uri is not the one of the authorization request")
        if not pkce.verifies(form["code_verifier"], record["cc"]):
            raise OAuthError("invalid_grant", "code_verifier does not match the code_challenge")
        user = SignedInUser(**{**record["u"], "roles": tuple(record["u"]["roles"])})
        family = None
        if record.get("rt"):
            family = secrets.token_urlsafe(16)
            await self.store.insert_if_absent(f"rtf-{family}", b"1", self.sign_in_of(server).refresh_token_lifetime)
        logger.info("sign-in: server %r: tokens issued to client %s for user %s", server.name, record["c"], user.object_id)
        return self._tokens(server, base, record["c"], user, record.get("at"), record.get("ate"), record.get("rt"), family, 1,
                            self.sign_in_of(server).refresh_token_lifetime)

    async def _refresh_grant(self, server: ServerConfig, form: Mapping[str, str], base: str) -> Response:
        sealed = self.keys.unseal_json("refresh token", form.get("refresh_token", ""))
        if sealed is None:
            raise OAuthError("invalid_grant", "the refresh token is invalid or has expired")
        if sealed["s"] != server.name:
            raise OAuthError("invalid_grant", "the refresh token was issued for another server")
        if not hmac.compare_digest(sealed["c"].encode(), form["client_id"].encode()):
            raise OAuthError("invalid_grant", "the refresh token was issued to another client")
        key = f"rtf-{sealed['f']}"
        entry = await self.store.get(key)
        if entry is None or entry.value != str(sealed["g"]).encode():
            raise OAuthError("invalid_grant", "the refresh token has been used already: sign in again")
        sign_in = self.sign_in_of(server)
        try:
            entra_tokens = await self.entra.refresh(sign_in, sealed["rt"])
            user = await self._user(server, entra_tokens)
        except CredentialUnavailable as failure:
            logger.warning("sign-in: server %r: Entra ID refresh failed (%d)", server.name, failure.status)
            logger.debug("sign-in: server %r: %s", server.name, failure.message)
            if failure.status == 503:
                raise OAuthError("temporarily_unavailable", "Microsoft Entra ID is unavailable: try again", status=503) from None
            raise OAuthError("invalid_grant", "Microsoft Entra ID refused the refresh: sign in again") from None
        except GatewayError as refusal:
            raise OAuthError("invalid_grant", f"the user may no longer use this server: {refusal.client_message}") from None
        generation = int(sealed["g"]) + 1
        remaining = sealed["exp"] - int(self.tokens.clock())
        if not await self.store.replace(key, str(generation).encode(), entry.etag, max(remaining, 1)):
            raise OAuthError("invalid_grant", "the refresh token has been used already: sign in again")
        carried = self._carried(server, entra_tokens)
        return self._tokens(server, base, sealed["c"], user, carried.get("at"), carried.get("ate"),
                            entra_tokens.refresh_token, sealed["f"], generation, remaining)

    def _tokens(
        self, server: ServerConfig, base: str, client_id: str, user: SignedInUser, entra_token: str | None,
        entra_expires_at: float | None, entra_refresh: str | None, family: str | None, generation: int, refresh_ttl: float,
    ) -> Response:
        sign_in = self.sign_in_of(server)
        access, expires_in = self.tokens.issue(
            issuer=issuer_url(base, server), audience=resource_url(base, server), client_id=client_id, user=user,
            lifetime=sign_in.access_token_lifetime, entra_token=entra_token, entra_expires_at=entra_expires_at,
        )
        answer: dict[str, Any] = {"access_token": access, "token_type": "Bearer", "expires_in": expires_in, "scope": user.scope}
        if entra_refresh and family:
            answer["refresh_token"] = self.keys.seal_json(
                "refresh token",
                {"s": server.name, "c": client_id, "f": family, "g": generation, "rt": entra_refresh},
                refresh_ttl,
            )
        return JSONResponse(answer, headers=_JSON_HEADERS)


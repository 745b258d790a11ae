"""Every attack the sign-in facade must stand: each drives the real gateway, the Entra
emulator and a scripted browser over HTTP, and checks what an attacker gets (nothing)."""

from __future__ import annotations

import asyncio
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from shared.oauth import pkce
from signin_support import REDIRECT, ScriptedUser, gateway_app, start_sign_in  # noqa: F401 - fixtures

EVIL = "https://evil.example/steal"


async def register(base: str, redirect_uris=(REDIRECT,), name: str = "Attack Test Client", server: str = "docs") -> str:
    async with httpx.AsyncClient() as http:
        answer = await http.post(f"{base}/oauth/{server}/register", json={"redirect_uris": list(redirect_uris), "client_name": name})
    assert answer.status_code == 201, answer.text
    return answer.json()["client_id"]


def authorize_url(base: str, client_id: str, *, server: str = "docs", redirect_uri: str = REDIRECT,
                  verifier: str | None = None, **extra: str) -> str:
    params = {"response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri, "state": "client-state-1"}
    if verifier is not None:
        params.update(code_challenge=pkce.s256(verifier), code_challenge_method="S256")
    params.update(extra)
    return f"{base}/oauth/{server}/authorize?{urlencode({k: v for k, v in params.items() if v is not None})}"


def landed(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


async def sign_in(setup, client_id: str, verifier: str, *, server: str = "docs", redirect_uri: str = REDIRECT) -> dict[str, str]:
    user = ScriptedUser(setup.pki)
    try:
        return landed(await user.open(authorize_url(setup.base, client_id, server=server, redirect_uri=redirect_uri,
                                                    verifier=verifier), stop_at=redirect_uri))
    finally:
        await user.aclose()


async def redeem(base: str, client_id: str, code: str, verifier: str, *, server: str = "docs",
                 redirect_uri: str = REDIRECT) -> httpx.Response:
    async with httpx.AsyncClient() as http:
        return await http.post(f"{base}/oauth/{server}/token", data={
            "grant_type": "authorization_code", "code": code, "client_id": client_id,
            "redirect_uri": redirect_uri, "code_verifier": verifier})


@pytest.fixture
def setup(start_sign_in):
    return start_sign_in()


# -- redirect_uri ------------------------------------------------------------------------------

async def test_a_redirect_uri_the_client_did_not_register_is_refused_without_redirecting(setup):
    client_id = await register(setup.base)
    verifier = pkce.new_verifier()
    async with httpx.AsyncClient() as http:
        for uri in (EVIL, "http://127.0.0.1:33418/other", "http://localhost:33418/callback", REDIRECT + "?x=1",
                    "http://127.0.0.1:33418@evil.example/callback"):
            answer = await http.get(authorize_url(setup.base, client_id, redirect_uri=uri, verifier=verifier))
            assert answer.status_code == 400, uri
            assert "location" not in answer.headers
            assert answer.json()["error"] == "invalid_request"
        # RFC 8252: a loopback redirect matches on any port
        other_port = await http.get(authorize_url(setup.base, client_id, redirect_uri="http://127.0.0.1:5999/callback",
                                                  verifier=verifier))
    assert other_port.status_code == 200 and "Attack Test Client" in other_port.text


@pytest.mark.parametrize("presented", [
    "http://[::1]x;frame-ancestors *;:80/cb",   # text between the bracket and the port
    "http://[::1]evil:80/cb",
    "http://[::1]:80x/cb",
    "http://127.0.0.1:80:81/cb",
    "http://[::1]:80/c b",                       # a character no registered URI may hold
])
async def test_a_loopback_redirect_with_anything_but_a_port_after_the_host_is_refused(setup, presented):
    """A loopback redirect matches on any port, and only the port: the presented URI is
    written into the consent page's Content-Security-Policy, where a `;` would add a directive."""
    client_id = await register(setup.base, redirect_uris=["http://[::1]:1/cb"])
    async with httpx.AsyncClient() as http:
        answer = await http.get(authorize_url(setup.base, client_id, redirect_uri=presented, verifier=pkce.new_verifier()))
    assert answer.status_code == 400, presented
    assert "location" not in answer.headers and "frame-ancestors *" not in answer.headers.get("content-security-policy", "")


async def test_the_token_request_must_name_the_same_redirect_uri(setup):
    client_id = await register(setup.base)
    verifier = pkce.new_verifier()
    other_port = "http://127.0.0.1:5999/callback"
    code = (await sign_in(setup, client_id, verifier, redirect_uri=other_port))["code"]
    refused = await redeem(setup.base, client_id, code, verifier, redirect_uri=REDIRECT)
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"


async def test_registration_refuses_redirect_uris_that_are_not_safe(setup):
    async with httpx.AsyncClient() as http:
        for uri in ("http://evil.example/cb", "javascript:alert(1)", "data:text/html,x", "https://x.example/cb#frag",
                    "https://user@x.example/cb", "file:///etc/passwd", "https://x.example/a;b", "myapp:/cb"):
            answer = await http.post(f"{setup.base}/oauth/docs/register", json={"redirect_uris": [uri]})
            assert answer.status_code == 400, uri
            assert answer.json()["error"] == "invalid_redirect_uri"


# -- PKCE ------------------------------------------------------------------------------------------

async def test_missing_or_plain_pkce_is_refused(setup):
    client_id = await register(setup.base)
    verifier = pkce.new_verifier()
    async with httpx.AsyncClient() as http:
        missing = await http.get(authorize_url(setup.base, client_id))
        # a plain challenge of 43 characters looks exactly like an S256 one: only the method tells
        plain = await http.get(authorize_url(setup.base, client_id, code_challenge=verifier[:43], code_challenge_method="plain"))
        unnamed = await http.get(authorize_url(setup.base, client_id, code_challenge=pkce.s256(verifier)))
    for answer in (missing, plain, unnamed):
        assert answer.status_code == 302
        back = landed(answer.headers["location"])
        assert answer.headers["location"].startswith(REDIRECT)
        assert back["error"] == "invalid_request" and "code" not in back
        assert back["state"] == "client-state-1" and back["iss"] == f"{setup.base}/oauth/docs"
    assert not setup.entra.authorize_requests


async def test_a_wrong_code_verifier_is_refused_and_spends_the_code(setup):
    client_id = await register(setup.base)
    verifier = pkce.new_verifier()
    code = (await sign_in(setup, client_id, verifier))["code"]
    wrong = await redeem(setup.base, client_id, code, pkce.new_verifier())
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"
    right_too_late = await redeem(setup.base, client_id, code, verifier)
    assert right_too_late.status_code == 400


# -- code replay -------------------------------------------------------------------------------------

async def test_a_code_is_redeemed_once_even_by_concurrent_requests(setup):
    client_id = await register(setup.base)
    verifier = pkce.new_verifier()
    code = (await sign_in(setup, client_id, verifier))["code"]
    answers = await asyncio.gather(*(redeem(setup.base, client_id, code, verifier) for _ in range(6)))
    assert sorted(a.status_code for a in answers) == [200] + [400] * 5
    assert all(a.json()["error"] == "invalid_grant" for a in answers if a.status_code == 400)


# -- state tampering --------------------------------------------------------------------------------

async def test_a_tampered_state_or_consent_form_is_refused_without_redirecting(setup):
    client_id = await register(setup.base)
    verifier = pkce.new_verifier()
    user = ScriptedUser(setup.pki)
    try:
        page = await user.http.get(authorize_url(setup.base, client_id, verifier=verifier))
        flow = page.text.split('name="flow" value="')[1].split('"')[0]
        forged = flow[:-6] + ("AAAAAA" if not flow.endswith("AAAAAA") else "BBBBBB")
        refused = await user.http.post(f"{setup.base}/oauth/consent", data={"flow": forged, "decision": "approve"})
        assert refused.status_code == 400 and "location" not in refused.headers
        approved = await user.http.post(f"{setup.base}/oauth/consent", data={"flow": flow, "decision": "approve"})
        assert approved.status_code == 303
        at_entra = await user.http.get(approved.headers["location"])
        callback = at_entra.headers["location"]
        params = landed(callback)
        tampered = {**params, "state": params["state"][:-4] + ("AAAA" if not params["state"].endswith("AAAA") else "BBBB")}
        answer = await user.http.get(f"{setup.base}/oauth/callback?{urlencode(tampered)}")
        assert answer.status_code == 400 and "location" not in answer.headers
        # the untouched callback still works, and gives the client its own state back
        good = await user.http.get(callback)
        assert good.status_code == 302 and landed(good.headers["location"])["state"] == "client-state-1"
    finally:
        await user.aclose()


# -- a token from another client ---------------------------------------------------------------------

async def test_codes_and_refresh_tokens_of_one_client_are_refused_to_another(setup):
    alice_client = await register(setup.base, name="Client A")
    mallory_client = await register(setup.base, name="Client B")
    verifier = pkce.new_verifier()
    code = (await sign_in(setup, alice_client, verifier))["code"]
    stolen = await redeem(setup.base, mallory_client, code, verifier)
    assert stolen.status_code == 400 and stolen.json()["error"] == "invalid_grant"

    code = (await sign_in(setup, alice_client, verifier))["code"]
    tokens = (await redeem(setup.base, alice_client, code, verifier)).json()
    async with httpx.AsyncClient() as http:
        refresh = await http.post(f"{setup.base}/oauth/docs/token", data={
            "grant_type": "refresh_token", "refresh_token": tokens["refresh_token"], "client_id": mallory_client})
        elsewhere = await http.post(f"{setup.base}/oauth/other/token", data={
            "grant_type": "refresh_token", "refresh_token": tokens["refresh_token"], "client_id": alice_client})
    assert refresh.status_code == 400 and refresh.json()["error"] == "invalid_grant"
    assert elsewhere.status_code == 400 and elsewhere.json()["error"] == "invalid_grant"


async def test_a_registration_for_one_server_is_unknown_to_another(setup):
    client_id = await register(setup.base, server="docs")
    async with httpx.AsyncClient() as http:
        answer = await http.get(authorize_url(setup.base, client_id, server="other", verifier=pkce.new_verifier()))
        forged = await http.get(authorize_url(setup.base, client_id.replace("dcr.", "dcr.x"), verifier=pkce.new_verifier()))
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_client"
    assert forged.status_code == 400 and forged.json()["error"] == "invalid_client"


# -- open redirects through the error paths ---------------------------------------------------------

async def test_no_error_path_redirects_anywhere_but_a_registered_uri(setup):
    client_id = await register(setup.base)
    verifier = pkce.new_verifier()
    probes = [
        authorize_url(setup.base, "no-such-client", redirect_uri=EVIL, verifier=verifier),
        authorize_url(setup.base, "https://127.0.0.1:1/nothing.json", redirect_uri=EVIL, verifier=verifier),
        authorize_url(setup.base, client_id, redirect_uri=EVIL),  # and no PKCE either
        authorize_url(setup.base, client_id, redirect_uri=EVIL, verifier=verifier, response_type="token"),
        f"{setup.base}/oauth/callback?error=access_denied&state=garbage&redirect_uri={EVIL}",
        f"{setup.base}/oauth/callback?code=x",
    ]
    async with httpx.AsyncClient() as http:
        for url in probes:
            answer = await http.get(url)
            assert answer.status_code == 400, url
            assert "location" not in answer.headers, url
        duplicated = await http.get(authorize_url(setup.base, client_id, verifier=verifier) + f"&redirect_uri={EVIL}")
    assert duplicated.status_code == 400 and "location" not in duplicated.headers


# -- consent cannot be skipped -----------------------------------------------------------------------

async def test_prompt_none_never_skips_consent(setup):
    client_id = await register(setup.base)
    async with httpx.AsyncClient() as http:
        answer = await http.get(authorize_url(setup.base, client_id, verifier=pkce.new_verifier(), prompt="none"))
    assert answer.status_code == 302
    back = landed(answer.headers["location"])
    assert back["error"] == "consent_required" and "code" not in back
    assert not setup.entra.authorize_requests


async def test_an_entra_link_approved_in_another_browser_delivers_nothing(setup):
    """The attacker approves their own client in their own browser and sends the resulting Entra
    link to a victim who is signed in to Entra: the victim's browser is not the one the flow names."""
    client_id = await register(setup.base, redirect_uris=[REDIRECT], name="Innocent Looking Client")
    attacker, victim = ScriptedUser(setup.pki), ScriptedUser(setup.pki)
    try:
        page = await attacker.http.get(authorize_url(setup.base, client_id, verifier=pkce.new_verifier()))
        flow = page.text.split('name="flow" value="')[1].split('"')[0]
        approved = await attacker.http.post(f"{setup.base}/oauth/consent", data={"flow": flow, "decision": "approve"})
        entra_link = approved.headers["location"]
        # the victim has a consent cookie of their own from an earlier sign-in
        await victim.http.get(authorize_url(setup.base, client_id, verifier=pkce.new_verifier()))
        at_entra = await victim.http.get(entra_link)
        callback = await victim.http.get(at_entra.headers["location"])
        assert callback.status_code == 400 and "location" not in callback.headers
        assert "another browser" in callback.json()["error_description"]
        # nor may the attacker post their consent form from the victim's browser
        replayed = await victim.http.post(f"{setup.base}/oauth/consent", data={"flow": flow, "decision": "approve"})
        assert replayed.status_code == 400 and "location" not in replayed.headers
    finally:
        await attacker.aclose()
        await victim.aclose()


async def test_consent_is_a_post_from_the_gateways_own_pages(setup):
    client_id = await register(setup.base)
    user = ScriptedUser(setup.pki)
    try:
        page = await user.http.get(authorize_url(setup.base, client_id, verifier=pkce.new_verifier()))
        flow = page.text.split('name="flow" value="')[1].split('"')[0]
        as_get = await user.http.get(f"{setup.base}/oauth/consent?{urlencode({'flow': flow, 'decision': 'approve'})}")
        cross_site = await user.http.post(f"{setup.base}/oauth/consent", data={"flow": flow, "decision": "approve"},
                                          headers={"origin": "https://evil.example"})
        as_json = await user.http.post(f"{setup.base}/oauth/consent", json={"flow": flow, "decision": "approve"})
    finally:
        await user.aclose()
    assert as_get.status_code == 405
    assert cross_site.status_code == 403
    assert as_json.status_code == 400
    assert not setup.entra.authorize_requests


async def test_deny_sends_access_denied_to_the_client_and_nothing_to_entra(setup):
    client_id = await register(setup.base)
    user = ScriptedUser(setup.pki, decision="deny")
    try:
        back = landed(await user.open(authorize_url(setup.base, client_id, verifier=pkce.new_verifier())))
    finally:
        await user.aclose()
    assert back["error"] == "access_denied" and back["state"] == "client-state-1" and "code" not in back
    assert not setup.entra.authorize_requests


async def test_the_consent_page_is_locked_down(setup):
    client_id = await register(setup.base, name='<script>alert("x")</script>')
    async with httpx.AsyncClient() as http:
        page = await http.get(authorize_url(setup.base, client_id, verifier=pkce.new_verifier()))
    assert page.status_code == 200
    assert "<script>" not in page.text and "&lt;script&gt;" in page.text
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert f"form-action 'self' {setup.entra.authorize_endpoint} http://127.0.0.1:33418/callback;" in csp
    assert page.headers["x-frame-options"] == "DENY" and page.headers["cache-control"] == "no-store"
    cookie = page.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie and "path=/" in cookie

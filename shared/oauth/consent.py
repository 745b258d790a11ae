"""The consent page, and the browser binding that carries a sign-in through Entra and back.

The page is rendered on the server with every value escaped, and locked down: a strict
Content-Security-Policy (nothing loads; the form may only go to the gateway, and its
answer only lead to Entra's authorize endpoint or the client's redirect URI: Chromium
applies `form-action` to the redirects that follow a form post too), no framing, no
referrer to other sites, no caching.

The browser binding is a random browser id in an HttpOnly cookie, named inside every
sealed step (the consent form, Entra's `state`). SameSite=Lax, not Strict: Entra sends
the browser back with a top-level cross-site redirect, which a Strict cookie would miss.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import re
import secrets
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import HTMLResponse

from .clients import Client, redirect_host

SECURE_COOKIE = "__Host-mcp-signin"
PLAIN_COOKIE = "mcp-signin"
"""Over plain http (local tests) a `__Host-` cookie cannot be set: it requires Secure."""
COOKIE_SECONDS = 3600
_BROWSER_ID = re.compile(r"^[A-Za-z0-9_-]{43}$")

_STYLE = (
    "body{font-family:system-ui,sans-serif;background:#f5f5f5;margin:0;padding:2rem;color:#1b1b1b}"
    "main{max-width:34rem;margin:auto;background:#fff;padding:2rem;border-radius:8px;box-shadow:0 1px 4px #0002}"
    "h1{font-size:1.3rem;margin-top:0}dt{font-weight:600;margin-top:.6rem}dd{margin:0;overflow-wrap:anywhere}"
    ".warn{color:#8a4b00}form{display:flex;gap:1rem;margin-top:1.5rem}"
    "button{font-size:1rem;padding:.6rem 1.4rem;border-radius:4px;border:1px solid #555;cursor:pointer}"
    "#approve{background:#0b5cad;color:#fff;border-color:#0b5cad}"
)
_STYLE_HASH = base64.b64encode(hashlib.sha256(_STYLE.encode()).digest()).decode()


def cookie_name(secure: bool) -> str:
    return SECURE_COOKIE if secure else PLAIN_COOKIE


def browser_id(request: Request, secure: bool) -> str | None:
    """The browser's id from its cookie, if it has a well-formed one."""
    value = request.cookies.get(cookie_name(secure))
    return value if value and _BROWSER_ID.match(value) else None


def new_browser_id() -> str:
    return secrets.token_urlsafe(32)


def same_browser(request: Request, secure: bool, expected: str) -> bool:
    presented = browser_id(request, secure)
    return presented is not None and hmac.compare_digest(presented, expected)


def set_browser_cookie(response: HTMLResponse, value: str, secure: bool) -> None:
    response.set_cookie(
        cookie_name(secure), value, max_age=COOKIE_SECONDS, path="/", secure=secure, httponly=True, samesite="lax"
    )


def _csp_source(uri: str) -> str:
    """A CSP source matching `uri` (origin and path; a private-use scheme by its scheme)."""
    parts = urlsplit(uri)
    if parts.scheme in ("http", "https"):
        return f"{parts.scheme}://{parts.netloc}{parts.path or '/'}"
    return f"{parts.scheme}:"


def security_headers(form_targets: list[str]) -> dict[str, str]:
    sources = " ".join(dict.fromkeys(_csp_source(t) for t in form_targets))
    return {
        "content-security-policy": (
            f"default-src 'none'; style-src 'sha256-{_STYLE_HASH}'; form-action 'self' {sources}; "
            "frame-ancestors 'none'; base-uri 'none'"
        ),
        "x-frame-options": "DENY",
        "x-content-type-options": "nosniff",
        # not no-referrer: with it, Chromium sends `Origin: null` on the form's own POST, which the
        # gateway's Origin check must refuse; same-origin sends nothing to any other site
        "referrer-policy": "same-origin",
        "cache-control": "no-store",
        "pragma": "no-cache",
    }


def consent_page(
    *, client: Client, redirect_uri: str, server_label: str, resource: str, flow: str, form_targets: list[str]
) -> HTMLResponse:
    e = html.escape
    name = client.name or "An unnamed client"
    if client.kind == "metadata":
        identity = f"Its identity is vouched for by <strong>{e(client.vouching_host or '')}</strong>, which serves its metadata document."
        identity_class = ""
    else:
        identity = "It registered itself with this gateway: <strong>its name is its own claim and is not verified</strong>."
        identity_class = ' class="warn"'
    body = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Allow access to {e(server_label)}?</title><style>{_STYLE}</style></head>
<body><main>
<h1>Allow <span id="client-name">{e(name)}</span> to use <span id="server-name">{e(server_label)}</span>?</h1>
<p>This application asks to call the MCP server as you, after you sign in with your Microsoft Entra ID account.
Allow it only if you started this sign-in yourself.</p>
<dl>
<dt>Application</dt><dd>{e(name)}</dd>
<dt>Client id</dt><dd id="client-id">{e(client.client_id if client.kind == "metadata" else "dynamically registered")}</dd>
<dt>Identity</dt><dd{identity_class} id="client-identity">{identity}</dd>
<dt>You will be sent back to</dt><dd id="redirect-host">{e(redirect_host(redirect_uri))}</dd>
<dt>MCP server</dt><dd id="resource">{e(resource)}</dd>
</dl>
<form method="post" action="/oauth/consent">
<input type="hidden" name="flow" value="{e(flow)}">
<button type="submit" name="decision" value="approve" id="approve">Allow</button>
<button type="submit" name="decision" value="deny" id="deny">Deny</button>
</form>
</main></body></html>
"""
    return HTMLResponse(body, headers=security_headers(form_targets))

"""The gateway as an OAuth authorization server for MCP clients, in front of Entra ID.

    keys             every sign-in key, derived from MCP_GATEWAY_SIGNING_KEY
    pkce, entra      the OAuth client side: PKCE, Entra authorize URL, code redemption, refresh
    clients          client metadata documents and dynamic registrations -> Client
    client_metadata  the SSRF-guarded, cached fetch of client metadata documents
    consent          the consent page and the browser binding
    tokens           the gateway's access tokens (issue, verify) and what they carry
    service          the endpoints, step by step

Reads the URL helpers of inbound.metadata; inbound never imports this package (the app
hands it the token verifier).
"""

from .service import SignInService, issuer_url

__all__ = ["SignInService", "issuer_url"]

"""What inbound JWT validation costs per request, in-process: the gateway's own TokenValidator.

    .venv/bin/python bench/jwt_cost.py [--cold 1000] [--cached 20000]

`shared.inbound.tokens.TokenValidator.validate` for an Entra v2 user token (RS256, 2048-bit key)
from the emulated tenant (bench/azure_emulators.py), with its JWKS already fetched:

- cold:   a token it has not seen (header checks, key lookup, RS256 signature, claims; then
          remembered): what the first request with a new token pays;
- cached: the same token again (SHA-256 of the token, one dict lookup, expiry check): what every
          later request with that token pays until it expires.

Each call is timed on its own (perf_counter_ns around one `await`); tokens are minted before the
timing. run.py calls `measure` after the load runs, in the benchmark process (pinned to the load
generator's core; the servers idle meanwhile). Standalone, it starts its own emulators.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

AUDIENCE = "api://mcp-gateway"


def _stats(samples_ns: list[int]) -> dict[str, Any]:
    us = sorted(s / 1000 for s in samples_ns)
    return {
        "calls": len(us),
        "median_us": statistics.median(us),
        "mean_us": statistics.fmean(us),
        "p90_us": us[int(0.9 * (len(us) - 1))],
        "p99_us": us[int(0.99 * (len(us) - 1))],
    }


async def _measure(azure: Any, cold: int, cached: int) -> dict[str, Any]:
    import httpx
    import jwt

    from shared.config.inbound import EntraAuth, TokenRules
    from shared.inbound.jwks import JwksCache
    from shared.inbound.tokens import TokenValidator

    entra = azure.entra
    settings = EntraAuth(tenant_id=entra.tenant_id, rules=TokenRules(audiences=(AUDIENCE,)), authority_host=entra.authority_host)
    async with httpx.AsyncClient(verify=ssl.create_default_context(cafile=azure.pki.ca_path), trust_env=False) as client:
        validator = TokenValidator(settings, JwksCache(settings.openid_config_url, lambda: client))
        first = entra.mint({"aud": AUDIENCE}, lifetime=3600)
        caller = await validator.validate(first)  # fetches the JWKS: not timed
        if caller.tenant_id != entra.tenant_id:
            raise RuntimeError(f"unexpected caller {caller!r}")
        fresh = [entra.mint({"aud": AUDIENCE}, lifetime=3600) for _ in range(cold)]
        if len(set(fresh)) != cold:
            raise RuntimeError("minted tokens are not all distinct")
        for _ in range(100):  # warm the cached path's code before timing it
            await validator.validate(first)

        clock = time.perf_counter_ns
        cold_ns = []
        for token in fresh:
            started = clock()
            await validator.validate(token)
            cold_ns.append(clock() - started)
        cached_ns = []
        for _ in range(cached):
            started = clock()
            await validator.validate(first)
            cached_ns.append(clock() - started)
        # For reference: pyjwt's decode alone (signature + registered claims) on fresh tokens,
        # the part of a cold validation the gateway cannot avoid.
        key = (await validator.jwks.key(jwt.get_unverified_header(first)["kid"])).key.key
        issuers = [settings.v2_issuer, settings.issuer_v1]
        more = [entra.mint({"aud": AUDIENCE}, lifetime=3600) for _ in range(min(cold, 300))]
        decode_ns = []
        for token in more:
            started = clock()
            jwt.decode(token, key=key, algorithms=["RS256"], audience=[AUDIENCE], issuer=issuers, leeway=60,
                       options={"require": ["exp", "iss", "aud"]})
            decode_ns.append(clock() - started)
    return {
        "token": "Entra v2 user token, RS256 (2048-bit), JWKS cached",
        "cold": _stats(cold_ns),
        "cached": _stats(cached_ns),
        "pyjwt_decode_alone": _stats(decode_ns),
    }


def measure(azure: Any, *, cold: int = 1000, cached: int = 20000) -> dict[str, Any]:
    """Cold and cached TokenValidator.validate costs (us per call) against `azure` (AzureEmulators)."""
    return asyncio.run(_measure(azure, cold, cached))


def markdown(result: dict[str, Any]) -> list[str]:
    lines = [
        "### Inbound JWT validation per request (in-process `TokenValidator.validate`, " + result["token"] + ")",
        "",
        "| case | calls | median us | mean us | p90 us | p99 us |",
        "|---|---|---|---|---|---|",
    ]
    for case, label in (
        ("cold", "new token (signature check)"),
        ("cached", "repeated token (cached verdict)"),
        ("pyjwt_decode_alone", "reference: `jwt.decode` alone on a new token"),
    ):
        row = result[case]
        lines.append(
            f"| {label} | {row['calls']} | {row['median_us']:.1f} | {row['mean_us']:.1f} | {row['p90_us']:.1f} | {row['p99_us']:.1f} |"
        )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cold", type=int, default=1000, help="distinct fresh tokens to validate")
    parser.add_argument("--cached", type=int, default=20000, help="validations of one repeated token")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from azure_emulators import AzureEmulators

    with tempfile.TemporaryDirectory(prefix="mcp-jwt-cost-") as tmp, AzureEmulators(Path(tmp)) as azure:
        result = measure(azure, cold=args.cold, cached=args.cached)
    print("\n".join(markdown(result)))
    print(json.dumps(result, indent=2), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

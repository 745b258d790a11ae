"""Client ID Metadata Documents: fetch a client's JSON document from its `client_id` URL.

The URL comes from whoever starts a sign-in, so the fetch is built against server-side
request forgery:

- https only, a path required, no user info or fragment;
- the host name is resolved once, and every address it resolves to must be public
  (`ipaddress`'s `is_global`, and not multicast: no private, loopback, link-local,
  shared, reserved or unspecified address, IPv4-mapped IPv6 forms unwrapped). The
  connection goes to that vetted address, while TLS still checks the certificate
  against the name (SNI and `Host` keep the name), so a second DNS answer cannot
  redirect it (DNS rebinding);
- no redirects followed, at most 64 KiB, 5 seconds for the whole fetch;
- answers are cached as HTTP caching allows (`no-store` honoured, a day at most, five
  minutes when the answer says nothing); failures are not cached.

`allow_private` (the documented test switch) skips only the address check.
"""

from __future__ import annotations

import asyncio
import email.utils
import ipaddress
import json
import logging
import re
import socket
import time
from collections import OrderedDict
from typing import Awaitable, Callable
from urllib.parse import urlsplit

import httpx

from ..errors import OAuthError
from ..httpclient import tls_context
from .clients import Client, metadata_url_problem, parse_client_metadata

logger = logging.getLogger("shared.oauth")

MAX_DOCUMENT_BYTES = 64 * 1024
FETCH_SECONDS = 5.0
DEFAULT_CACHE_SECONDS = 300
MAX_CACHE_SECONDS = 86400
_CACHE_ENTRIES = 1024
_MAX_AGE = re.compile(r"(?:^|,)\s*(?:s-maxage|max-age)\s*=\s*\"?(\d+)\"?", re.I)

Resolver = Callable[[str, int], Awaitable[list[str]]]


async def resolve(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def _refused(why: str) -> OAuthError:
    return OAuthError("invalid_client", f"client metadata document: {why}")


def cache_seconds(headers: httpx.Headers, now: float) -> float:
    control = headers.get("cache-control", "")
    if re.search(r"(?:^|,)\s*(?:no-store|no-cache)\b", control, re.I):
        return 0
    match = _MAX_AGE.search(control)
    if match:
        return min(float(match.group(1)), MAX_CACHE_SECONDS)
    expires = headers.get("expires")
    if expires:
        try:
            when = email.utils.parsedate_to_datetime(expires).timestamp()
        except (TypeError, ValueError):
            return 0  # an invalid Expires means already expired (RFC 9111 5.3)
        return max(0.0, min(when - now, MAX_CACHE_SECONDS))
    return DEFAULT_CACHE_SECONDS


class ClientMetadataFetcher:
    def __init__(
        self,
        *,
        ca_bundle: str | None,
        allow_private: bool = False,
        resolver: Resolver = resolve,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.ca_bundle = ca_bundle
        self.allow_private = allow_private
        self.resolver = resolver
        self.clock = clock
        self._http: httpx.AsyncClient | None = None
        self._cache: OrderedDict[str, tuple[Client, float]] = OrderedDict()
        self.fetches = 0

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(
                verify=tls_context(self.ca_bundle),
                trust_env=False,
                follow_redirects=False,
                timeout=httpx.Timeout(FETCH_SECONDS),
                limits=httpx.Limits(max_connections=16, max_keepalive_connections=0),
            )
        return self._http

    async def get(self, client_id: str) -> Client:
        """The client its metadata document describes; OAuthError(invalid_client) when it cannot be used."""
        cached = self._cache.get(client_id)
        if cached is not None and cached[1] > self.clock():
            self._cache.move_to_end(client_id)
            return cached[0]
        problem = metadata_url_problem(client_id)
        if problem:
            raise _refused(problem)
        try:
            async with asyncio.timeout(FETCH_SECONDS):
                client, ttl = await self._fetch(client_id)
        except TimeoutError:
            raise _refused(f"no answer within {FETCH_SECONDS:g} seconds") from None
        if ttl > 0:
            self._cache[client_id] = (client, self.clock() + ttl)
            self._cache.move_to_end(client_id)
            while len(self._cache) > _CACHE_ENTRIES:
                self._cache.popitem(last=False)
        else:
            self._cache.pop(client_id, None)
        return client

    async def _address(self, host: str, port: int) -> str:
        try:
            literal = ipaddress.ip_address(host)
            addresses = [str(literal)]
        except ValueError:
            try:
                addresses = await self.resolver(host, port)
            except OSError:
                raise _refused("its host name does not resolve") from None
        if not addresses:
            raise _refused("its host name does not resolve")
        if not self.allow_private and not all(is_public(a) for a in addresses):
            # one bad answer is enough: a name that resolves inward is not a client's
            raise _refused("its host resolves to a private, loopback, link-local or reserved address")
        return addresses[0]

    async def _fetch(self, url: str) -> tuple[Client, float]:
        parts = urlsplit(url)
        host, port = parts.hostname or "", parts.port or 443
        address = await self._address(host, port)
        target = f"[{address}]" if ":" in address else address
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        self.fetches += 1
        request = self._client().build_request(
            "GET",
            f"https://{target}:{port}{path}",
            headers={"host": parts.netloc, "accept": "application/json", "accept-encoding": "identity"},
            extensions={"sni_hostname": host},
        )
        try:
            response = await self._client().send(request, stream=True)
        except httpx.HTTPError as error:
            raise _refused(f"cannot be fetched ({type(error).__name__})") from None
        try:
            if 300 <= response.status_code < 400:
                raise _refused("its URL redirects (redirects are not followed)")
            if response.status_code != 200:
                raise _refused(f"its URL answered {response.status_code}")
            declared = response.headers.get("content-length")
            if declared is not None and declared.isdigit() and int(declared) > MAX_DOCUMENT_BYTES:
                raise _refused(f"larger than {MAX_DOCUMENT_BYTES} bytes")
            body = bytearray()
            async for chunk in response.aiter_raw():
                body += chunk
                if len(body) > MAX_DOCUMENT_BYTES:
                    raise _refused(f"larger than {MAX_DOCUMENT_BYTES} bytes")
        except httpx.HTTPError as error:
            raise _refused(f"cannot be read ({type(error).__name__})") from None
        finally:
            await response.aclose()
        try:
            document = json.loads(bytes(body))
        except (ValueError, UnicodeDecodeError):
            raise _refused("not JSON") from None
        if not isinstance(document, dict) or document.get("client_id") != url:
            raise _refused("its client_id is not the URL it was fetched from")
        try:
            client = parse_client_metadata(document, client_id=url, kind="metadata")
        except OAuthError as error:
            raise _refused(error.message) from None
        return client, cache_seconds(response.headers, self.clock())

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

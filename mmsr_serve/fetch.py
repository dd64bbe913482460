"""The one way out to the network for URLs that users, models or web pages chose.

A URL written by someone else must not make the server fetch from itself or its neighbours
(server-side request forgery: cloud metadata at 169.254.169.254, admin ports on loopback, the
private network). :class:`SafeFetcher`, for every hop including each redirect:

- accepts ``http`` and ``https`` URLs without credentials only;
- resolves the host and refuses it if ANY address is not public: loopback, private, link-local,
  shared (100.64/10), multicast, reserved, unspecified, site-local, or an IPv6 address embedding
  such an IPv4 one (IPv4-mapped ``::ffff:a.b.c.d``, 6to4, NAT64);
- connects only to addresses it checked: the connection's resolver answers with the addresses
  this hop's check accepted (no second lookup that a rebinding DNS server could answer
  differently); the ``Host`` header and the TLS server name stay the hostname, so certificates
  are still verified. With ``keepalive``, connections are kept for the next fetch from the same
  host name and port only (aiohttp pools them by scheme, host name and port, so a TLS connection
  verified for one name never carries another's requests), at most 4 per host name for at most
  64 host names, idle for up to 15 s (a fetch beyond these goes on a connection closed after
  it); the address check still runs for every fetch, kept connection or not;
- follows at most ``max_redirects`` redirects itself; streams the body and stops past
  ``max_bytes`` (decoded bytes, so compression bombs stop too); gives up after ``timeout_s`` for
  the whole fetch, redirects included. HTTP proxies from the environment are ignored, and no
  cookie is kept.

``allow`` lists exceptions for local development and tests: hostnames (any address they resolve
to is accepted) or networks such as ``127.0.0.1`` or ``10.0.0.0/8``, each on any port or only on
the one it names (``127.0.0.1:8080``, ``[::1]:8080``, ``pictures.test:8443``). Nothing non-public is
reachable by default. Errors are :class:`FetchError` (a :class:`SearchError`, so a failed page
read becomes a tool result), or :class:`ImageError` from :meth:`SafeFetcher.fetch_image`.

The wire is aiohttp, as for the model backend: about a third of httpx's CPU per fetch here
(benchmarks/results/gateway_perf.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import ssl
import zlib
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from mmsr_serve._aio import LoopSession
from mmsr_serve._timeouts import timeout
from mmsr_serve._tls import client_ssl_context
from mmsr_serve.errors import FetchError, ImageError

__all__ = ["FetchError", "Fetched", "SafeFetcher", "is_public_address"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
DEFAULT_MAX_BYTES = 20 * 1024 * 1024
DEFAULT_TIMEOUT_S = 20.0
USER_AGENT = "mmsr-fetch/0.1"
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_DECODABLE = frozenset({"gzip", "x-gzip", "deflate"})
_CONNECTIONS = 256  # in use at once per event loop; more wait for one to free
# Response headers: a line or field up to 16 KiB (pages' CSP and cookie headers run long), at most
# 64 of them: about 1 MiB at worst, as aiohttp's defaults allow (httpx refused beyond 100 KiB).
_HEADER_BYTES = 16384
_HEADERS = 64
# keepalive: connections kept for at most _MAX_HOSTS host names, _KEPT_PER_HOST each (a fetch beyond
# goes on a connection of its own, closed after it), idle for at most _KEEPALIVE_S.
_MAX_HOSTS = 64
_KEPT_PER_HOST = 4
_KEEPALIVE_S = 15.0

# The addresses this hop's check accepted, for the connection's resolver: (host, port, addresses).
_CHECKED: ContextVar[tuple[str, int, tuple[str, ...]] | None] = ContextVar("mmsr_fetch_checked", default=None)


@dataclass(frozen=True)
class Fetched:
    url: str  # after redirects
    status: int
    content_type: str  # media type only, lower-case, without parameters
    data: bytes = field(repr=False)


def _split_port(entry: str) -> tuple[str, int | None]:
    """An allow-list entry as (host or network, port or None for any): ``10.0.0.0/8``,
    ``127.0.0.1:8080``, ``[::1]:8080``, ``pictures.test:8443``, ``::1``."""
    entry = entry.strip()
    if entry.startswith("["):
        inside, _, rest = entry[1:].partition("]")
        return inside, int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else None
    head, sep, tail = entry.rpartition(":")
    if sep and ":" not in head and tail.isdigit():  # one colon: host or IPv4 with a port
        return head, int(tail)
    return entry, None


def is_public_address(addr: IPAddress) -> bool:
    """Whether ``addr`` is a globally routable unicast address (see the module docstring)."""
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return is_public_address(addr.ipv4_mapped)
        if addr in _NAT64:  # a DNS64 resolver's stand-in for an IPv4 address
            return is_public_address(ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF))
        if addr.sixtofour is not None and not is_public_address(addr.sixtofour):
            return False
        if addr.is_site_local:
            return False
    flags = (addr.is_private, addr.is_loopback, addr.is_link_local, addr.is_multicast, addr.is_reserved)
    return addr.is_global and not (any(flags) or addr.is_unspecified)


def _accepts(content_type: str, accept: Sequence[str]) -> bool:
    for pattern in (p.lower() for p in accept):
        if pattern in ("*/*", content_type) or (
            pattern.endswith("/*") and content_type.startswith(pattern[:-1])
        ):
            return True
    return False


class _CheckedResolver(AbstractResolver):
    """The connector's resolver: the addresses the current hop's check accepted for this host and
    port; any other host is resolved and checked here (no connection goes to an unchecked one)."""

    def __init__(self, fetcher: SafeFetcher) -> None:
        self._fetcher = fetcher

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        checked = _CHECKED.get()
        if checked is not None and checked[:2] == (host, port):
            addresses = checked[2]
        else:
            addresses = tuple(await self._fetcher._checked_addresses(host, port, host))
        flags = socket.AI_NUMERICHOST | socket.AI_NUMERICSERV
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=0,
                flags=flags,
            )
            for address in addresses
        ]

    async def close(self) -> None:
        pass


class SafeFetcher:
    """Fetch http(s) URLs without reaching private addresses; see the module docstring."""

    def __init__(
        self,
        *,
        allow: Sequence[str] = (),
        max_bytes: int = DEFAULT_MAX_BYTES,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        max_redirects: int = 5,
        keepalive: bool = False,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        """``ssl_context`` verifies servers' certificates (default: certifi's bundle); ``keepalive``
        keeps connections for later fetches until :meth:`aclose` (without it, none is kept)."""
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s
        self.max_redirects = max_redirects
        self._keepalive = keepalive
        self._ssl = ssl_context
        self._kept = LoopSession(lambda: self._new_session(keepalive=True))
        self._unkept = LoopSession(lambda: self._new_session(keepalive=False))
        self._hosts: OrderedDict[tuple[str, str, int], float] = OrderedDict()  # kept: last use
        self._in_flight: Counter[tuple[str, str, int]] = Counter()  # kept fetches under way
        self._allowed_hosts: dict[str, set[int | None]] = {}
        self._allowed_nets: list[tuple[IPNetwork, int | None]] = []
        for entry in allow:
            where, port = _split_port(entry)
            try:
                self._allowed_nets.append((ipaddress.ip_network(where, strict=False), port))
            except ValueError:
                self._allowed_hosts.setdefault(where.casefold().rstrip("."), set()).add(port)

    async def fetch_image(self, url: str) -> bytes:
        """The bytes of an image URL; the response must say ``image/*``. Raises :class:`ImageError`."""
        try:
            return (await self.fetch(url, accept=("image/*",))).data
        except FetchError as exc:
            raise ImageError(f"cannot fetch the image: {exc}") from exc

    async def fetch(
        self, url: str, *, max_bytes: int | None = None, accept: tuple[str, ...] | None = None
    ) -> Fetched:
        """GET ``url``. ``accept`` lists media types (``text/html``, ``image/*``) the response must
        have; a response outside 2xx, or larger than ``max_bytes``, raises :class:`FetchError`."""
        limit = self.max_bytes if max_bytes is None else max_bytes
        try:
            async with timeout(self.timeout_s), self._fetch_session() as own:
                return await self._fetch(own, url, limit, accept)
        except asyncio.TimeoutError:
            raise FetchError(f"fetching {url} took longer than {self.timeout_s:g} s", url=url) from None

    async def _fetch(
        self, own: aiohttp.ClientSession | None, url: str, limit: int, accept: tuple[str, ...] | None
    ) -> Fetched:
        headers = {
            "User-Agent": USER_AGENT,
            "Accept": ", ".join(accept) if accept else "*/*",
            "Accept-Encoding": "gzip, deflate",
        }
        current = self._checked_url(url)
        for _ in range(self.max_redirects + 1):
            async with self._open(own, current, headers) as response:
                location = response.headers.get("location")
                if response.status in _REDIRECTS and location:
                    try:
                        target = str(current.join(URL(location)))
                    except ValueError as exc:
                        raise FetchError(
                            f"{current} redirected to an invalid URL: {exc}", url=str(current)
                        ) from None
                    current = self._checked_url(target)
                    continue
                if not 200 <= response.status < 300:
                    raise FetchError(
                        f"{current} answered HTTP {response.status}", url=str(current), status=response.status
                    )
                content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
                if accept and not _accepts(content_type, accept):
                    raise FetchError(
                        f"{current} is {content_type or 'of unknown type'}, expected {', '.join(accept)}",
                        url=str(current),
                    )
                data = await self._read(response, limit, current)
                return Fetched(str(current), response.status, content_type, data)
        raise FetchError(f"{url} redirected more than {self.max_redirects} times", url=url)

    @asynccontextmanager
    async def _fetch_session(self) -> AsyncIterator[aiohttp.ClientSession | None]:
        """Without ``keepalive``, this fetch's own session (it keeps no connection), closed after
        the fetch; with it None: each hop takes one of the fetcher's (see :meth:`_hop_session`)."""
        if self._keepalive:
            yield None
            return
        session = self._new_session(keepalive=False)
        try:
            yield session
        finally:
            await session.close()

    @asynccontextmanager
    async def _hop_session(self, key: tuple[str, str, int]) -> AsyncIterator[aiohttp.ClientSession]:
        """The session that keeps the connection of a hop to ``key`` (scheme, host, port), within
        the bounds on kept connections (see ``_MAX_HOSTS``); else the one that closes it after."""
        now = asyncio.get_running_loop().time()
        while self._hosts:  # forget host names whose kept connections went idle for too long
            oldest, used = next(iter(self._hosts.items()))
            if used > now - _KEEPALIVE_S or self._in_flight[oldest]:
                break
            del self._hosts[oldest]
            self._in_flight.pop(oldest, None)
        keep = self._in_flight[key] < _KEPT_PER_HOST and (key in self._hosts or len(self._hosts) < _MAX_HOSTS)
        if not keep:
            yield await self._unkept.get()
            return
        self._in_flight[key] += 1
        self._hosts[key] = now
        self._hosts.move_to_end(key)
        try:
            yield await self._kept.get()
        finally:
            self._in_flight[key] -= 1
            self._hosts[key] = asyncio.get_running_loop().time()
            self._hosts.move_to_end(key)

    def _new_session(self, *, keepalive: bool) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            resolver=_CheckedResolver(self),
            use_dns_cache=False,  # every new connection takes the addresses its fetch just checked
            ssl=self._ssl or client_ssl_context(trust_env=False),
            limit=_CONNECTIONS,
            limit_per_host=0,
            force_close=not keepalive,
            keepalive_timeout=_KEEPALIVE_S if keepalive else None,
        )
        return aiohttp.ClientSession(
            connector=connector,
            trust_env=False,
            auto_decompress=False,  # decoded here, with a bound (see _read)
            cookie_jar=aiohttp.DummyCookieJar(),
            timeout=aiohttp.ClientTimeout(total=None),  # the fetch's own deadline covers every hop
            max_line_size=_HEADER_BYTES,
            max_field_size=_HEADER_BYTES,
            max_headers=_HEADERS,
        )

    async def aclose(self) -> None:
        """Close the kept connections (``keepalive``; those of an event loop that ended are closed)."""
        await self._kept.aclose()
        await self._unkept.aclose()

    def _checked_url(self, url: str) -> URL:
        try:
            parsed = URL(url)
            _ = parsed.port, parsed.host  # yarl checks the port's range and the IDNA host when read
        except (ValueError, TypeError) as exc:
            raise FetchError(f"invalid URL {url!r}: {exc}", url=url) from None
        if parsed.scheme not in ("http", "https"):
            raise FetchError(
                f"only http and https URLs can be fetched, not {parsed.scheme or url!r}", url=url
            )
        if not parsed.raw_host:
            raise FetchError(f"URL without a host: {url}", url=url)
        if parsed.user is not None or parsed.password is not None:
            raise FetchError("URLs with credentials are refused", url=url)
        return parsed

    def _allowed(self, addr: IPAddress, port: int) -> bool:
        candidates = [addr]
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            candidates.append(addr.ipv4_mapped)
        in_allow_list = any(
            a in net and allowed_port in (None, port)
            for a in candidates
            for net, allowed_port in self._allowed_nets
            if a.version == net.version
        )
        return in_allow_list or is_public_address(addr)

    async def _checked_addresses(self, host: str, port: int, shown: str) -> list[str]:
        """The addresses of ``host`` if every one may be fetched from on ``port``; ``shown`` names
        the host in errors."""
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise FetchError(f"cannot resolve {shown}") from exc
        addresses = list(dict.fromkeys(str(info[4][0]).split("%")[0] for info in infos))
        ports = self._allowed_hosts.get(host.casefold().rstrip("."), set())
        if None in ports or port in ports:
            return addresses
        if not addresses or not all(self._allowed(ipaddress.ip_address(a), port) for a in addresses):
            raise FetchError(
                f"refusing to fetch from {shown}: it resolves to a non-public address"
                " (private, loopback, link-local or reserved)"
            )
        return addresses

    @asynccontextmanager
    async def _open(
        self, own: aiohttp.ClientSession | None, url: URL, headers: dict[str, str]
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """Check the URL's host, then send the request (to the checked addresses, in turn) on
        ``own`` or, with ``keepalive``, on the session :meth:`_hop_session` picks."""
        host = url.raw_host or ""
        port = url.port or (443 if url.scheme == "https" else 80)
        try:
            addresses = await self._checked_addresses(host, port, url.host or host)
        except FetchError as exc:
            raise FetchError(str(exc), url=str(url)) from exc.__cause__
        async with contextlib.AsyncExitStack() as hop:
            if (client := own) is None:
                client = await hop.enter_async_context(self._hop_session((url.scheme, host, port)))
            token = _CHECKED.set((host, port, tuple(addresses)))
            try:
                response = await client.get(url, headers=headers, allow_redirects=False)
            except FetchError as exc:  # the connector's resolver refused a host it had to look up again
                raise FetchError(str(exc), url=str(url)) from exc.__cause__
            except aiohttp.ClientConnectorError as exc:
                reason = exc.os_error or exc
                raise FetchError(f"cannot connect to {url.host}: {reason}", url=str(url)) from exc
            except (aiohttp.ClientError, ValueError) as exc:
                raise FetchError(f"cannot fetch {url}: {exc}", url=str(url)) from exc
            finally:
                _CHECKED.reset(token)
            try:
                yield response
            finally:
                response.release()

    async def _read(self, response: aiohttp.ClientResponse, limit: int, url: URL) -> bytes:
        """The body, at most ``limit`` bytes *after* decompression.

        A client would decode every coding the server names, fully, before we could count: a few
        kB sent as ``gzip, gzip`` become gigabytes. So the raw bytes are read and a single gzip or
        deflate coding is undone here with an output bound; anything else is refused.
        """
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise FetchError(f"{url} is {declared} bytes, more than the {limit} allowed", url=str(url))
        codings = [c.strip().lower() for c in response.headers.get("content-encoding", "").split(",")]
        codings = [c for c in codings if c and c != "identity"]
        if len(codings) > 1 or (codings and codings[0] not in _DECODABLE):
            names = ", ".join(codings)
            raise FetchError(f"{url} uses an unsupported content encoding: {names}", url=str(url))
        inflate = zlib.decompressobj(32 + zlib.MAX_WBITS) if codings else None  # gzip or zlib header
        chunks: list[bytes] = []
        size = 0
        try:
            async for raw in response.content.iter_any():
                chunk = inflate.decompress(raw, limit - size + 1) if inflate else raw
                size += len(chunk)
                if size > limit:
                    raise FetchError(f"{url} is larger than the {limit} bytes allowed", url=str(url))
                chunks.append(chunk)
        except aiohttp.ClientError as exc:
            raise FetchError(f"cannot read {url}: {exc}", url=str(url)) from exc
        except zlib.error as exc:
            raise FetchError(f"{url} sent a corrupt {codings[0]} body: {exc}", url=str(url)) from exc
        return b"".join(chunks)

"""The one way out to the network for URLs that users, models or web pages chose.

A URL written by someone else must not make the server fetch from itself or its neighbours
(server-side request forgery: cloud metadata at 169.254.169.254, admin ports on loopback, the
private network). :class:`SafeFetcher`, for every hop including each redirect:

- accepts ``http`` and ``https`` URLs without credentials only;
- resolves the host and refuses it if ANY address is not public: loopback, private, link-local,
  shared (100.64/10), multicast, reserved, unspecified, site-local, or an IPv6 address embedding
  such an IPv4 one (IPv4-mapped ``::ffff:a.b.c.d``, 6to4, NAT64);
- connects to an address it checked (the URL's host is swapped for the IP; ``Host`` header and
  TLS server name stay the hostname, so certificates are still verified), which defeats DNS
  rebinding between the check and the connection. With ``keepalive``, connections are kept for
  the next fetch from the same host name only (one connection pool per scheme, host name and
  port, so a TLS connection verified for one name never carries another's requests); the
  address check still runs for every fetch;
- follows at most ``max_redirects`` redirects itself; streams the body and stops past
  ``max_bytes`` (decoded bytes, so compression bombs stop too); gives up after ``timeout_s`` for
  the whole fetch, redirects included. HTTP proxies from the environment are ignored.

``allow`` lists exceptions for local development and tests: hostnames (any address they resolve
to is accepted) or networks such as ``127.0.0.1`` or ``10.0.0.0/8``, each on any port or only on
the one it names (``127.0.0.1:8080``, ``[::1]:8080``, ``pictures.test:8443``). Nothing non-public is
reachable by default. Errors are :class:`FetchError` (a :class:`SearchError`, so a failed page
read becomes a tool result), or :class:`ImageError` from :meth:`SafeFetcher.fetch_image`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import zlib
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import httpx

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
_MAX_HOSTS = 64  # host names whose connections are kept (keepalive)
_KEPT_PER_HOST = 4


async def _replay(data: bytes) -> AsyncIterator[bytes]:
    yield data


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


class SafeFetcher:
    """Fetch http(s) URLs without reaching private addresses; see the module docstring."""

    def __init__(
        self,
        *,
        allow: Sequence[str] = (),
        max_bytes: int = DEFAULT_MAX_BYTES,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        max_redirects: int = 5,
        transport: httpx.AsyncBaseTransport | None = None,
        keepalive: bool = False,
    ) -> None:
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s
        self.max_redirects = max_redirects
        self._transport = transport
        self._keepalive = keepalive and transport is None
        self._pools: OrderedDict[tuple[str, str, int | None], httpx.AsyncClient] = OrderedDict()
        self._busy: Counter[tuple[str, str, int | None]] = Counter()
        self._closing: set[asyncio.Task[None]] = set()
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
            return await asyncio.wait_for(self._fetch(url, limit, accept), self.timeout_s)
        except asyncio.TimeoutError:
            raise FetchError(f"fetching {url} took longer than {self.timeout_s:g} s", url=url) from None

    async def _fetch(self, url: str, limit: int, accept: tuple[str, ...] | None) -> Fetched:
        headers = {"User-Agent": USER_AGENT, "Accept": ", ".join(accept) if accept else "*/*"}
        current = self._checked_url(url)
        for _ in range(self.max_redirects + 1):
            async with self._client(current) as client, self._open(client, current, headers) as response:
                location = response.headers.get("location")
                if response.status_code in _REDIRECTS and location:
                    current = self._checked_url(str(current.join(location)))
                    continue
                if not 200 <= response.status_code < 300:
                    raise FetchError(
                        f"{current} answered HTTP {response.status_code}",
                        url=str(current),
                        status=response.status_code,
                    )
                content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
                if accept and not _accepts(content_type, accept):
                    raise FetchError(
                        f"{current} is {content_type or 'of unknown type'}, expected {', '.join(accept)}",
                        url=str(current),
                    )
                data = await self._read(response, limit, current)
                return Fetched(str(current), response.status_code, content_type, data)
        raise FetchError(f"{url} redirected more than {self.max_redirects} times", url=url)

    @asynccontextmanager
    async def _client(self, url: httpx.URL) -> AsyncIterator[httpx.AsyncClient]:
        """The client for a request to ``url``: a new one that keeps no connection, or with
        ``keepalive`` the pooled one of the URL's scheme, host name and port."""
        if not self._keepalive:
            client = self._new_client(keepalive=False)
            try:
                yield client
            finally:
                if self._transport is None:  # a transport passed in belongs to the caller
                    await client.aclose()
            return
        key = (url.scheme, url.host, url.port)
        client = self._pools.pop(key) if key in self._pools else self._new_client(keepalive=True)
        self._pools[key] = client  # the most recently used last
        self._busy[key] += 1
        try:
            yield client
        finally:
            self._busy[key] -= 1
            self._evict()

    def _new_client(self, *, keepalive: bool) -> httpx.AsyncClient:
        limits = httpx.Limits(max_keepalive_connections=_KEPT_PER_HOST if keepalive else 0)
        return httpx.AsyncClient(
            transport=self._transport,
            timeout=self.timeout_s,
            limits=limits,
            trust_env=False,
            verify=client_ssl_context(trust_env=False),
        )

    def _evict(self) -> None:
        """Close the least recently used idle pools beyond ``_MAX_HOSTS``."""
        for key in [k for k in self._pools if not self._busy[k]][: max(0, len(self._pools) - _MAX_HOSTS)]:
            task = asyncio.get_running_loop().create_task(self._pools.pop(key).aclose())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def aclose(self) -> None:
        """Close the kept connections (``keepalive``)."""
        pools, self._pools = list(self._pools.values()), OrderedDict()
        await asyncio.gather(*(client.aclose() for client in pools), *self._closing)

    def _checked_url(self, url: str) -> httpx.URL:
        try:
            parsed = httpx.URL(url)
        except (httpx.InvalidURL, TypeError) as exc:
            raise FetchError(f"invalid URL {url!r}: {exc}", url=url) from None
        if parsed.scheme not in ("http", "https"):
            raise FetchError(
                f"only http and https URLs can be fetched, not {parsed.scheme or url!r}", url=url
            )
        if not parsed.raw_host:
            raise FetchError(f"URL without a host: {url}", url=url)
        if parsed.userinfo:
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

    async def _addresses(self, url: httpx.URL) -> list[str]:
        """The checked addresses to connect to for ``url``'s host."""
        host = url.raw_host.decode("ascii")
        port = url.port or (443 if url.scheme == "https" else 80)
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise FetchError(f"cannot resolve {url.host}", url=str(url)) from exc
        addresses = list(dict.fromkeys(str(info[4][0]).split("%")[0] for info in infos))
        ports = self._allowed_hosts.get(host.casefold().rstrip("."), set())
        if None in ports or port in ports:
            return addresses
        if not addresses or not all(self._allowed(ipaddress.ip_address(a), port) for a in addresses):
            raise FetchError(
                f"refusing to fetch from {url.host}: it resolves to a non-public address"
                " (private, loopback, link-local or reserved)",
                url=str(url),
            )
        return addresses

    @asynccontextmanager
    async def _open(
        self, client: httpx.AsyncClient, url: httpx.URL, headers: dict[str, str]
    ) -> AsyncIterator[httpx.Response]:
        """Send the request to the first checked address that accepts a connection."""
        hop_headers = {"Accept-Encoding": "gzip, deflate", **headers, "Host": url.netloc.decode("ascii")}
        extensions = {"sni_hostname": url.raw_host.decode("ascii")} if url.scheme == "https" else {}
        failure: Exception | None = None
        for address in await self._addresses(url):
            request = client.build_request("GET", url.copy_with(host=address), headers=hop_headers)
            request.extensions.update(extensions)
            try:
                response = await client.send(request, stream=True)
            except httpx.ConnectError as exc:
                failure = exc
                continue
            except httpx.HTTPError as exc:
                raise FetchError(f"cannot fetch {url}: {exc}", url=str(url)) from exc
            try:
                yield response
            finally:
                await response.aclose()
            return
        raise FetchError(f"cannot connect to {url.host}: {failure}", url=str(url))

    async def _read(self, response: httpx.Response, limit: int, url: httpx.URL) -> bytes:
        """The body, at most ``limit`` bytes *after* decompression.

        httpx would decode every coding the server names, fully, before we could count: a few kB
        sent as ``gzip, gzip`` become gigabytes. So the raw bytes are read and a single gzip or
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
        if response.is_stream_consumed:  # a transport that read the body itself (tests' MockTransport)
            inflate, body = None, _replay(response.content)
        else:
            body = response.aiter_raw()
        chunks: list[bytes] = []
        size = 0
        try:
            async for raw in body:
                chunk = inflate.decompress(raw, limit - size + 1) if inflate else raw
                size += len(chunk)
                if size > limit:
                    raise FetchError(f"{url} is larger than the {limit} bytes allowed", url=str(url))
                chunks.append(chunk)
        except httpx.HTTPError as exc:
            raise FetchError(f"cannot read {url}: {exc}", url=str(url)) from exc
        except zlib.error as exc:
            raise FetchError(f"{url} sent a corrupt {codings[0]} body: {exc}", url=str(url)) from exc
        return b"".join(chunks)

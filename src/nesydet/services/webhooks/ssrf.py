"""The SSRF guard of webhooks: which URLs and addresses a delivery may reach.

A webhook URL must be http(s), carry no credentials, and every address its host resolves to
must be public: not loopback, private, link-local, shared (CGNAT), reserved, multicast or a
cloud metadata address, IPv4 inside IPv6 (``::ffff:127.0.0.1``, 6to4, Teredo) included. It is
checked when the webhook is made (a refusal is 400 ``WEBHOOK_URL_REFUSED``) and again at every
attempt, which then connects to the very address it checked (no second lookup a DNS rebinding
could answer differently) and never follows a redirect. ``NESYDET_WEBHOOK_ALLOWED_HOSTS``
names the exceptions: host names (``hooks.internal``, ``*.corp.example``), addresses or
networks (``10.1.2.3``, ``10.0.0.0/8``).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Instance metadata services: AWS/GCP/Azure/OpenStack, AWS ECS and IPv6, Alibaba, Oracle.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",
        "169.254.170.2",
        "fd00:ec2::254",
        "100.100.100.200",
        "192.0.0.192",
    )
)
METADATA_HOSTS = frozenset({"metadata", "metadata.google.internal", "metadata.goog"})


class RefusedUrl(ValueError):
    """A URL (or the address it resolved to) a webhook must not be sent to; says why."""


@dataclass(frozen=True)
class AllowList:
    """The exceptions of ``NESYDET_WEBHOOK_ALLOWED_HOSTS``."""

    hosts: frozenset[str] = frozenset()
    suffixes: tuple[str, ...] = ()
    networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def parse(cls, entries: Iterable[str]) -> AllowList:
        """Return the allow list of these entries (host names, ``*.suffix``, networks)."""
        hosts: set[str] = set()
        suffixes: list[str] = []
        networks: list[IPNetwork] = []
        for raw in entries:
            entry = raw.strip().lower().strip("[]")
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
                continue
            except ValueError:
                pass
            if entry.startswith("*."):
                suffixes.append(entry[1:])
            else:
                hosts.add(entry.rstrip("."))
        return cls(frozenset(hosts), tuple(suffixes), tuple(networks))

    def allows_host(self, host: str) -> bool:
        """Return whether the host name itself is allowed (any address it resolves to)."""
        host = host.lower().rstrip(".")
        return host in self.hosts or any(host.endswith(s) for s in self.suffixes)

    def allows_address(self, address: IPAddress) -> bool:
        """Return whether the address lies in an allowed network."""
        return any(address in network for network in self.networks)


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address.sixtofour is not None:
            return address.sixtofour
        if address.teredo is not None:
            return address.teredo[1]
        # IPv4-compatible (::a.b.c.d, deprecated but still routed by some stacks).
        if int(address) >> 32 == 0 and int(address) > 1:
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def address_problem(address: IPAddress) -> str | None:
    """Return why a webhook must not reach this address, or None when it is public."""
    inner = _embedded_ipv4(address)
    if inner is not None:
        problem = address_problem(inner)
        return f"{problem} (inside {address})" if problem else None
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_unspecified:
        return "an unspecified address"
    if address.is_multicast:
        return "a multicast address"
    if address.is_private:
        return "a private address"
    if not address.is_global:
        return "not a public address"
    return None


def parse_url(url: str) -> SplitResult:
    """Return the parts of an http(s) webhook URL; RefusedUrl when it is not one."""
    if any(ch.isspace() or ord(ch) < 0x20 for ch in url):
        raise RefusedUrl("the URL contains spaces or control characters")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise RefusedUrl("only http:// and https:// URLs are allowed")
    if not parts.hostname:
        raise RefusedUrl("the URL names no host")
    if parts.username is not None or parts.password is not None:
        raise RefusedUrl("credentials in the URL are not allowed (they would be listed)")
    try:
        parts.port  # noqa: B018  # raises on a port out of range or not a number
    except ValueError as exc:
        raise RefusedUrl("the URL's port is not valid") from exc
    return parts


def default_port(parts: SplitResult) -> int:
    """Return the URL's port, or its scheme's."""
    return parts.port or (443 if parts.scheme == "https" else 80)


def resolve(host: str, port: int) -> list[IPAddress]:
    """Return every address ``host`` resolves to (in the resolver's order); RefusedUrl when
    it resolves to none."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise RefusedUrl(f"the host {host!r} does not resolve") from exc
    seen: list[IPAddress] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in seen:
            seen.append(address)
    if not seen:
        raise RefusedUrl(f"the host {host!r} does not resolve")
    return seen


def permitted_addresses(url: str, allow: AllowList) -> list[IPAddress]:
    """Return the addresses a request to ``url`` may go to, the first to try first.

    Raises:
        RefusedUrl: the URL is not one a webhook may use, or one of its addresses is
            refused (all must pass: a mix of public and private ones is refused too).
    """
    parts = parse_url(url)
    host = parts.hostname or ""
    if host in METADATA_HOSTS and not allow.allows_host(host):
        raise RefusedUrl(f"{host} is a cloud metadata host")
    addresses = resolve(host, default_port(parts))
    if allow.allows_host(host):
        return addresses
    for address in addresses:
        if allow.allows_address(address):
            continue
        problem = address_problem(address)
        if problem is not None:
            shown = host if host == str(address) else f"{host} ({address})"
            raise RefusedUrl(f"{shown} is {problem}")
    return addresses

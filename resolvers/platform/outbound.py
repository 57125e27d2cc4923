"""Where spendplane may POST: the alert webhook URLs (ALERT_WEBHOOK_URL, an SLA definition's alert_webhook_url).

One rule, applied twice. When a URL is given (a setting, an API call): an http(s) URL with a host, no userinfo
(`user:pw@`), no whitespace or control characters; a host that is plainly private (an IP literal in a private,
loopback, link-local, shared, reserved or multicast range, in any spelling the resolver accepts, or `localhost`) is
refused unless SPENDPLANE_ALLOW_PRIVATE_WEBHOOKS is on. When it is sent (the delivery worker): the host name is
resolved, every address it resolves to is checked the same way, and the request goes to the checked address (the
name kept for the Host header and TLS), so DNS cannot answer one address to the check and another to the
connection.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit, urlunsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: What a good value looks like, for error messages and the settings table.
EXAMPLE = "an http(s) URL such as https://hooks.example.com/spendplane"
PRIVATE_HINT = "set SPENDPLANE_ALLOW_PRIVATE_WEBHOOKS=true to allow private, loopback and link-local destinations"


class OutboundRefused(ValueError):
    """The URL may not be posted to; the message says why (never echoes a password)."""


@dataclass(frozen=True)
class Pinned:
    """A URL whose host was resolved and checked: post to `url` (the address), with `host` as Host header and
    `sni` (the name) for TLS, or None when the URL named an address."""

    url: str
    host: str
    sni: str | None


def check_url(raw: str, *, allow_private: bool) -> str:
    """The URL as given, when it may be posted to; OutboundRefused otherwise."""
    if any(c.isspace() or not c.isprintable() for c in raw):
        raise OutboundRefused("may not contain whitespace or control characters")
    try:
        parts = urlsplit(raw)
        host = parts.hostname
        parts.port  # noqa: B018 - a port out of range or not a number raises here
    except ValueError:
        raise OutboundRefused(f"must be {EXAMPLE}") from None
    if parts.scheme not in {"http", "https"} or not host:
        raise OutboundRefused(f"must be {EXAMPLE}")
    if "@" in parts.netloc:
        raise OutboundRefused("may not carry a user name or password (user:password@host); put a secret in the path")
    if literal_address(host) is None:
        try:  # what the resolver does with a name first: an empty label, or one past 63 characters, cannot be sent
            host.encode("idna")
        except UnicodeError:
            raise OutboundRefused(f"has a host name no resolver can look up ({host[:80]!r}): {EXAMPLE}") from None
    if not allow_private:
        address = literal_address(host)
        if address is not None and not public(address):
            raise OutboundRefused(f"points at a private, loopback or link-local address ({address}); {PRIVATE_HINT}")
        if address is None and _local_name(host):
            raise OutboundRefused(f"points at this machine ({host}); {PRIVATE_HINT}")
    return raw


def literal_address(host: str) -> IPAddress | None:
    """The address a host names by itself, in any spelling the system resolver takes as an address (`127.1`,
    `2130706433`, `0x7f.1`), or None for a name."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


def public(address: IPAddress) -> bool:
    """Globally routable: not private, loopback, link-local (cloud metadata at 169.254.169.254), shared (CGNAT),
    reserved, unspecified or multicast; an IPv4-mapped or 6to4/Teredo IPv6 address is judged by its IPv4."""
    if isinstance(address, ipaddress.IPv6Address):
        inner = address.ipv4_mapped or address.sixtofour or (address.teredo[1] if address.teredo else None)
        if inner is not None:
            return public(inner)
    return address.is_global and not address.is_multicast


def _local_name(host: str) -> bool:
    name = host.rstrip(".").lower()
    return name == "localhost" or name.endswith(".localhost")


async def pin(url: str, *, allow_private: bool) -> Pinned:
    """Check the URL, resolve its host and check every address; the URL rewritten to the first address.

    Raises OutboundRefused (the URL or an address is not allowed) or OSError (the name does not resolve)."""
    check_url(url, allow_private=allow_private)
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    netloc_host = parts.netloc.rsplit("@", 1)[-1]
    address = literal_address(host)
    if address is not None:
        found = [address]
    else:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        found = [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]
        if not found:
            raise OSError(f"{host} resolves to no address")
    if not allow_private:
        bad = [a for a in found if not public(a)]
        if bad:
            raise OutboundRefused(
                f"{host} resolves to a private, loopback or link-local address ({bad[0]}); {PRIVATE_HINT}"
            )
    chosen = found[0]
    shown = f"[{chosen}]" if chosen.version == 6 else str(chosen)
    pinned = SplitResult(parts.scheme, f"{shown}:{port}", parts.path, parts.query, parts.fragment)
    return Pinned(urlunsplit(pinned), netloc_host, host if address is None else None)

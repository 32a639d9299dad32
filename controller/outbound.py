"""Which URLs the controller itself may request: webhooks and dial-whom URLs.

Checked twice. When a URL is given (:func:`check_url`): http(s) only, a host
in plain ASCII, no whitespace, the host on ``outbound.allowed_hosts`` when
that list is set, and, unless ``outbound.allow_private``, not a loopback,
private, link-local or other non-public address written as a literal in any
form a resolver accepts (``2130706433``, ``0x7f.1``, ``::ffff:127.0.0.1``),
nor ``localhost``. On each request, by the one client every outbound request
goes through (controller.outbound_client): the same rules again (a stored
webhook may predate a config change), then the host is resolved once
(:func:`resolve_checked`), every address it resolves to must be public, and
the connection goes to one of those very addresses, so a name that points at
a private address, perhaps only since it was given or only on a second
lookup (DNS rebinding), is refused.

Errors and logs show URLs through :func:`redact`: scheme, host, port and path;
never the userinfo or the query, which often carry tokens.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from urllib.parse import urlsplit

from pydantic import Field

from controller.errors import InvalidField, OutboundRefused
from controller.settings import Section

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class OutboundConfig(Section):
    """URLs the controller itself requests: webhooks and dial-whom URLs (the
    config's [outbound] table)."""

    # Hosts they may name ("crm.example.com", or "*.example.com" for its
    # subdomains); empty: any host with a public address.
    allowed_hosts: list[str] = Field(default_factory=list)
    # Loopback, private, link-local and other non-public addresses are refused
    # unless this is on (labs and tests that run their receivers on 127.0.0.1).
    allow_private: bool = False

# What a host name may hold (IDNA names in their xn-- form); anything else,
# such as '%' escapes or full-width digits, could be read differently by the
# resolver than by these checks.
_HOST_NAME = re.compile(r"[a-z0-9_-]+(?:\.[a-z0-9_-]+)*\.?")
_IPV6_LITERAL = re.compile(r"[0-9a-f:.]+")
# A label that makes a resolver read the whole host as an IPv4 address
# (inet_aton: decimal, 0-prefixed octal, 0x-prefixed hex).
_NUMERIC_LABEL = re.compile(r"0x[0-9a-f]*|[0-9]+")
_ALLOW_PRIVATE = "outbound.allow_private"
_ALLOWED_HOSTS = "outbound.allowed_hosts"


def redact(url: str) -> str:
    """The URL without its userinfo, query or fragment, for logs and errors."""
    parts = urlsplit(url)
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:  # a port that is not a number: left out
        port = ""
    return f"{parts.scheme}://{parts.hostname or ''}{port}{parts.path}"


def check_url(url: str, policy: OutboundConfig | None, field: str) -> str:
    """The URL, if the policy lets the controller request it; else
    InvalidField naming ``field`` and the rule. Without a policy only the
    URL's form is checked (agent groups: their URLs meet the policy when
    they are requested)."""
    problem = url_problem(url, policy)
    if problem is not None:
        raise InvalidField(f"{field} {redact(url)!r} is refused: {problem}", field=field)
    return url


def check_before_send(url: str, policy: OutboundConfig) -> None:
    """OutboundRefused if the URL's form, scheme or host breaks the policy now
    (its addresses are checked when it is connected to)."""
    problem = url_problem(url, policy)
    if problem is not None:
        raise OutboundRefused(f"{redact(url)} is refused: {problem}", url=redact(url))


def url_problem(url: str, policy: OutboundConfig | None) -> str | None:
    """Which rule the URL breaks, in words; None if it breaks none."""
    if any(c.isspace() or not c.isprintable() for c in url):
        return "a URL must not contain whitespace or control characters"
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "it must be an http(s) URL with a host"
    if not _port_valid(url):
        return "its port must be a number 0-65535"
    host = parts.hostname  # lower-cased, without brackets
    if policy is not None and policy.allowed_hosts and not host_allowed(host, policy.allowed_hosts):
        return f"host {host} is not in {_ALLOWED_HOSTS}"
    bracketed = parts.netloc.rpartition("@")[2].startswith("[")
    try:
        address = literal_address(host, bracketed)
    except ValueError as exc:
        return str(exc)
    if policy is None or policy.allow_private:
        return None
    if address is not None and not is_public(address):
        return (f"host {host} is a non-public address ({address}); loopback, private, "
                f"link-local and reserved addresses need {_ALLOW_PRIVATE}")
    name = host.rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return f"host {host} is this machine; that needs {_ALLOW_PRIVATE}"
    return None


def _port_valid(url: str) -> bool:
    try:
        urlsplit(url).port  # noqa: B018 (the property raises for a bad port)
    except ValueError:
        return False
    return True


def host_allowed(host: str, allowed: list[str]) -> bool:
    """Whether ``host`` is one of ``allowed``: an exact name, or
    ``*.example.com`` for any name under example.com (not example.com itself)."""
    name = host.rstrip(".").lower()
    for entry in allowed:
        pattern = entry.strip().rstrip(".").lower()
        if pattern.startswith("*."):
            if name.endswith(pattern[1:]) and len(name) > len(pattern) - 1:
                return True
        elif name == pattern:
            return True
    return False


def literal_address(host: str, bracketed: bool) -> IpAddress | None:
    """The address a host stands for by itself, as a resolver would read it;
    None for a name. ValueError for a host no resolver should be given."""
    if bracketed:
        if not _IPV6_LITERAL.fullmatch(host):
            raise ValueError(f"host [{host}] is not an IPv6 address (zone ids are refused)")
        try:
            return ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"host [{host}] is not an IPv6 address") from None
    if not _HOST_NAME.fullmatch(host):
        raise ValueError(f"host {host!r} must be an ASCII host name (xn-- form for IDNs) "
                         "or an IP address")
    labels = host.rstrip(".").split(".")
    if not _NUMERIC_LABEL.fullmatch(labels[-1]):
        return None  # a name: its last label is not a number
    # As the WHATWG URL standard does: a host ending in a number is an IPv4
    # address, in any of inet_aton's forms, or nothing.
    try:
        return ipaddress.IPv4Address(socket.inet_aton(".".join(labels)))
    except OSError:
        raise ValueError(f"host {host} ends in a number but is not an IPv4 address") from None


def is_public(address: IpAddress) -> bool:
    """Whether the address is a public unicast one, looking inside IPv6
    forms that carry an IPv4 address (mapped, 6to4, NAT64)."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            return is_public(embedded)
    return address.is_global and not (
        address.is_private or address.is_loopback or address.is_link_local
        or address.is_multicast or address.is_reserved or address.is_unspecified)


_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


async def resolve_checked(host: str, port: int, policy: OutboundConfig,
                          timeout: float | None) -> list[IpAddress]:
    """The addresses ``host`` resolves to, resolved once; OutboundRefused if
    any is non-public and the policy does not allow that. Resolving errors
    (OSError, TimeoutError) are the caller's, as a failed connection would be."""
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(timeout):
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses: list[IpAddress] = []
    for *_, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).partition("%")[0])
        if not policy.allow_private and not is_public(address):
            raise OutboundRefused(f"host {host} resolves to a non-public address ({address}); "
                                  f"that needs {_ALLOW_PRIVATE}", host=host)
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise socket.gaierror(socket.EAI_NONAME, f"host {host} resolved to no address")
    return addresses

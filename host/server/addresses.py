"""The client address a connection counts against for ``max_connections_per_address``: the
peer of the TCP connection or, when that peer is a trusted reverse proxy, the client address
the proxy put in ``X-Forwarded-For``. Loopback addresses are never capped: they are local
tools, or a proxy on this machine whose clients cannot be told apart."""

from __future__ import annotations

import ipaddress
from collections import Counter


def normalized(address: str) -> str:
    """One spelling per address (IPv4-mapped IPv6 as IPv4); other strings as they are."""
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return address.strip()[:64]
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.compressed


def client_address(peer: str, headers: dict[str, str], trusted: frozenset[str]) -> str:
    """The address a connection from ``peer`` with these upgrade headers (names lower-cased)
    comes from: behind trusted proxies, the nearest forwarded hop that is not one of them."""
    address = normalized(peer)
    if address not in trusted:
        return address
    hops = [h for h in headers.get("x-forwarded-for", "").split(",") if h.strip()]
    for hop in reversed(hops):
        if normalized(hop) not in trusted:
            return normalized(hop)
    return address


def is_capped(address: str) -> bool:
    try:
        return not ipaddress.ip_address(address).is_loopback
    except ValueError:
        return True


class AddressCounts:
    """Open connections per client address, against a cap (0: none)."""

    def __init__(self, cap: int, trusted_proxies: tuple[str, ...]) -> None:
        self.cap = cap
        self.trusted = frozenset(normalized(a) for a in trusted_proxies)
        self._open: Counter[str] = Counter()

    def address(self, peer: str, headers: dict[str, str]) -> str:
        return client_address(peer, headers, self.trusted)

    def full(self, address: str) -> bool:
        return self.cap > 0 and is_capped(address) and self._open[address] >= self.cap

    def opened(self, address: str) -> None:
        self._open[address] += 1

    def closed(self, address: str) -> None:
        self._open[address] -= 1
        if self._open[address] <= 0:
            del self._open[address]

    def __len__(self) -> int:
        return len(self._open)

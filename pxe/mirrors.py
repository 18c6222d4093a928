"""Image mirrors: which machines fetch their image from which mirror or rack-local cache first.

A rule is `CIDR=BASE_URL` (`metalstream serve --image-mirror`, repeatable): an agent whose address
(as the service sees it when it fetches its plan) lies in CIDR is sent to `BASE_URL/images/NAME.tar.zst`
before the service's own URL. `tag:NAME=BASE_URL` is reserved for machine tags, which arrive with
machines; until then it is refused rather than accepted and never matched. Pure: no Flask.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlparse

from metalstream.contracts import rules
from metalstream.errors import BadInput

OPTION = "--image-mirror"
SUBNET_PREFIX = "subnet:"
TAG_PREFIX = "tag:"
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class MirrorRule:
    subnet: IpNetwork
    base_url: str  # http(s)://host[:port][/path], no trailing slash: the image is at BASE_URL + its /images/ path

    def matches(self, client_address: str | None) -> bool:
        address = _address(client_address)
        return address is not None and address.version == self.subnet.version and address in self.subnet

    def image_url(self, url_path: str, sha256: str) -> str:
        # The sha256 in the query makes a cache key that changes whenever the bytes behind the name do
        # (an image deleted and registered again under its name); servers of static files ignore it.
        return f"{self.base_url}{url_path}?sha256={sha256}"

    def __str__(self) -> str:
        return f"{self.subnet}={self.base_url}"


def parse_mirror_rule(text: str, location: str = OPTION) -> MirrorRule:
    """`CIDR=URL` (or `subnet:CIDR=URL`) → MirrorRule; BadInput located at `location` otherwise."""
    rules.text(text, location, max_length=2048, allow_empty=False)
    match, sep, url = text.partition("=")
    if not sep:
        raise BadInput(f"expected CIDR=URL, e.g. 10.1.2.0/24=http://cache-rack2:8080, got {text!r}",
                       location=location)
    match = match.strip()
    if match.startswith(TAG_PREFIX):
        raise BadInput(f"tag rules ({match}=URL) arrive with machines and their tags; for now a rule matches "
                       "the agent's subnet: CIDR=URL", location=location)
    return MirrorRule(_subnet(match.removeprefix(SUBNET_PREFIX), location), _base_url(url.strip(), location))


def mirror_urls(mirror_rules: tuple[MirrorRule, ...], client_address: str | None, url_path: str,
                sha256: str) -> list[str]:
    """The image URLs of every rule matching `client_address`, in the rules' order, without repeats."""
    urls = [rule.image_url(url_path, sha256) for rule in mirror_rules if rule.matches(client_address)]
    return list(dict.fromkeys(urls))


def _address(text: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(text or "")
    except ValueError:
        return None
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:10.1.2.3 from a dual-stack socket
    return mapped or address


def _subnet(text: str, location: str) -> IpNetwork:
    try:
        return ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        raise BadInput(f"{text!r} is not a subnet in CIDR notation (e.g. 10.1.2.0/24): {exc}",
                       location=location) from None


def _base_url(text: str, location: str) -> str:
    parsed = urlparse(text)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise BadInput(f"the mirror must be an http(s)://host[:port][/path] URL, got {text!r}", location=location)
    if parsed.query or parsed.fragment or parsed.params or any(c.isspace() for c in text):
        raise BadInput(f"the mirror URL takes no query, fragment or spaces: {text!r}", location=location)
    if parsed.username is not None:
        raise BadInput("no credentials in the mirror URL: plans and agent logs carry it", location=location)
    try:
        _ = parsed.port  # a malformed port raises only when asked for
    except ValueError:
        raise BadInput(f"bad port in the mirror URL {text!r}", location=location) from None
    return text.rstrip("/")

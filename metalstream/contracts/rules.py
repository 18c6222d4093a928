"""Field rules: what a value must look like wherever it enters metalstream.

The service's API, `metalstream install`, the agent reading its plan, the builder and the
kickstart front end all call these, so they accept and refuse exactly the same values. Each
rule returns the value (normalised where stated) or raises BadInput located at `location`.
Patterns end in \\Z, not $: `$` also matches before a trailing newline.
"""
from __future__ import annotations

import base64
import math
import re
from typing import Any

from ..errors import BadInput

BOOT_MODES = ("bios", "uefi", "both")
# The agent's install phases, in order (events and results name one).
PHASES = ("start", "disk", "partition", "mkfs", "stream", "verify", "configure", "bootloader", "finish")
# Deployment states (docs/contracts.md §4); the transitions between them are the service's (pxe.states).
PENDING, BOOTING, INSTALLING, INSTALLED = "pending", "booting", "installing", "installed"
ACTIVE, FAILED, CANCELLED = "active", "failed", "cancelled"
STATES = (PENDING, BOOTING, INSTALLING, INSTALLED, ACTIVE, FAILED, CANCELLED)

MAX_INT = 2**63 - 1  # what every database stores in a BIGINT
MAX_TEXT = 4096
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_SHA256 = re.compile(r"[0-9a-f]{64}\Z")
_IMAGE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}\Z")
_HOST_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\Z")
# crypt(3): $id$[params$]salt$hash; a leading '!' locks it; '!', '!!' or '*' alone lock the account.
_PASSWORD_HASH = re.compile(r"(!|!!|\*|!?\$[0-9a-z]{1,6}\$[A-Za-z0-9./$=,+-]{8,1024})\Z")
SSH_KEY_TYPES = ("ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521",
                 "sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com")
MAX_SSH_KEY = 16384
# One kernel argument: no spaces, no shell, iPXE or GRUB metacharacters ($ { } ; & | ` \ # quotes).
KERNEL_ARG = re.compile(r"[A-Za-z0-9._:/=,+@-]{1,256}\Z")
# The installer's own parameters (service URL, agent token, ...): never settable through kernel_args.
RESERVED_KERNEL_ARG_PREFIX = "metalstream."
_MAC = re.compile(r"([0-9a-f]{2})([:-]?)([0-9a-f]{2})(\2[0-9a-f]{2}){4}\Z")
_FS_UUID = re.compile(r"[0-9A-Fa-f-]{4,64}\Z")


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def text(value: Any, location: str, *, max_length: int = MAX_TEXT, allow_empty: bool = True) -> str:
    """A string without control characters (newline, tab, escape...) of at most `max_length` characters."""
    if not isinstance(value, str):
        raise BadInput(f"expected a string, got {_show(value)}", location=location)
    if CONTROL.search(value):
        raise BadInput("contains a control character (newline, tab, escape...)", location=location)
    if len(value) > max_length:
        raise BadInput(f"longer than {max_length} characters", location=location)
    if not value and not allow_empty:
        raise BadInput("must not be empty", location=location)
    return value


def boolean(value: Any, location: str) -> bool:
    if not isinstance(value, bool):
        raise BadInput(f"expected true or false, got {_show(value)}", location=location)
    return value


def integer(value: Any, location: str, *, minimum: int = 0, maximum: int = MAX_INT) -> int:
    """A JSON integer in [minimum, maximum] (never a boolean, never beyond a BIGINT)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadInput(f"expected an integer, got {_show(value)}", location=location)
    if not minimum <= value <= maximum:
        raise BadInput(f"must be between {minimum} and {maximum}", location=location)
    return value


def number(value: Any, location: str, *, minimum: float = 0.0, maximum: float = float(MAX_INT)) -> float:
    """A finite JSON number in [minimum, maximum]: NaN and infinities are refused (JSON cannot carry them)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadInput(f"expected a number, got {_show(value)}", location=location)
    if isinstance(value, float) and not math.isfinite(value):
        raise BadInput("must be a finite number", location=location)
    if not minimum <= value <= maximum:
        raise BadInput(f"must be between {minimum:g} and {maximum:g}", location=location)
    return value


def one_of(value: Any, choices: tuple[str, ...], location: str) -> str:
    if not isinstance(value, str) or value not in choices:
        raise BadInput(f"must be one of {', '.join(choices)} (got {_show(value)})", location=location)
    return value


def boot_mode(value: Any, location: str) -> str:
    return one_of(value, BOOT_MODES, location)


def phase(value: Any, location: str) -> str:
    return one_of(value, PHASES, location)


def sha256(value: Any, location: str) -> str:
    if not isinstance(value, str) or not _SHA256.match(value):
        raise BadInput("must be a sha256 checksum (64 lowercase hex digits)", location=location)
    return value


def image_name(value: Any, location: str) -> str:
    if not isinstance(value, str) or not _IMAGE_NAME.match(value) or ".." in value:
        raise BadInput(f"not a valid image name: {_show(value)} (letters, digits, '.', '_', '-'; at most 128; "
                       "no '..')", location=location)
    return value


def file_name(value: Any, location: str) -> str:
    """A plain file name (no directory part): how a manifest names the files beside it."""
    if (not isinstance(value, str) or not value or len(value) > 255 or "/" in value or "\\" in value
            or CONTROL.search(value) or value in (".", "..")):
        raise BadInput("must be a file name beside the manifest (no directories)", location=location)
    return value


def absolute_path(value: Any, location: str) -> str:
    """An absolute path inside an image (e.g. a kernel's), without '..' components."""
    text(value, location, max_length=1024, allow_empty=False)
    if not value.startswith("/") or ".." in value.split("/"):
        raise BadInput("must be an absolute path inside the image (no '..')", location=location)
    return value


def is_hostname(value: str) -> bool:
    """Whether `value` is a DNS host name: 1-253 ASCII characters, dot-separated labels of letters, digits, '-'."""
    return value.isascii() and 0 < len(value) <= 253 and all(_HOST_LABEL.match(label)
                                                              for label in value.lower().split("."))


def hostname(value: Any, location: str) -> str:
    """A DNS host name (dot-separated labels of letters, digits and '-'); returned in lower case."""
    if not isinstance(value, str) or not value:
        raise BadInput("must be a non-empty string", location=location)
    if not value.isascii() or len(value) > 253:
        raise BadInput("must be ASCII and at most 253 characters", location=location)
    lowered = value.lower()
    if not all(_HOST_LABEL.match(label) for label in lowered.split(".")):
        raise BadInput(f"not a valid host name: {_show(value)} (letters, digits, '-' and '.' only)",
                       location=location)
    return lowered


def password_hash(value: Any, location: str) -> str:
    """A crypt(3) hash ($6$salt$hash, $y$..., optionally '!'-locked) or a lock marker ('!', '!!', '*')."""
    if not isinstance(value, str) or not _PASSWORD_HASH.match(value):
        raise BadInput("must be a crypt(3) hash such as $6$salt$hash, or '!' or '*' to lock the account "
                       "(never a plain password)", location=location)
    return value


def ssh_public_key(value: Any, location: str) -> str:
    """One OpenSSH public key line, `TYPE BASE64 [comment]`, whose key blob really is of TYPE."""
    def refuse(why: str) -> BadInput:
        return BadInput(f"not an OpenSSH public key: {why}", location=location)

    if not isinstance(value, str) or not value.strip():
        raise refuse("expected one line 'TYPE BASE64 [comment]'")
    line = value.strip()
    if len(line) > MAX_SSH_KEY or CONTROL.search(line):
        raise refuse(f"expected one line of at most {MAX_SSH_KEY} characters")
    key_type, _, rest = line.partition(" ")
    blob, _, _comment = rest.partition(" ")
    if key_type not in SSH_KEY_TYPES:
        raise refuse(f"unknown key type {_show(key_type)} (one of: {', '.join(SSH_KEY_TYPES)})")
    try:
        decoded = base64.b64decode(blob, validate=True)
    except ValueError:
        decoded = b""
    name_length = int.from_bytes(decoded[:4], "big") if len(decoded) >= 4 else -1
    if decoded[4:4 + name_length] != key_type.encode():
        raise refuse(f"the key data is not base64 of a {key_type} key")
    return line


def kernel_arg(value: Any, location: str) -> str:
    """One kernel argument: letters, digits and . _ : / = , + @ - only; never one of the installer's own."""
    if not isinstance(value, str) or not KERNEL_ARG.match(value):
        raise BadInput(f"not an allowed kernel argument: {_show(value)} (one argument, at most 256 of: letters, "
                       "digits and . _ : / = , + @ -)", location=location)
    if value.startswith(RESERVED_KERNEL_ARG_PREFIX):
        raise BadInput(f"{_show(value)}: metalstream.* arguments are reserved for the installer", location=location)
    return value


def kernel_args(value: Any, location: str) -> str:
    """A kernel command line: space-separated arguments, each following `kernel_arg`; normalised spacing."""
    text(value, location)
    return " ".join(kernel_arg(arg, location) for arg in value.split())


def mac(value: Any, location: str) -> str:
    """`aa:bb:cc:dd:ee:ff`, `AA-BB-CC-DD-EE-FF` or `aabbccddeeff` → `aa:bb:cc:dd:ee:ff`."""
    if not isinstance(value, str):
        raise BadInput("must be a MAC address string", location=location)
    raw = value.strip().lower()
    if not _MAC.match(raw):
        raise BadInput(f"not a MAC address: {_show(value)} (want aa:bb:cc:dd:ee:ff, AA-BB-..., or aabbccddeeff; "
                       "one kind of separator)", location=location)
    digits = raw.replace(":", "").replace("-", "")
    return ":".join(digits[i:i + 2] for i in range(0, 12, 2))


def fs_uuid(value: Any, location: str) -> str:
    if not isinstance(value, str) or not _FS_UUID.match(value):
        raise BadInput("must be a filesystem UUID", location=location)
    return value


def expect_object(value: Any, location: str, allowed: tuple[str, ...] | None = None) -> dict:
    """A JSON object; with `allowed`, any other key is refused (a misspelt field never goes unnoticed)."""
    if not isinstance(value, dict):
        raise BadInput(f"must be a JSON object, got {_show(value)}", location=location or "body")
    if allowed is not None:
        unknown = sorted(set(value) - set(allowed))
        if unknown:
            prefix = f"{location}." if location else ""
            raise BadInput(f"unknown field (allowed: {', '.join(allowed)})", location=prefix + str(unknown[0]))
    return value


def expect_list(value: Any, location: str, *, max_items: int = 1000) -> list:
    if not isinstance(value, list):
        raise BadInput(f"must be a list, got {_show(value)}", location=location)
    if len(value) > max_items:
        raise BadInput(f"at most {max_items} items", location=location)
    return value


def field(location: str, name: str) -> str:
    """`location.name`, or just `name` at the top of a document."""
    return f"{location}.{name}" if location else name


# Network interfaces (metalstream.contracts.network): Linux names are at most 15 bytes (IFNAMSIZ - 1).
_IFNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,14}\Z")


def interface_name(value: Any, location: str) -> str:
    """A Linux network interface name: 1 to 15 of letters, digits, '_', '.', '-', starting with a letter or digit."""
    if not isinstance(value, str) or not _IFNAME.match(value):
        raise BadInput(f"not an interface name: {_show(value)} (1 to 15 of letters, digits, '_', '.', '-')",
                       location=location)
    return value


def is_mac(value: Any) -> bool:
    return isinstance(value, str) and bool(_MAC.match(value.strip().lower()))


def vlan_id(value: Any, location: str) -> int:
    return integer(value, location, minimum=1, maximum=4094)


def vlan_interface_name(value: Any, vid: int, location: str) -> str:
    """A VLAN's name, with anaconda's conventions: NAME.VID when it has a dot, vlanVID when it starts with vlan."""
    interface_name(value, location)
    if "." in value and value.rsplit(".", 1)[1] != str(vid):
        raise BadInput(f"{value}: a VLAN name with a dot must end in .{vid} (its VLAN id)", location=location)
    if value.startswith("vlan") and value != f"vlan{vid}":
        raise BadInput(f"{value}: a VLAN name starting with vlan must be vlan{vid}", location=location)
    return value

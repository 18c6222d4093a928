"""Document formats: `NAME/MAJOR[.MINOR]` in each document's `format` field.

A reader accepts every minor version of the major version it knows (minor versions only add
fields, which readers ignore) and refuses any other major version with a message that says so.
"""
from __future__ import annotations

from .. import __version__
from ..errors import BadInput

IMAGE = "metalstream-image"
INSTALLER = "metalstream-installer"
PLAN = "metalstream-plan"
MAJOR_VERSIONS = {IMAGE: 1, INSTALLER: 1, PLAN: 1}
MINOR_VERSIONS = {PLAN: 4}  # plan 1.1: image.urls (several sources of one image); 1.2: secure_boot; 1.3: reboot;
# 1.4: disks (hints per named disk), encryption (the LUKS passphrase), storage stacks (LVM, RAID, btrfs, LUKS, %pre)
TITLES = {IMAGE: "image manifest", INSTALLER: "installer manifest", PLAN: "deploy plan"}
ARTICLES = {IMAGE: "an", INSTALLER: "an", PLAN: "a"}


def current(kind: str) -> str:
    """The format string this metalstream writes for `kind`, e.g. `metalstream-image/1`, `metalstream-plan/1.3`."""
    minor = MINOR_VERSIONS.get(kind)
    return f"{kind}/{MAJOR_VERSIONS[kind]}" + (f".{minor}" if minor else "")


IMAGE_FORMAT = current(IMAGE)
INSTALLER_FORMAT = current(INSTALLER)
PLAN_FORMAT = current(PLAN)


def check_format(value: object, kind: str, location: str) -> str:
    """Refuse a document that is not a `kind` document of the major version this metalstream reads."""
    title, wanted = TITLES[kind], current(kind)
    name, _, version = value.partition("/") if isinstance(value, str) else ("", "", "")
    if name != kind:
        raise BadInput(f"not {ARTICLES[kind]} {title}: format is {value!r}, expected {wanted!r}", location=location)
    major = version.split(".", 1)[0]
    if not major.isdigit() or not all(p.isdigit() for p in version.split(".")):
        raise BadInput(f"malformed format version {value!r}, expected {wanted!r}", location=location)
    known = MAJOR_VERSIONS[kind]
    if int(major) != known:
        hint = "written by a newer metalstream; upgrade this one" if int(major) > known else "too old to read"
        raise BadInput(f"{title} format {value!r} has major version {int(major)}, but metalstream {__version__} "
                       f"reads major version {known} only ({hint})", location=location)
    return value

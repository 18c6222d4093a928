"""What a GRUB EFI image (grub-mkimage output, signed or not) carries inside: its built-in modules and prefix.

Under Secure Boot a signed grub refuses to `insmod` a module from disk, so whatever grub.cfg needs must
be built in. grub-mkimage appends a module area to the image: a `mimg` header (magic, padding, offset,
size) followed by objects, each `type, size` then its bytes; type 0 is a module (an ELF object whose
`.modname` section holds its name), type 3 the prefix (the directory grub reads grub.cfg from).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

_INFO = struct.Struct("<4sIQQ")  # grub_module_info64: magic, padding, offset (of the first object), size
_OBJECT = struct.Struct("<II")  # grub_module_header: type, size (header included)
_ELF_MODULE, _PREFIX = 0, 3
MAX_OBJECTS = 4096


@dataclass(frozen=True)
class GrubImage:
    modules: frozenset[str]
    prefix: str | None


def read_grub_image(data: bytes) -> GrubImage | None:
    """The image's built-in modules and prefix; None when `data` has no module area (not a grub image)."""
    start = _module_area(data)
    if start is None:
        return None
    _, _, offset, size = _INFO.unpack_from(data, start)
    position, end = start + offset, start + size
    modules: set[str] = set()
    prefix = None
    for _ in range(MAX_OBJECTS):
        if position + _OBJECT.size > end:
            break
        kind, length = _OBJECT.unpack_from(data, position)
        if length < _OBJECT.size or position + length > end:
            break
        body = data[position + _OBJECT.size:position + length]
        if kind == _ELF_MODULE:
            name = _elf_module_name(body)
            if name:
                modules.add(name)
        elif kind == _PREFIX:
            prefix = body.split(b"\0", 1)[0].decode(errors="replace") or None
        position += length
    return GrubImage(frozenset(modules), prefix)


def _module_area(data: bytes) -> int | None:
    """Offset of the `mimg` header whose offset and size fit the file (the magic also occurs by chance)."""
    at = data.find(b"mimg")
    while at != -1:
        if at + _INFO.size <= len(data):
            _, padding, offset, size = _INFO.unpack_from(data, at)
            if padding == 0 and offset == _INFO.size and at + size <= len(data):
                return at
        at = data.find(b"mimg", at + 1)
    return None


def _elf_module_name(elf: bytes) -> str | None:
    """The `.modname` section of a 64-bit little-endian ELF object, or None."""
    if elf[:6] != b"\x7fELF\x02\x01" or len(elf) < 64:
        return None
    (section_offset,) = struct.unpack_from("<Q", elf, 0x28)
    entry_size, count, names_index = struct.unpack_from("<HHH", elf, 0x3a)
    if entry_size < 64 or names_index >= count or section_offset + count * entry_size > len(elf):
        return None
    sections = [struct.unpack_from("<IIQQQQ", elf, section_offset + i * entry_size) for i in range(count)]
    names_at = sections[names_index][4]
    for name_index, _, _, _, offset, size in sections:
        start = names_at + name_index
        if elf[start:start + 9] == b".modname\0" and offset + size <= len(elf):
            return elf[offset:offset + size].split(b"\0", 1)[0].decode(errors="replace") or None
    return None

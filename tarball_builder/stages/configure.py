"""Stage `configure`: lang, keyboard, timezone, SELinux mode, services and firewall from the build spec.

Files are written directly into the root; tools (locale-gen, systemctl, firewall-offline-cmd) are the
image's own, run inside it through the chroot.
"""
from __future__ import annotations

import re

from metalstream import rootfs
from metalstream.errors import BadInput, CommandError

from ..chroot import for_build
from ..context import BuildContext
from .util import warn, where

PLAIN_LOCALES = ("C", "C.UTF-8", "C.utf8", "POSIX")


class ConfigureStage:
    name = "configure"
    description = "apply lang, keyboard, timezone, selinux, services and firewall"

    def run(self, ctx: BuildContext) -> None:
        spec = ctx.build
        if spec.lang:
            set_lang(ctx, spec.lang)
        if spec.keyboard or spec.keyboard_layouts:
            set_keyboard(ctx, spec.keyboard, spec.keyboard_layouts, spec.keyboard_switch)
        if spec.timezone:
            set_timezone(ctx)
        if spec.selinux:
            set_selinux(ctx, spec.selinux)
        if spec.services_enabled or spec.services_disabled:
            set_services(ctx)
        if spec.firewall:
            set_firewall(ctx)


def set_lang(ctx: BuildContext, lang: str) -> None:
    rootfs.write_file(ctx.root, "/etc/locale.conf", f"LANG={lang}\n")
    if ctx.build.distribution.family == "debian":
        rootfs.write_file(ctx.root, "/etc/default/locale", f"LANG={lang}\n")
    if lang in PLAIN_LOCALES:
        return
    locale_gen = rootfs.resolve(ctx.root, "/etc/locale.gen")
    if not (locale_gen.is_file() and rootfs.exists(ctx.root, "/usr/sbin/locale-gen")):
        if ctx.build.distribution.family == "debian":
            warn(ctx, f"{where(ctx, None)}: lang {lang}: the 'locales' package is not in the image, "
                      "so the locale is not generated")
        return
    wanted = re.escape(lang.replace("utf8", "UTF-8"))
    text, count = re.subn(rf"(?m)^#\s*({wanted}\s.*)$", r"\1", locale_gen.read_text())
    if count == 0 and not re.search(rf"(?m)^{wanted}\s", text):
        raise BadInput(f"lang {lang!r} is not a locale listed in the image's /etc/locale.gen",
                       location=where(ctx, None))
    rootfs.write_file(ctx.root, "/etc/locale.gen", text, mode=None)
    with for_build(ctx) as chroot:
        chroot.run(["locale-gen"])


def set_keyboard(ctx: BuildContext, keymap: str | None, layouts: list[str] | None = None,
                 switch: list[str] | None = None) -> None:
    """Console keymap in /etc/vconsole.conf; X layouts (all of them, in order) and switch options where
    localed keeps them: /etc/X11/xorg.conf.d/00-keyboard.conf, and Debian's /etc/default/keyboard."""
    if keymap:
        rootfs.write_file(ctx.root, "/etc/vconsole.conf", f"KEYMAP={keymap}\n")
    names = [layout.split("(", 1)[0].strip() for layout in layouts or [keymap]]
    variants = [layout.split("(", 1)[1].rstrip(")").strip() if "(" in layout else "" for layout in layouts or []]
    xkb = {"XKBLAYOUT": ",".join(names), "XKBVARIANT": ",".join(variants) if any(variants) else None,
           "XKBOPTIONS": ",".join(switch) if switch else None}
    if layouts or switch:
        section = ['Section "InputClass"', '        Identifier "system-keyboard"',
                   '        MatchIsKeyboard "on"', f'        Option "XkbLayout" "{xkb["XKBLAYOUT"]}"']
        section += [f'        Option "XkbVariant" "{xkb["XKBVARIANT"]}"'] if xkb["XKBVARIANT"] else []
        section += [f'        Option "XkbOptions" "{xkb["XKBOPTIONS"]}"'] if xkb["XKBOPTIONS"] else []
        rootfs.write_file(ctx.root, "/etc/X11/xorg.conf.d/00-keyboard.conf", "\n".join([*section, "EndSection", ""]))
    keyboard = rootfs.resolve(ctx.root, "/etc/default/keyboard")
    if keyboard.is_file():
        text = keyboard.read_text()
        for key, value in xkb.items():
            if value is None:
                continue
            text, count = re.subn(rf'(?m)^{key}=.*$', f'{key}="{value}"', text)
            text += "" if count else f'{key}="{value}"\n'
        rootfs.write_file(ctx.root, "/etc/default/keyboard", text, mode=None)


def set_timezone(ctx: BuildContext) -> None:
    tz = ctx.build.timezone
    zone = tz.name
    localtime = rootfs.writable_path(ctx.root, "/etc/localtime")
    zone_path = f"/usr/share/zoneinfo/{zone}"
    if rootfs.exists(ctx.root, zone_path):
        localtime.unlink(missing_ok=True)
        localtime.symlink_to(f"..{zone_path}")
    elif zone in ("UTC", "Etc/UTC"):
        localtime.unlink(missing_ok=True)  # no tzdata: without /etc/localtime the system runs in UTC
    else:
        raise BadInput(f"timezone {zone!r}: {zone_path} is not in the image (add tzdata to %packages, "
                       "or check the zone name)", location=where(ctx, tz.line))
    if ctx.build.distribution.family == "debian":
        rootfs.write_file(ctx.root, "/etc/timezone", f"{zone}\n")
    rootfs.write_file(ctx.root, "/etc/adjtime", f"0.0 0 0.0\n0\n{'UTC' if tz.utc else 'LOCAL'}\n")


def set_selinux(ctx: BuildContext, mode: str) -> None:
    config = rootfs.resolve(ctx.root, "/etc/selinux/config")
    if not config.is_file():
        if mode != "disabled":
            warn(ctx, f"{where(ctx, None)}: selinux --{mode}: the image has no /etc/selinux/config "
                      "(no SELinux policy installed); ignored")
        return
    text = config.read_text()
    text, count = re.subn(r"(?m)^SELINUX=.*$", f"SELINUX={mode}", text)
    rootfs.write_file(ctx.root, "/etc/selinux/config", text if count else text + f"SELINUX={mode}\n", mode=None)


def set_services(ctx: BuildContext) -> None:
    if not (rootfs.exists(ctx.root, "/usr/bin/systemctl") or rootfs.exists(ctx.root, "/bin/systemctl")):
        raise BadInput("services: the image has no systemd (systemctl); add systemd to %packages",
                       location=where(ctx, None))
    with for_build(ctx) as chroot:
        for verb, names in (("enable", ctx.build.services_enabled), ("disable", ctx.build.services_disabled)):
            for name in names:
                try:
                    chroot.run(["systemctl", verb, name])
                except CommandError as exc:
                    raise BadInput(f"services --{verb}d: cannot {verb} {name!r}: {exc.stderr.strip() or exc}",
                                   location=where(ctx, None)) from exc


def set_firewall(ctx: BuildContext) -> None:
    fw = ctx.build.firewall
    if not rootfs.exists(ctx.root, "/usr/bin/firewall-offline-cmd"):
        if fw.enabled and (fw.services or fw.ports or fw.trusts or fw.remove_services):
            warn(ctx, f"{where(ctx, fw.line)}: firewall: the image has no firewalld (firewall-offline-cmd); "
                      "rules not applied")
        return
    argv = ["firewall-offline-cmd", "--enabled" if fw.enabled else "--disabled"]
    argv += [f"--service={s}" for s in fw.services]
    argv += [f"--port={p}" for p in fw.ports]
    argv += [f"--trust={t}" for t in fw.trusts]
    argv += [f"--remove-service={s}" for s in fw.remove_services]
    with for_build(ctx) as chroot:
        try:
            chroot.run(argv)
        except CommandError as exc:
            raise BadInput(f"firewall: {exc.stderr.strip() or exc}", location=where(ctx, fw.line)) from exc

"""Build stages honour what the kickstart split carries: every keyboard layout and switch option, rootpw --allow-ssh
(on a small root directory, no package install)."""
from __future__ import annotations

from pathlib import Path

from metalstream.contracts.deployspec import DeploySpec
from tarball_builder.context import BuildContext, BuildOptions
from tarball_builder.spec import BuildSpec, Distribution, SplitKickstart
from tarball_builder.stages.accounts import ROOT_SSH_DROPIN, permit_root_ssh_login
from tarball_builder.stages.configure import set_keyboard

DEBIAN_KEYBOARD = 'XKBMODEL="pc105"\nXKBLAYOUT="us"\nXKBVARIANT=""\nXKBOPTIONS=""\nBACKSPACE="guess"\n'


def make_ctx(tmp_path: Path) -> BuildContext:
    spec = BuildSpec(distribution=Distribution(family="debian", release="bookworm", line=3))
    root = tmp_path / "root"
    (root / "etc" / "default").mkdir(parents=True)
    return BuildContext(kickstart=SplitKickstart(build=spec, deploy=DeploySpec(), source="t.ks", sha256="ab" * 32),
                        options=BuildOptions(output_dir=tmp_path / "out", name="t", cache_dir=tmp_path / "cache"),
                        root=root, workdir=tmp_path, source_date_epoch=1_700_000_000)


def test_every_keyboard_layout_and_switch_option_reach_the_image(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path)
    (ctx.root / "etc/default/keyboard").write_text(DEBIAN_KEYBOARD)
    set_keyboard(ctx, "de", ["de", "us", "cz (qwerty)"], ["grp:alt_shift_toggle"])
    assert (ctx.root / "etc/vconsole.conf").read_text() == "KEYMAP=de\n"
    assert (ctx.root / "etc/default/keyboard").read_text() == (
        'XKBMODEL="pc105"\nXKBLAYOUT="de,us,cz"\nXKBVARIANT=",,qwerty"\nXKBOPTIONS="grp:alt_shift_toggle"\n'
        'BACKSPACE="guess"\n')
    xorg = (ctx.root / "etc/X11/xorg.conf.d/00-keyboard.conf").read_text()
    assert 'Option "XkbLayout" "de,us,cz"' in xorg and 'Option "XkbVariant" ",,qwerty"' in xorg
    assert 'Option "XkbOptions" "grp:alt_shift_toggle"' in xorg


def test_console_keymap_alone_keeps_the_old_behaviour(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path)
    (ctx.root / "etc/default/keyboard").write_text(DEBIAN_KEYBOARD)
    set_keyboard(ctx, "fr", [], [])
    assert 'XKBLAYOUT="fr"\n' in (ctx.root / "etc/default/keyboard").read_text()
    assert 'XKBOPTIONS=""\n' in (ctx.root / "etc/default/keyboard").read_text()
    assert not (ctx.root / "etc/X11").exists()


def test_rootpw_allow_ssh_permits_root_login_in_sshd(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path)
    permit_root_ssh_login(ctx)
    assert (ctx.root / ROOT_SSH_DROPIN.lstrip("/")).read_text() == "PermitRootLogin yes\n"

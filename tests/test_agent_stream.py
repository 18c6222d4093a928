"""stream_image against real zstd + GNU tar and a real local HTTP server that drops, stalls and swaps."""
from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest

from deployer.download import ImageChanged, RetryPolicy
from deployer.stream import ImageVerificationError, stream_image
from metalstream.errors import CommandError, OperationFailed

from conftest import require_root, require_tools
from fixtures_stream import Fault, tree_snapshot

pytestmark = pytest.mark.root

FAST_RETRY = RetryPolicy(attempts=4, backoff=0.01, max_backoff=0.05, deadline=60, read_timeout=5)
CHUNK = 64 * 1024  # small chunks: many chunk boundaries in a 3 MiB image


@pytest.fixture(scope="module")
def reference_tree(stream_test_image, tmp_path_factory):
    """The image's tree extracted by plain GNU tar from the uncompressed tarball."""
    out = tmp_path_factory.mktemp("reference")
    subprocess.run(["tar", "-x", "--numeric-owner", "--xattrs", "--xattrs-include=*", "--acls",
                    "-f", str(stream_test_image.tar), "-C", str(out)], check=True)
    return tree_snapshot(out)


def _stream(source, dest, image, **kwargs):
    kwargs.setdefault("sha256", image.sha256)
    kwargs.setdefault("size", image.size)
    return stream_image(source, dest, retry=FAST_RETRY, chunk_size=CHUNK, **kwargs)


def test_file_path_and_file_url_extract_identical_tree(stream_test_image, reference_tree, tmp_path):
    require_root()
    require_tools("zstd", "tar")
    for i, source in enumerate([str(stream_test_image.path), stream_test_image.path.as_uri()]):
        dest = tmp_path / f"out{i}"
        dest.mkdir()
        seen = []
        result = _stream(source, dest, stream_test_image, progress=lambda done, total: seen.append((done, total)))
        assert result.sha256 == stream_test_image.sha256
        assert result.bytes_read == stream_test_image.size
        assert tree_snapshot(dest) == reference_tree
        assert seen[-1] == (stream_test_image.size, stream_test_image.size)
        assert [d for d, _ in seen] == sorted(d for d, _ in seen)
        assert len(seen) == -(-stream_test_image.size // CHUNK)


def test_synthetic_image_holds_what_must_survive(reference_tree):
    # The comparison above is only meaningful if the reference has the hard cases in it.
    shadow = reference_tree["etc/shadow"]
    assert (shadow[1], shadow[2]) == (0, 42)
    assert any(k == "system.posix_acl_access" for k, _ in shadow[6])
    assert reference_tree["usr/bin/tool"][0] & 0o4000
    assert ("user.metalstream", b"xattr-value") in reference_tree["usr/bin/tool"][6]
    assert reference_tree["usr/bin/tool-hardlink"][4] == "usr/bin/tool"
    assert reference_tree["usr/bin/tool-symlink"][3] == "tool"
    assert reference_tree["home/user/notes"][1:3] == (1000, 1000)
    assert "boot/efi/EFI/BOOT/BOOTX64.EFI" in reference_tree


def _cut_offsets(image) -> dict[str, int]:
    size = image.size
    offsets = {
        "before first byte": 0,
        "after first byte": 1,
        "inside zstd frame header": 3,
        "chunk boundary": CHUNK,
        "one past chunk boundary": CHUNK + 1,
        "middle": size // 2,
        "one before end": size - 2,
        "before last byte": size - 1,
    }
    for i, cut in enumerate(image.header_cuts[:3]):
        offsets[f"inside tar header #{i}"] = cut
    offsets["inside tar header + 1"] = image.header_cuts[0] + 1
    return offsets


@pytest.mark.parametrize("where", ["before first byte", "after first byte", "inside zstd frame header",
                                   "chunk boundary", "one past chunk boundary", "middle", "one before end",
                                   "before last byte", "inside tar header #0", "inside tar header #1",
                                   "inside tar header #2", "inside tar header + 1"])
def test_connection_cut_resumes_to_identical_tree(where, stream_test_image, reference_tree, file_server, tmp_path):
    require_root()
    offset = _cut_offsets(stream_test_image)[where]
    url = file_server.serve("img.tar.zst", stream_test_image.path)
    file_server.fault("img.tar.zst", Fault(at=offset))
    result = _stream(url, tmp_path, stream_test_image)
    assert result.sha256 == stream_test_image.sha256
    assert tree_snapshot(tmp_path) == reference_tree
    ranged = file_server.ranged_requests()
    if offset == 0:  # nothing received: the retry is a plain GET, not a resume
        assert result.resumes == 0 and ranged == []
    else:
        assert result.resumes == 1
        assert ranged == [{"path": "/img.tar.zst", "range": f"bytes={offset}-",
                           "if_range": file_server.state.resources["img.tar.zst"].etag}]


def test_several_cuts_in_one_transfer(stream_test_image, reference_tree, file_server, tmp_path):
    require_root()
    url = file_server.serve("img.tar.zst", stream_test_image.path)
    for offset in (10, 100_000, 1_000_000, stream_test_image.size - 5):
        file_server.fault("img.tar.zst", Fault(at=offset))
    result = _stream(url, tmp_path, stream_test_image)
    assert result.resumes == 4
    assert tree_snapshot(tmp_path) == reference_tree


def test_stalled_connection_times_out_and_resumes(stream_test_image, reference_tree, file_server, tmp_path):
    require_root()
    url = file_server.serve("img.tar.zst", stream_test_image.path)
    file_server.fault("img.tar.zst", Fault(at=500_000, kind="stall", stall_seconds=3))
    retry = RetryPolicy(attempts=3, backoff=0.01, read_timeout=0.5, deadline=60)
    result = stream_image(url, tmp_path, sha256=stream_test_image.sha256, size=stream_test_image.size, retry=retry)
    assert result.resumes >= 1  # a heavily loaded machine may hit the short read timeout once more
    assert file_server.ranged_requests()[0]["range"] == "bytes=500000-"
    assert tree_snapshot(tmp_path) == reference_tree


def test_resume_uses_last_modified_when_there_is_no_etag(stream_test_image, reference_tree, file_server, tmp_path):
    require_root()
    url = file_server.serve("img.tar.zst", stream_test_image.path, etag="")
    file_server.fault("img.tar.zst", Fault(at=70_000))
    result = _stream(url, tmp_path, stream_test_image)
    assert result.resumes == 1 and result.etag is None
    assert file_server.ranged_requests()[0]["if_range"] == "Wed, 25 Nov 2026 10:00:00 GMT"
    assert tree_snapshot(tmp_path) == reference_tree


def test_no_validator_means_no_blind_resume(stream_test_image, file_server, tmp_path):
    require_root()
    url = file_server.serve("img.tar.zst", stream_test_image.path, etag="", last_modified=None)
    file_server.fault("img.tar.zst", Fault(at=70_000))
    with pytest.raises(OperationFailed, match="cannot be resumed without risking mixed content"):
        _stream(url, tmp_path, stream_test_image)
    assert file_server.ranged_requests() == []


def _other_image(stream_test_image, tmp_path) -> Path:
    tree = tmp_path / "other-tree"
    (tree / "etc").mkdir(parents=True)
    (tree / "etc/other-image-marker").write_text("I am the replacement\n")
    tar = subprocess.run(["tar", "-C", str(tree), "-c", "."], capture_output=True, check=True).stdout
    path = tmp_path / "other.tar.zst"
    path.write_bytes(subprocess.run(["zstd", "-q", "-c"], input=tar, capture_output=True, check=True).stdout)
    return path


def test_image_replaced_mid_transfer_fails_without_mixing(stream_test_image, file_server, tmp_path):
    require_root()
    other = _other_image(stream_test_image, tmp_path)
    dest = tmp_path / "dest"
    dest.mkdir()
    url = file_server.serve("img.tar.zst", stream_test_image.path)
    file_server.fault("img.tar.zst", Fault(at=1_500_000, kind="replace", replacement=other))
    with pytest.raises(ImageChanged, match="changed on the server"):
        _stream(url, dest, stream_test_image)
    # The resume carried the old validator; the server answered with the whole new object, which was refused.
    assert file_server.ranged_requests()[0]["range"] == "bytes=1500000-"
    assert not (dest / "etc/other-image-marker").exists()


def test_image_replaced_before_any_byte_is_caught_by_the_hash(stream_test_image, file_server, tmp_path):
    require_root()
    other = _other_image(stream_test_image, tmp_path)
    dest = tmp_path / "dest"
    dest.mkdir()
    url = file_server.serve("img.tar.zst", stream_test_image.path)
    file_server.fault("img.tar.zst", Fault(at=0, kind="replace", replacement=other))
    # Nothing was received, so the retry starts from zero and gets the new object whole: no mixing,
    # and the plan's sha256 (of the old image) refuses it.
    with pytest.raises(ImageVerificationError, match="sha256"):
        _stream(url, dest, stream_test_image, size=None)


def test_server_ignoring_range_is_not_spliced(stream_test_image, file_server, tmp_path):
    require_root()
    url = file_server.serve("img.tar.zst", stream_test_image.path)
    file_server.state.honour_range = False
    file_server.fault("img.tar.zst", Fault(at=200_000))
    with pytest.raises(ImageChanged):
        _stream(url, tmp_path, stream_test_image)


def test_one_bit_flip_is_an_image_verification_error(stream_test_image, file_server, tmp_path):
    require_root()
    data = bytearray(stream_test_image.path.read_bytes())
    data[len(data) // 2] ^= 0x10
    flipped = tmp_path / "flipped.tar.zst"
    flipped.write_bytes(bytes(data))
    dest = tmp_path / "dest"
    dest.mkdir()
    url = file_server.serve("img.tar.zst", flipped)
    with pytest.raises(ImageVerificationError, match="sha256") as info:
        _stream(url, dest, stream_test_image)
    assert info.value.details["sha256"] == hashlib.sha256(bytes(data)).hexdigest()
    assert info.value.details["bytes_read"] == stream_test_image.size  # read to the end to hash all of it


def test_truncated_at_member_boundary_is_caught_by_the_hash(stream_test_image, tmp_path):
    require_root()
    tar = stream_test_image.tar.read_bytes()
    boundary = stream_test_image.members[len(stream_test_image.members) // 2].offset
    truncated_tar = tmp_path / "truncated.tar"
    truncated_tar.write_bytes(tar[:boundary])
    # The premise: GNU tar itself accepts a tarball cut at a member boundary.
    listing = subprocess.run(["tar", "-tf", str(truncated_tar)], capture_output=True, text=True)
    assert listing.returncode == 0, listing.stderr
    truncated = tmp_path / "truncated.tar.zst"
    subprocess.run(["zstd", "-q", "-f", str(truncated_tar), "-o", str(truncated)], check=True)
    for size in (stream_test_image.size, None):  # caught by size, and by the hash alone
        dest = tmp_path / f"dest-{size}"
        dest.mkdir()
        with pytest.raises(ImageVerificationError):
            _stream(str(truncated), dest, stream_test_image, size=size)


def test_larger_than_plan_stops_early(stream_test_image, tmp_path):
    require_root()
    with pytest.raises(ImageVerificationError, match="larger than the plan"):
        _stream(str(stream_test_image.path), tmp_path, stream_test_image, size=stream_test_image.size - 1000)


def test_failing_zstd_stage_is_reported_not_hidden_by_tar(tmp_path):
    require_root()
    garbage = tmp_path / "garbage.tar.zst"
    garbage.write_bytes(hashlib.sha512(b"not zstd").digest() * 1000)
    dest = tmp_path / "dest"
    dest.mkdir()
    digest = hashlib.sha256(garbage.read_bytes()).hexdigest()
    with pytest.raises(CommandError) as info:
        stream_image(str(garbage), dest, sha256=digest, size=garbage.stat().st_size)
    assert info.value.argv[0] == "zstd"
    assert "unsupported format" in info.value.stderr


def test_failing_tar_stage_is_reported(tmp_path):
    require_root()
    not_a_tar = subprocess.run(["zstd", "-q", "-c"], input=b"\x01" * 4096 * 10, capture_output=True,
                               check=True).stdout
    path = tmp_path / "not-a-tar.tar.zst"
    path.write_bytes(not_a_tar)
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(CommandError) as info:
        stream_image(str(path), dest, sha256=hashlib.sha256(not_a_tar).hexdigest())
    assert info.value.argv[0] == "tar"


def test_missing_image_and_bad_target_are_clear_errors(stream_test_image, file_server, tmp_path):
    with pytest.raises(OperationFailed, match="cannot read image"):
        stream_image(str(tmp_path / "nope.tar.zst"), tmp_path, sha256="00")
    with pytest.raises(OperationFailed, match="not a directory"):
        stream_image(str(stream_test_image.path), tmp_path / "missing", sha256="00")
    with pytest.raises(OperationFailed, match="HTTP 404"):
        stream_image(f"{file_server.base_url}/absent", tmp_path, sha256="00", retry=FAST_RETRY)
    with pytest.raises(OperationFailed, match="unsupported image source"):
        stream_image("ftp://host/x.tar.zst", tmp_path, sha256="00")


def test_unreachable_server_gives_up_after_bounded_retries(tmp_path):
    import socket
    with socket.socket() as s:  # a port with nobody listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    retry = RetryPolicy(attempts=3, backoff=0.01, deadline=30, connect_timeout=1)
    with pytest.raises(OperationFailed, match="after 4 attempt"):
        stream_image(f"http://127.0.0.1:{port}/img.tar.zst", tmp_path, sha256="00", retry=retry)


def _our_children() -> list[str]:
    """Names of live (not zombie) child processes of this test process."""
    import os
    children = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line)
        except OSError:
            continue
        if fields.get("PPid", "").strip() == str(os.getpid()):
            children.append(f"{fields['Name'].strip()} ({fields['State'].strip()})")
    return children


def test_ctrl_c_mid_stream_leaves_no_pipeline_process(stream_test_image, file_server, tmp_path):
    require_root()
    url = file_server.serve("img.tar.zst", stream_test_image.path)

    def interrupt(done, total):
        if done > 1_000_000:
            assert any(c.startswith(("zstd", "tar")) for c in _our_children())  # the pipeline is running
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _stream(url, tmp_path, stream_test_image, progress=interrupt)
    assert _our_children() == []


def test_download_giving_up_mid_stream_leaves_no_pipeline_process(stream_test_image, file_server, tmp_path):
    require_root()
    url = file_server.serve("img.tar.zst", stream_test_image.path)
    for _ in range(FAST_RETRY.attempts + 1):  # the same byte fails every time: retries run out
        file_server.fault("img.tar.zst", Fault(at=800_000))
    with pytest.raises(OperationFailed, match="failed at byte 800000 after 5 attempt"):
        _stream(url, tmp_path, stream_test_image)
    assert _our_children() == []

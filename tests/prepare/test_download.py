"""Download, retries, mirrors, checksum policy and safe unpacking, against a real HTTP server on
127.0.0.1."""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import io
import json
import logging
import random
import re
import stat
import subprocess
import tarfile
import threading
import time
import zipfile
from pathlib import Path

import pytest
import yaml

from uniav.config import ManifestEntry
from uniav.prepare.archives import is_unpack_complete, list_archive, marker_path, unpack_archive
from uniav.prepare.download import (
    LOCK_FILE_NAME,
    DownloadError,
    MissingSourceError,
    UnknownChecksumError,
    download_entry,
    download_manifest,
    unpack_target,
)
from uniav.errors import ChecksumError, ConfigError, InputError

REPO_ROOT = Path(__file__).resolve().parents[2]
UNIAV = REPO_ROOT / ".venv" / "bin" / "uniav"
FAST = dict(retries=3, backoff=0.0, timeout=5.0, progress=False)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def payload(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


def entry(name: str, url: str, dest: str, sha256: str | None = None, unpack: bool = False,
          description: str = "", mirrors: tuple[str, ...] = ()) -> ManifestEntry:
    return ManifestEntry(name=name, url=url, dest=dest, sha256=sha256, unpack=unpack,
                         description=description, mirrors=list(mirrors))


# --------------------------------------------------------------------------------------------
# A loopback HTTP server with scripted misbehaviour (and Range support, which the client must
# not use: it never resumes)
# --------------------------------------------------------------------------------------------

@dataclasses.dataclass
class Served:
    """One file the test server serves, and how it misbehaves."""

    body: bytes
    etag: str | None = '"v1"'
    last_modified: str | None = None
    ignore_range: bool = False       # always answer 200 with the whole body
    drop_after: int | None = None    # send this many body bytes, then hang up ...
    drop_times: int = 1              # ... in this many responses
    fail_first: int = 0              # answer fail_status to this many requests first
    fail_status: int = 500
    retry_after: str | None = None   # Retry-After header of those failures
    status: int = 200                # e.g. 404


@dataclasses.dataclass
class Seen:
    path: str
    headers: dict[str, str]
    status: int = 0


class ServerState:
    def __init__(self, base: str):
        self.base = base
        self.files: dict[str, Served] = {}
        self.requests: list[Seen] = []

    def serve(self, path: str, served: Served) -> str:
        self.files[path] = served
        return self.base + path


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # keep the test output quiet
        pass

    def do_GET(self):
        state: ServerState = self.server.state
        seen = Seen(self.path, dict(self.headers))
        state.requests.append(seen)
        served = state.files.get(self.path)
        if served is None or served.status != 200:
            seen.status = 404 if served is None else served.status
            self._reply_empty(seen.status)
            return
        if served.fail_first > 0:
            served.fail_first -= 1
            seen.status = served.fail_status
            self._reply_empty(served.fail_status, served.retry_after)
            return
        body = served.body
        validator = served.etag or served.last_modified
        range_header = self.headers.get("Range")
        if_range = self.headers.get("If-Range")
        start = 0
        if range_header and not served.ignore_range and (if_range is None or if_range == validator):
            start = int(re.fullmatch(r"bytes=(\d+)-", range_header).group(1))
            if start >= len(body):
                seen.status = 416
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            seen.status = 206
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            seen.status = 200
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.send_header("Accept-Ranges", "bytes")
        if served.etag:
            self.send_header("ETag", served.etag)
        if served.last_modified:
            self.send_header("Last-Modified", served.last_modified)
        self.end_headers()
        remaining = body[start:]
        if served.drop_after is not None and served.drop_times > 0:
            served.drop_times -= 1
            self.wfile.write(remaining[:served.drop_after])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(remaining)

    def _reply_empty(self, status: int, retry_after: str | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Length", "0")
        if retry_after is not None:
            self.send_header("Retry-After", retry_after)
        self.end_headers()


@pytest.fixture
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    host, port = httpd.server_address[:2]
    httpd.state = ServerState(f"http://{host}:{port}")
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd.state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


# --------------------------------------------------------------------------------------------
# HTTP download and retries (no resume: a cut transfer restarts from zero)
# --------------------------------------------------------------------------------------------

def test_http_download_verifies_and_places_file(server, tmp_path):
    body = payload(150_000)
    url = server.serve("/data/a.bin", Served(body))
    result = download_entry(entry("a", url, "sub/a.bin", sha(body)), tmp_path, **FAST)
    dest = tmp_path / "sub" / "a.bin"
    assert dest.read_bytes() == body
    assert (result.action, result.sha256, result.path, result.source) == (
        "downloaded", sha(body), dest, url)
    assert [s.status for s in server.requests] == [200]
    assert "Range" not in server.requests[0].headers
    assert sorted(p.name for p in dest.parent.iterdir()) == ["a.bin"]  # no .part left


def test_connection_drop_restarts_the_transfer_from_zero(server, tmp_path):
    body = payload(200_000, seed=1)
    url = server.serve("/big.bin", Served(body, drop_after=70_000))
    download_entry(entry("big", url, "big.bin", sha(body)), tmp_path, **FAST)
    assert (tmp_path / "big.bin").read_bytes() == body
    assert [s.status for s in server.requests] == [200, 200]
    assert all("Range" not in s.headers for s in server.requests)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.bin"]


def test_connection_drops_until_the_last_retry_leave_nothing_behind(server, tmp_path):
    body = payload(50_000, seed=2)
    url = server.serve("/cut.bin", Served(body, drop_after=1_000, drop_times=100))
    with pytest.raises(DownloadError, match="after 2 attempts.*connection lost") as caught:
        download_entry(entry("cut", url, "cut.bin", sha(body)), tmp_path,
                       **{**FAST, "retries": 1})
    assert caught.value.file == str(tmp_path / "cut.bin")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("pin_unknown", [False, True])
def test_a_part_file_left_by_an_earlier_run_is_overwritten_not_resumed(server, tmp_path,
                                                                        pin_unknown):
    body = payload(120_000, seed=3)
    (tmp_path / "r.bin.part").write_bytes(b"spliced?" * 6_000)
    url = server.serve("/r.bin", Served(body))
    download_entry(entry("r", url, "r.bin", None if pin_unknown else sha(body)), tmp_path,
                   pin_unknown=pin_unknown, **FAST)
    assert (tmp_path / "r.bin").read_bytes() == body
    assert len(server.requests) == 1 and "Range" not in server.requests[0].headers
    assert not (tmp_path / "r.bin.part").exists()


def test_retries_server_errors_then_succeeds(server, tmp_path):
    body = payload(10_000, seed=6)
    url = server.serve("/flaky.bin", Served(body, fail_first=2))
    download_entry(entry("flaky", url, "flaky.bin", sha(body)), tmp_path, **FAST)
    assert (tmp_path / "flaky.bin").read_bytes() == body
    assert [s.status for s in server.requests] == [500, 500, 200]


def test_transient_503_is_retried_and_retry_after_is_capped(server, tmp_path):
    body = payload(10_000, seed=16)
    url = server.serve("/busy.bin", Served(body, fail_first=2, fail_status=503,
                                           retry_after="3600"))
    started = time.monotonic()
    download_entry(entry("busy", url, "busy.bin", sha(body)), tmp_path,
                   **{**FAST, "max_backoff": 0.05})
    assert time.monotonic() - started < 10  # an hour's Retry-After was capped at max_backoff
    assert (tmp_path / "busy.bin").read_bytes() == body
    assert [s.status for s in server.requests] == [503, 503, 200]


def test_gives_up_after_the_last_retry(server, tmp_path):
    url = server.serve("/down.bin", Served(b"x", fail_first=100))
    with pytest.raises(DownloadError, match="after 3 attempts: HTTP 500") as caught:
        download_entry(entry("down", url, "down.bin", sha(b"x")), tmp_path,
                       **{**FAST, "retries": 2})
    assert "'down'" in str(caught.value) and url in str(caught.value)
    assert caught.value.file == str(tmp_path / "down.bin")
    assert len(server.requests) == 3
    assert not (tmp_path / "down.bin").exists()


def test_client_error_is_not_retried(server, tmp_path):
    url = server.serve("/gone.bin", Served(b"", status=404))
    with pytest.raises(DownloadError, match="HTTP 404"):
        download_entry(entry("gone", url, "gone.bin", sha(b"")), tmp_path, **FAST)
    assert len(server.requests) == 1


def test_connection_refused_is_retried_then_reported(tmp_path):
    probe = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    port = probe.server_address[1]
    probe.server_close()  # nothing listens on this port any more
    with pytest.raises(DownloadError, match="after 2 attempts"):
        download_entry(entry("nobody", f"http://127.0.0.1:{port}/f", "f", sha(b"")), tmp_path,
                       **{**FAST, "retries": 1})


# --------------------------------------------------------------------------------------------
# Checksums
# --------------------------------------------------------------------------------------------

def test_checksum_mismatch_discards_download_and_keeps_previous_good_file(server, tmp_path):
    previous = b"previous good copy"
    expected_new = payload(20_000, seed=7)
    tampered = payload(20_000, seed=8)
    dest = tmp_path / "f.bin"
    dest.write_bytes(previous)
    url = server.serve("/f.bin", Served(tampered))
    with pytest.raises(ChecksumError) as caught:
        download_entry(entry("f", url, "f.bin", sha(expected_new)), tmp_path, **FAST)
    message = str(caught.value)
    assert sha(expected_new) in message and sha(tampered) in message and str(dest) in message
    assert caught.value.file == str(dest)
    assert dest.read_bytes() == previous
    assert not list(tmp_path.glob("f.bin.part*"))


def test_present_file_with_right_checksum_is_not_fetched(server, tmp_path):
    body = payload(5_000, seed=9)
    (tmp_path / "p.bin").write_bytes(body)
    url = server.serve("/p.bin", Served(body))
    result = download_entry(entry("p", url, "p.bin", sha(body)), tmp_path, **FAST)
    assert result.action == "present"
    assert server.requests == []


def test_unknown_checksum_is_refused_without_any_request(server, tmp_path):
    url = server.serve("/u.bin", Served(b"unverified"))
    with pytest.raises(UnknownChecksumError, match="--pin-unknown-checksums") as caught:
        download_entry(entry("u", url, "u.bin"), tmp_path, **FAST)
    assert "sha256sum" in str(caught.value)
    assert server.requests == []
    assert not (tmp_path / "u.bin").exists()


def test_pinning_records_the_hash_and_later_runs_verify_it(server, tmp_path):
    body = payload(12_000, seed=10)
    url = server.serve("/pin.bin", Served(body))
    manifest_entry = entry("pin", url, "pin.bin")

    first = download_entry(manifest_entry, tmp_path, pin_unknown=True, **FAST)
    assert first.pinned and first.action == "downloaded"
    lock = json.loads((tmp_path / LOCK_FILE_NAME).read_text())
    assert lock["entries"]["pin"]["sha256"] == sha(body)
    assert lock["entries"]["pin"]["url"] == url

    again = download_entry(manifest_entry, tmp_path, **FAST)  # no flag needed any more
    assert (again.action, again.pinned) == ("present", False)
    assert len(server.requests) == 1

    server.files["/pin.bin"].body = payload(12_000, seed=11)  # the upstream file changes
    (tmp_path / "pin.bin").unlink()
    with pytest.raises(ChecksumError, match=sha(body)):
        download_entry(manifest_entry, tmp_path, pin_unknown=True, **FAST)
    assert not (tmp_path / "pin.bin").exists()
    assert json.loads((tmp_path / LOCK_FILE_NAME).read_text())["entries"]["pin"]["sha256"] == sha(body)


def test_manifest_refuses_all_unpinned_entries_before_fetching_any(server, tmp_path):
    body = payload(1_000)
    pinned = entry("pinned", server.serve("/ok", Served(body)), "ok", sha(body))
    unpinned = [entry(f"u{i}", server.serve(f"/u{i}", Served(b"?")), f"u{i}") for i in range(2)]
    with pytest.raises(UnknownChecksumError) as caught:
        download_manifest([pinned, *unpinned], tmp_path, **FAST)
    assert "u0" in str(caught.value) and "u1" in str(caught.value)
    assert server.requests == []


# --------------------------------------------------------------------------------------------
# Local sources (hand-downloaded files)
# --------------------------------------------------------------------------------------------

def test_file_url_and_local_paths(tmp_path):
    body = payload(7_000, seed=13)
    outside = tmp_path / "browser-downloads" / "file.bin"
    outside.parent.mkdir()
    outside.write_bytes(body)
    root = tmp_path / "root"
    (root / "downloads").mkdir(parents=True)
    (root / "downloads" / "rel.bin").write_bytes(body)
    entries = [
        entry("uri", outside.as_uri(), "a/uri.bin", sha(body)),
        entry("absolute", str(outside), "a/abs.bin", sha(body)),
        entry("relative", "downloads/rel.bin", "a/rel.bin", sha(body)),  # relative to the root
    ]
    results = download_manifest(entries, root, **FAST)
    assert [r.action for r in results] == ["copied"] * 3
    for name in ("uri.bin", "abs.bin", "rel.bin"):
        assert (root / "a" / name).read_bytes() == body
    assert outside.read_bytes() == body


def test_local_source_with_wrong_checksum_is_not_placed(tmp_path):
    (tmp_path / "wrong.bin").write_bytes(b"not what the manifest says")
    with pytest.raises(ChecksumError):
        download_entry(entry("w", "wrong.bin", "placed/w.bin", sha(b"expected")), tmp_path, **FAST)
    assert not (tmp_path / "placed" / "w.bin").exists()
    assert (tmp_path / "wrong.bin").read_bytes() == b"not what the manifest says"


def test_missing_hand_downloaded_file_says_where_to_put_it(tmp_path):
    manual = entry("feats", "downloads/ds/feats.tar.gz", "ds/feats.tar.gz", sha(b"x"), unpack=True,
                   description="from https://pan.example/s/abc (pass code 1234)")
    other = entry("ann", "downloads/ds/ann.json", "ds/ann.json", sha(b"y"))
    with pytest.raises(MissingSourceError) as caught:
        download_manifest([manual, other], tmp_path, **FAST)
    message = str(caught.value)
    assert "2 hand-downloaded files are missing" in message
    assert str(tmp_path / "downloads" / "ds" / "feats.tar.gz") in message
    assert "pass code 1234" in message
    assert not (tmp_path / "ds").exists()


def test_file_dropped_at_dest_is_used_in_place(tmp_path):
    body = payload(3_000, seed=14)
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "ann.json").write_bytes(body)
    result = download_entry(entry("ann", "ds/ann.json", "ds/ann.json", sha(body)), tmp_path, **FAST)
    assert result.action == "present"


# --------------------------------------------------------------------------------------------
# Mirrors: url first, then each mirror; a wrong file is an error, not a reason to try the next
# --------------------------------------------------------------------------------------------

def test_a_present_local_source_wins_over_the_mirror(server, tmp_path):
    body = payload(4_000, seed=17)
    (tmp_path / "downloads").mkdir()
    (tmp_path / "downloads" / "p.npy").write_bytes(body)
    mirror = server.serve("/p.npy", Served(body))
    result = download_entry(entry("p", "downloads/p.npy", "ds/p.npy", sha(body),
                                  mirrors=(mirror,)), tmp_path, **FAST)
    assert (result.action, result.source) == ("copied", "downloads/p.npy")
    assert server.requests == []


def test_a_missing_local_source_falls_back_to_the_mirror(server, tmp_path, caplog):
    body = payload(6_000, seed=18)
    mirror = server.serve("/p.npy", Served(body))
    manifest_entry = entry("p", "downloads/p.npy", "ds/p.npy", mirrors=(mirror,))
    with caplog.at_level(logging.INFO, logger="uniav.prepare.download"):
        result = download_entry(manifest_entry, tmp_path, pin_unknown=True, **FAST)
    assert (result.action, result.source, result.pinned) == ("downloaded", mirror, True)
    assert (tmp_path / "ds" / "p.npy").read_bytes() == body
    assert any(mirror in record.getMessage() and "ds/p.npy" in record.getMessage()
               for record in caplog.records)  # the log says which source was used
    lock = json.loads((tmp_path / LOCK_FILE_NAME).read_text())
    assert lock["entries"]["p"]["url"] == mirror


def test_a_failed_download_falls_back_to_the_next_mirror(server, tmp_path):
    body = payload(3_000, seed=19)
    gone = server.serve("/gone.npy", Served(b"", status=404))
    good = server.serve("/good.npy", Served(body))
    result = download_entry(entry("p", gone, "p.npy", sha(body), mirrors=(good,)), tmp_path,
                            **FAST)
    assert result.source == good
    assert [(s.path, s.status) for s in server.requests] == [("/gone.npy", 404),
                                                            ("/good.npy", 200)]


def test_a_checksum_mismatch_of_the_first_source_is_an_error_not_a_fall_through(server,
                                                                               tmp_path):
    right = payload(5_000, seed=20)
    (tmp_path / "downloads").mkdir()
    (tmp_path / "downloads" / "p.npy").write_bytes(b"a different file")
    mirror = server.serve("/p.npy", Served(right))
    with pytest.raises(ChecksumError) as caught:
        download_entry(entry("p", "downloads/p.npy", "ds/p.npy", sha(right), mirrors=(mirror,)),
                       tmp_path, **FAST)
    message = str(caught.value)
    assert "'p'" in message and "downloads/p.npy" in message and sha(right) in message
    assert "next sources were not tried" in message
    assert caught.value.file == str(tmp_path / "ds" / "p.npy")
    assert server.requests == []
    assert not (tmp_path / "ds" / "p.npy").exists() and not list(tmp_path.glob("ds/*.part"))


def test_a_mismatch_from_a_mirror_is_an_error_too(server, tmp_path):
    right = payload(5_000, seed=21)
    first = server.serve("/first.npy", Served(b"", status=404))
    wrong = server.serve("/wrong.npy", Served(payload(5_000, seed=22)))
    never = server.serve("/never.npy", Served(right))
    with pytest.raises(ChecksumError, match="/wrong.npy"):
        download_entry(entry("p", first, "p.npy", sha(right), mirrors=(wrong, never)), tmp_path,
                       **FAST)
    assert [s.path for s in server.requests] == ["/first.npy", "/wrong.npy"]


def test_when_no_source_works_the_missing_file_and_the_mirror_errors_are_reported(server,
                                                                                tmp_path):
    body = payload(1_000, seed=23)
    mirror = server.serve("/p.npy", Served(b"", status=404))
    (tmp_path / "other.bin").write_bytes(body)
    entries = [entry("p", "downloads/p.npy", "ds/p.npy", sha(b"?"), mirrors=(mirror,)),
               entry("other", "other.bin", "ds/other.bin", sha(body))]
    with pytest.raises(MissingSourceError) as caught:
        download_manifest(entries, tmp_path, **FAST)
    message = str(caught.value)
    assert str(tmp_path / "downloads" / "p.npy") in message
    assert mirror in message and "HTTP 404" in message
    assert (tmp_path / "ds" / "other.bin").read_bytes() == body  # the other entries went on

    both_http = entry("q", server.serve("/q1", Served(b"", status=404)), "q",
                      sha(b"?"), mirrors=(server.serve("/q2", Served(b"", status=403)),))
    with pytest.raises(DownloadError, match="every source failed") as caught:
        download_entry(both_http, tmp_path, **FAST)
    assert "/q1" in str(caught.value) and "HTTP 403" in str(caught.value)


# --------------------------------------------------------------------------------------------
# Manifest validation
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("bad, match", [
    (entry("up", "x", "../outside.bin", sha(b"")), "inside the root"),
    (entry("abs", "x", "/etc/passwd", sha(b"")), "inside the root"),
    (entry("ftp", "ftp://host/x", "x", sha(b"")), "unsupported URL scheme"),
    (entry("mirror", "x", "x", sha(b""), mirrors=("ftp://host/x",)), "unsupported URL scheme"),
    (entry("hex", "x", "x", "not-a-hash"), "64 hex"),
    (entry("arch", "x", "x.rar", sha(b""), unpack=True), "archive name"),
])
def test_invalid_entries_are_config_errors(tmp_path, bad, match):
    with pytest.raises(ConfigError, match=match):
        download_manifest([bad], tmp_path, **FAST)


def test_only_selects_entries_and_rejects_unknown_names(tmp_path):
    body = b"selected"
    (tmp_path / "src").write_bytes(body)
    entries = [entry("a", "src", "a", sha(body)), entry("b", "missing-source", "b", sha(b"?"))]
    assert [r.name for r in download_manifest(entries, tmp_path, only=["a"], **FAST)] == ["a"]
    with pytest.raises(ConfigError, match="unknown manifest entry 'c'"):
        download_manifest(entries, tmp_path, only=["c"], **FAST)
    with pytest.raises(ConfigError, match="used twice"):
        download_manifest([entries[0], entries[0]], tmp_path, **FAST)


# --------------------------------------------------------------------------------------------
# Unpacking
# --------------------------------------------------------------------------------------------

def make_tar(path: Path, files: dict[str, bytes], mode: str = "w:gz") -> bytes:
    with tarfile.open(path, mode) as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path.read_bytes()


def make_zip(path: Path, files: dict[str, bytes], compression=zipfile.ZIP_DEFLATED) -> bytes:
    with zipfile.ZipFile(path, "w", compression) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return path.read_bytes()


def no_work_dirs(directory: Path) -> bool:
    return not [p for p in directory.iterdir() if ".unpack-" in p.name]


def test_unpack_tar_gz_drops_a_lone_top_directory_and_is_not_repeated(tmp_path):
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    files = {"features/v1_audio.npy": b"a1", "features/sub/v2_audio.npy": b"a2"}
    archive_bytes = make_tar(downloads / "feats.tar.gz", files)
    manifest_entry = entry("feats", "downloads/feats.tar.gz", "ds/av_features.tar.gz",
                           sha(archive_bytes), unpack=True)

    result = download_entry(manifest_entry, tmp_path, **FAST)
    target = tmp_path / "ds" / "av_features"
    assert (result.unpacked_to, result.unpack_action) == (target, "unpacked")
    assert (target / "v1_audio.npy").read_bytes() == b"a1"
    assert (target / "sub" / "v2_audio.npy").read_bytes() == b"a2"
    marker = json.loads(marker_path(tmp_path / "ds" / "av_features.tar.gz").read_text())
    assert marker["archive_sha256"] == sha(archive_bytes)
    assert marker["files"] == ["sub/v2_audio.npy", "v1_audio.npy"]
    assert marker["stripped_top_directory"] == "features"

    again = download_entry(manifest_entry, tmp_path, **FAST)
    assert again.unpack_action == "already unpacked"

    # the archive and its source may be deleted: the completed unpack is recognised by its marker
    (tmp_path / "ds" / "av_features.tar.gz").unlink()
    (downloads / "feats.tar.gz").unlink()
    assert download_entry(manifest_entry, tmp_path, **FAST).action == "unpacked earlier"

    # a file of the unpack goes missing: the unpack is no longer complete
    (target / "v1_audio.npy").unlink()
    assert not is_unpack_complete(tmp_path / "ds" / "av_features.tar.gz", target, sha(archive_bytes))


def test_unpack_zip(tmp_path):
    archive_bytes = make_zip(tmp_path / "ann.zip", {"a.json": b"{}", "b/c.json": b"[]"})
    result = download_entry(entry("ann", "ann.zip", "ds/annotations.zip", sha(archive_bytes),
                                  unpack=True), tmp_path, **FAST)
    assert result.unpacked_to == tmp_path / "ds" / "annotations"
    assert (result.unpacked_to / "a.json").read_bytes() == b"{}"
    assert (result.unpacked_to / "b" / "c.json").read_bytes() == b"[]"


@pytest.mark.parametrize("mode, suffix", [("w", ".tar"), ("w:bz2", ".tar.bz2"),
                                          ("w:xz", ".tar.xz")])
def test_unpack_other_tar_compressions(tmp_path, mode, suffix):
    archive = tmp_path / f"d{suffix}"
    make_tar(archive, {"one.txt": b"1", "two.txt": b"2"}, mode)
    assert unpack_archive(archive, tmp_path / "d") == ["one.txt", "two.txt"]


def test_archives_sharing_a_target_are_merged_and_a_new_version_replaces_its_files(tmp_path):
    audio_v1 = make_tar(tmp_path / "audio.tar.gz", {"feats/x_audio.npy": b"ax",
                                                      "feats/old_audio.npy": b"old"})
    visual = make_zip(tmp_path / "visual.zip", {"feats/x_visual.npy": b"vx"})
    audio_entry = entry("audio", "audio.tar.gz", "ds/av_features.audio.tar.gz", sha(audio_v1),
                        unpack=True)
    visual_entry = entry("visual", "visual.zip", "ds/av_features.visual.zip", sha(visual),
                         unpack=True)
    download_manifest([audio_entry, visual_entry], tmp_path, **FAST)
    target = tmp_path / "ds" / "av_features"
    assert unpack_target(tmp_path / "ds" / "av_features.audio.tar.gz") == target
    assert sorted(p.name for p in target.iterdir()) == ["old_audio.npy", "x_audio.npy",
                                                       "x_visual.npy"]

    # a new version of the audio archive: its old files go, the visual archive's files stay
    audio_v2 = make_tar(tmp_path / "audio.tar.gz", {"feats/x_audio.npy": b"ax2"})
    audio_entry = dataclasses.replace(audio_entry, sha256=sha(audio_v2))
    result = download_entry(audio_entry, tmp_path, **FAST)
    assert result.unpack_action == "unpacked"
    assert sorted(p.name for p in target.iterdir()) == ["x_audio.npy", "x_visual.npy"]
    assert (target / "x_audio.npy").read_bytes() == b"ax2"
    assert is_unpack_complete(tmp_path / "ds" / "av_features.visual.zip", target, sha(visual))
    assert no_work_dirs(tmp_path / "ds")


def _tar_with(path: Path, evil: tarfile.TarInfo, evil_data: bytes = b"") -> None:
    with tarfile.open(path, "w:gz") as archive:
        good = tarfile.TarInfo("good.txt")  # comes first: must not be extracted either
        good.size = 4
        archive.addfile(good, io.BytesIO(b"good"))
        evil.size = len(evil_data) if evil.isreg() else 0
        archive.addfile(evil, io.BytesIO(evil_data) if evil.isreg() else None)


def _member(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info


@pytest.mark.parametrize("evil, why", [
    (_member("../evil.txt"), "'..' path component"),
    (_member("sub/../../evil.txt"), "'..' path component"),
    (_member("/tmp/evil.txt"), "absolute path"),
    (_member("link", tarfile.SYMTYPE, "/etc/passwd"), "symbolic link"),
    (_member("innocent-link", tarfile.SYMTYPE, "good.txt"), "symbolic link"),
    (_member("hard", tarfile.LNKTYPE, "good.txt"), "hard link"),
    (_member("dev", tarfile.CHRTYPE), "device file"),
    (_member("pipe", tarfile.FIFOTYPE), "FIFO"),
    (_member("dir\\..\\evil.txt"), "backslash"),
])
def test_malicious_tar_is_rejected_before_anything_is_extracted(tmp_path, evil, why):
    archive = tmp_path / "evil.tar.gz"
    _tar_with(archive, evil, b"evil")
    target = tmp_path / "out" / "target"
    with pytest.raises(InputError) as caught:
        unpack_archive(archive, target)
    message = str(caught.value)
    assert why in message and str(archive) in message and repr(evil.name) in message
    assert caught.value.field == evil.name
    assert not target.exists()
    assert not (tmp_path / "evil.txt").exists()
    assert no_work_dirs(tmp_path / "out")
    assert not marker_path(archive).exists()
    with pytest.raises(InputError):
        list_archive(archive)


def _zip_with(path: Path, evil: zipfile.ZipInfo) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("good.txt", b"good")
        archive.writestr(evil, b"evil")


def _zip_member(name: str, mode: int | None = None) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    if mode is not None:
        info.external_attr = mode << 16
    return info


@pytest.mark.parametrize("evil, why", [
    (_zip_member("../evil.txt"), "'..' path component"),
    (_zip_member("/abs/evil.txt"), "absolute path"),
    (_zip_member("C:/evil.txt"), "absolute path"),
    (_zip_member("link", stat.S_IFLNK | 0o777), "symbolic link"),
    (_zip_member("fifo", stat.S_IFIFO | 0o644), "special file"),
])
def test_malicious_zip_is_rejected_before_anything_is_extracted(tmp_path, evil, why):
    archive = tmp_path / "evil.zip"
    _zip_with(archive, evil)
    target = tmp_path / "out" / "target"
    with pytest.raises(InputError) as caught:
        unpack_archive(archive, target)
    assert why in str(caught.value) and str(archive) in str(caught.value)
    assert caught.value.field == evil.filename
    assert not target.exists()
    assert no_work_dirs(tmp_path / "out")


def test_member_conflicting_with_a_file_is_rejected(tmp_path):
    archive = tmp_path / "conflict.tar"
    make_tar(archive, {"a": b"file", "a/b": b"needs a to be a directory"}, "w")
    with pytest.raises(InputError, match="needs it to be a directory"):
        unpack_archive(archive, tmp_path / "conflict")


def test_interrupted_unpack_leaves_the_target_as_it_was(tmp_path):
    target = tmp_path / "ds" / "av_features"
    target.mkdir(parents=True)
    (target / "keep.npy").write_bytes(b"from another archive")
    archive = tmp_path / "ds" / "av_features.broken.zip"
    data_b = b"B" * 4_000
    make_zip(archive, {"a.npy": b"A" * 4_000, "b.npy": data_b}, zipfile.ZIP_STORED)
    raw = bytearray(archive.read_bytes())
    position = raw.find(data_b)
    raw[position + 100] ^= 0xFF  # corrupt the second member's data: its CRC check fails mid-unpack
    archive.write_bytes(bytes(raw))

    assert [m.name for m in list_archive(archive)] == ["a.npy", "b.npy"]  # validation passes
    with pytest.raises(InputError, match="left unchanged"):
        unpack_archive(archive, target)
    assert sorted(p.name for p in target.iterdir()) == ["keep.npy"]
    assert (target / "keep.npy").read_bytes() == b"from another archive"
    assert not marker_path(archive).exists()
    assert no_work_dirs(tmp_path / "ds")


def test_work_dir_left_by_a_killed_unpack_is_cleaned_and_a_moved_target_restored(tmp_path):
    ds = tmp_path / "ds"
    stale = ds / ".av_features.unpack-killed"
    (stale / "previous").mkdir(parents=True)
    (stale / "previous" / "keep.npy").write_bytes(b"kept")  # the target, moved aside when killed
    archive = ds / "av_features.new.tar"
    make_tar(archive, {"new.npy": b"new"}, "w")
    unpack_archive(archive, ds / "av_features")
    assert sorted(p.name for p in (ds / "av_features").iterdir()) == ["keep.npy", "new.npy"]
    assert no_work_dirs(ds)


# --------------------------------------------------------------------------------------------
# The command line, end to end
# --------------------------------------------------------------------------------------------

def write_params(path: Path, manifest: list[dict], root: Path) -> Path:
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    params["datasets"]["paper"]["manifest"] = manifest
    params["datasets"]["paper"]["root"] = str(root)
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(UNIAV), "download", "--no-progress", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_cli_downloads_verifies_unpacks_and_pins(server, tmp_path):
    body = payload(50_000, seed=15)
    url = server.serve("/prompt.npy", Served(body, drop_after=20_000))
    archive_bytes = make_tar(tmp_path / "feats.tar.gz", {"av/v_1_audio.npy": b"1"})
    manifest = [
        {"name": "prompt", "url": url, "dest": "ds/prompt.npy", "sha256": sha(body)},
        {"name": "feats", "url": str(tmp_path / "feats.tar.gz"), "dest": "ds/av_features.tar.gz",
         "sha256": sha(archive_bytes), "unpack": True},
        {"name": "unpinned", "url": server.serve("/u.json", Served(b"{}")), "dest": "ds/u.json"},
    ]
    root = tmp_path / "root"
    config = write_params(tmp_path / "params.yaml", manifest, root)

    refused = run_cli("--config", str(config), cwd=tmp_path)
    assert refused.returncode == 2
    assert "--pin-unknown-checksums" in refused.stderr and "unpinned" in refused.stderr
    assert server.requests == []

    done = run_cli("--config", str(config), "--only", "prompt", "feats", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (root / "ds" / "prompt.npy").read_bytes() == body
    assert (root / "ds" / "av_features" / "v_1_audio.npy").read_bytes() == b"1"
    assert [s.status for s in server.requests] == [200, 200]  # cut once, fetched again whole
    assert all("Range" not in s.headers for s in server.requests)
    assert "2 manifest entries in place" in done.stdout

    other_root = tmp_path / "other-root"
    pinned = run_cli("--config", str(config), "--root", str(other_root), "--only", "unpinned",
                     "--pin-unknown-checksums", cwd=tmp_path)
    assert pinned.returncode == 0, pinned.stderr
    lock = json.loads((other_root / LOCK_FILE_NAME).read_text())
    assert lock["entries"]["unpinned"]["sha256"] == sha(b"{}")
    assert not (root / "ds" / "u.json").exists()


def test_cli_with_an_empty_manifest_says_so(tmp_path):
    config = write_params(tmp_path / "params.yaml", [], tmp_path / "root")
    result = run_cli("--config", str(config), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "manifest is empty" in result.stdout
    assert not (tmp_path / "root").exists()

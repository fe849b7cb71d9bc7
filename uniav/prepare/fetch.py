"""Where a manifest entry's file comes from, and copying or downloading it into a temp file.

A source is an ``http(s)://`` URL, a ``file://`` URL or a plain local path (relative ones are
relative to the benchmark root) for files downloaded by hand from pages that cannot be scripted.
:func:`take_local` hard-links a local file to the temp file (copies it across file systems);
:func:`download_http` downloads a URL into it with ``requests``.  Both return the SHA-256 of what
they wrote; checking it and renaming the temp file onto its destination is the caller's job
(:mod:`uniav.prepare.download`).

HTTP guarantees: a connect/read timeout; connection errors, timeouts and the statuses 408, 429
and 5xx are retried with exponential back-off by ``urllib3``'s ``Retry`` (a server's
``Retry-After`` is honoured up to the back-off cap); a body cut short (``urllib3`` enforces the
``Content-Length``) restarts the transfer from zero, with the same back-off; other ``4xx`` fail at
once.  Proxies in ``http_proxy`` / ``https_proxy`` are used.

No resume (``Range`` requests): the only files fetched over HTTP are three prompt-embedding files
of at most ~1.2 MB each; the large archives are downloaded by hand and taken from local paths.
Restarting a cut transfer of such a file costs a second, and resume brought validators, a
sidecar file and a splice risk while pinning unknown checksums.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import os
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import MaxRetryError
from urllib3.util.retry import Retry

from uniav.config import ManifestEntry
from uniav.errors import ConfigError, InputError
from uniav.fileio import sha256_file

log = logging.getLogger(__name__)

USER_AGENT = f"uniav-download/0.1 (python-requests/{requests.__version__})"
#: HTTP statuses retried with back-off (all others but 200 fail at once).
RETRY_STATUSES = frozenset({408, 429, *range(500, 600)})
_CHUNK_SIZE = 1 << 20


class DownloadError(InputError):
    """A source could not be fetched (a client error, retries exhausted, or every source failed).

    Args:
        message: the whole message (naming the entry and the URL).
        file: the destination.
        reason: what went wrong with the source, without entry and URL (default: ``message``).
    """

    def __init__(self, message: str, *, file: str | Path | None = None, reason: str | None = None):
        super().__init__(message, file=file)
        self.reason = reason or message


def _failed(label: str, url: str, reason: str, dest: Path | None) -> DownloadError:
    return DownloadError(f"manifest entry {label!r}: {url}: {reason}", file=dest, reason=reason)


@dataclasses.dataclass(frozen=True)
class Source:
    """One place a manifest entry's file can come from.

    Attributes:
        kind: ``"http"`` or ``"local"``.
        url: as written in the manifest (``url`` or one of ``mirrors``).
        path: the local file, for ``kind == "local"`` (relative paths joined to the root).
    """

    kind: str
    url: str
    path: Path | None = None


@dataclasses.dataclass(frozen=True)
class TransferSettings:
    """How HTTP transfers are retried and shown.

    Attributes:
        retries: retries of a failed transfer (so ``retries + 1`` attempts at most).
        timeout: connect and read timeout in seconds.
        backoff: back-off factor in seconds (delays grow as ``backoff * 2**n``).
        max_backoff: cap of a delay, and of a server's ``Retry-After``.
        progress: show tqdm progress bars on stderr (``None``: only when stderr is a terminal).
    """

    retries: int = 5
    timeout: float = 60.0
    backoff: float = 1.0
    max_backoff: float = 60.0
    progress: bool | None = None


def resolve_sources(entry: ManifestEntry, root: str | Path) -> list[Source]:
    """The entry's sources in the order they are tried: ``url``, then each of ``mirrors``.

    Raises:
        ConfigError: an empty URL, an unsupported scheme, a remote or relative ``file://`` URL.
    """
    return [resolve_source(url, Path(root), entry_name=entry.name)
            for url in (entry.url, *entry.mirrors)]


def resolve_source(url: str, root: Path, *, entry_name: str) -> Source:
    """One source from a manifest URL (``http(s)://``, ``file://`` or a local path)."""
    url = url.strip()
    if not url:
        raise ConfigError(f"manifest entry {entry_name!r}: empty url")
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in ("http", "https"):
        return Source("http", url)
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise ConfigError(f"manifest entry {entry_name!r}: file URL {url!r} names a remote "
                              "host; only local files are supported")
        path = Path(urllib.request.url2pathname(parts.path))
        if not path.is_absolute():
            raise ConfigError(f"manifest entry {entry_name!r}: file URL {url!r} must hold an "
                              "absolute path (file:///abs/path)")
        return Source("local", url, path)
    if scheme == "" or (len(scheme) == 1 and os.name == "nt"):  # a plain path (C:\ on Windows)
        path = Path(url).expanduser()
        return Source("local", url, path if path.is_absolute() else root / path)
    raise ConfigError(f"manifest entry {entry_name!r}: unsupported URL scheme {parts.scheme!r} "
                      "(use http, https, file or a local path)")


def take_local(source: Path, part: Path, *, label: str, progress: bool | None = None) -> str:
    """Hard-link ``source`` to ``part`` (copy when linking is impossible); return its SHA-256."""
    part.unlink(missing_ok=True)
    try:
        os.link(source, part)
    except OSError:
        digest = hashlib.sha256()
        with open(source, "rb") as reader, open(part, "wb") as writer, \
                _progress_bar(label, source.stat().st_size, progress) as bar:
            while chunk := reader.read(_CHUNK_SIZE):
                writer.write(chunk)
                digest.update(chunk)
                bar.update(len(chunk))
        return digest.hexdigest()
    return sha256_file(part)


def download_http(url: str, part: Path, settings: TransferSettings, *, label: str,
                  dest: Path | None = None) -> str:
    """Download ``url`` into ``part`` (overwritten), retrying as the module docstring says.

    Args:
        url: the ``http(s)://`` URL.
        part: the temp file to write.
        settings: timeouts, retries, back-off and progress.
        label: the manifest entry's name (for messages and the progress bar).
        dest: the final destination, named in errors.

    Returns:
        The SHA-256 of the complete ``part``.

    Raises:
        DownloadError: a client error, or retries exhausted (naming the entry, URL and file).
    """
    attempts = max(settings.retries, 0) + 1
    with _session(settings) as session:
        for attempt in range(1, attempts + 1):
            try:
                return _get_into(session, url, part, settings, label, dest)
            except _BodyCut as exc:
                if attempt == attempts:
                    raise _failed(label, url, f"giving up after {attempts} attempts: {exc}",
                                  dest) from None
                delay = min(settings.backoff * 2 ** (attempt - 1), settings.max_backoff)
                log.warning("%s: %s (attempt %d of %d); restarting in %.1f s", label, exc,
                            attempt, attempts, delay)
                time.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


class _BodyCut(Exception):
    """The response body ended early or the connection broke while reading it."""


class _CappedRetry(Retry):
    """urllib3's ``Retry`` with a server's ``Retry-After`` capped at ``backoff_max``."""

    def get_retry_after(self, response):
        seconds = super().get_retry_after(response)
        return None if seconds is None else min(seconds, self.backoff_max)


def _session(settings: TransferSettings) -> requests.Session:
    retries = max(settings.retries, 0)
    retry = _CappedRetry(
        total=None, connect=retries, read=retries, status=retries, other=retries, redirect=10,
        backoff_factor=settings.backoff, backoff_max=settings.max_backoff,
        status_forcelist=RETRY_STATUSES, allowed_methods=frozenset({"GET"}),
        respect_retry_after_header=True, raise_on_status=False)
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=retry)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers.update({"User-Agent": USER_AGENT, "Accept-Encoding": "identity"})
    return session


def _get_into(session: requests.Session, url: str, part: Path, settings: TransferSettings,
              label: str, dest: Path | None) -> str:
    try:
        response = session.get(url, stream=True, timeout=settings.timeout)
    except (requests.ConnectionError, requests.Timeout) as exc:
        cause = exc.args[0] if exc.args else exc
        if isinstance(cause, MaxRetryError):
            raise _failed(label, url, f"giving up after {max(settings.retries, 0) + 1} attempts: "
                          f"{cause.reason}", dest) from None
        raise _failed(label, url, f"{type(exc).__name__}: {exc}", dest) from None
    except requests.RequestException as exc:
        raise _failed(label, url, f"{type(exc).__name__}: {exc}", dest) from None
    with response:
        status = response.status_code
        if status != 200:
            what = f"HTTP {status} {response.reason}"
            if status in RETRY_STATUSES:  # urllib3 retried it until the retries ran out
                history = response.raw.retries.history if response.raw.retries else ()
                what = f"giving up after {len(history) + 1} attempts: {what}"
            raise _failed(label, url, what, dest)
        length = response.headers.get("Content-Length")
        length = int(length) if length is not None and length.isdigit() else None
        digest = hashlib.sha256()
        with open(part, "wb") as handle, _progress_bar(label, length, settings.progress) as bar:
            try:
                for chunk in response.iter_content(_CHUNK_SIZE):
                    handle.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
            except requests.RequestException as exc:
                raise _BodyCut(f"connection lost while reading the body "
                               f"({type(exc).__name__}: {exc})") from None
            handle.flush()
            os.fsync(handle.fileno())
    return digest.hexdigest()  # a body shorter than its Content-Length raised above (urllib3)


@contextlib.contextmanager
def _progress_bar(label: str, total: int | None, progress: bool | None):
    from tqdm import tqdm

    bar = tqdm(total=total, desc=label, unit="B", unit_scale=True, unit_divisor=1024,
               file=sys.stderr, leave=False, disable=None if progress is None else not progress)
    try:
        yield bar
    finally:
        bar.close()

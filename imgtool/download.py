"""Fetching files over HTTP(S) into the store: streamed, timed out, verified, atomic.

Uses requests (proxies from the environment as requests honours them: HTTP(S)_PROXY,
NO_PROXY). A download goes to `tmp/<name>.<pid>.incomplete` and is renamed to its final
name only once whole (length as announced, size and checksum as pinned), so nothing that
looks cached is ever half-written.

Redirects are followed here, one hop at a time, so that Kaggle credentials
(KAGGLE_USERNAME + KAGGLE_KEY, HTTP Basic) go to kaggle.com hosts only and never to the
signed storage URL Kaggle redirects to, whatever requests' own redirect rules are."""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import tarfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin, urlsplit

from imgtool import settings, store, ui
from imgtool.errors import Call, DownloadError, ModelError, StorageError, first_line

CHUNK = 1 << 20
#: The slowest transfer accepted: a download that receives fewer than MIN_RATE bytes a
#: second, averaged over any IMGTOOL_TIMEOUT seconds, is dropped (a server trickling a
#: byte at a time never trips the read timeout alone).
MIN_RATE = 1024
#: Caps on what an archive may unpack to, checked on its headers before anything is
#: written: 4x the largest model expected (a ~250 MB SavedModel), and a member count no
#: model needs (a SavedModel has a few dozen files).
MAX_EXTRACT_BYTES = 1 << 30
MAX_MEMBERS = 10_000
RETRYABLE_STATUS = {429, 500, 502, 503, 504}
REDIRECT_STATUS = {301, 302, 303, 307, 308}
MAX_REDIRECTS = 10

#: Hosts that get Kaggle credentials: the name itself or any subdomain. An entry with a
#: port ("127.0.0.1:8080") matches that host:port exactly (tests point it at loopback).
KAGGLE_HOSTS: tuple[str, ...] = ("kaggle.com",)
#: Credentials never travel in clear text (tests add "http" for the loopback server).
CREDENTIAL_SCHEMES: tuple[str, ...] = ("https",)


def is_kaggle(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme not in CREDENTIAL_SCHEMES or not parts.hostname:
        return False
    host = parts.hostname.lower()
    for entry in KAGGLE_HOSTS:
        if ":" in entry:
            if parts.netloc.lower().rsplit("@", 1)[-1] == entry.lower():
                return True
        elif host == entry or host.endswith("." + entry):
            return True
    return False


def _auth_for(url: str) -> tuple[str, str] | None:
    return settings.current().kaggle_auth if is_kaggle(url) else None


@dataclass(frozen=True)
class Pinned:
    """One URL and what its bytes must be (None: not pinned)."""

    url: str
    sha256: str | None = None
    size: int | None = None


def _timeout() -> tuple[float, float]:
    t = settings.current().timeout
    return (min(t, 10.0), t)


def _attempts() -> int:
    return settings.current().retries


def hub_download_url(url: str) -> str:
    """tfhub.dev pages serve the model archive when asked for the compressed format."""
    if "tfhub.dev/" in url and "tf-hub-format" not in url:
        return url + ("&" if "?" in url else "?") + "tf-hub-format=compressed"
    return url


def fetch(urls: list[str] | tuple[str, ...], dest: Path, *, sha256: str | None = None, size: int | None = None,
          what: str = "") -> str:
    """Download the first URL that works to `dest`; return the URL used.

    Raises DownloadError with one line naming the URL and the problem."""
    if not urls:
        raise DownloadError(f"{what or dest.name}: no download URL is known; pass a local path instead")
    check_online(what, dest.name)
    errors: list[str] = []
    for url in urls:
        try:
            return fetch_url(Pinned(url, sha256, size), dest, what=what)
        except DownloadError as err:
            errors.append(str(err))
    raise DownloadError(failure_message(what or dest.name, len(urls), errors[-1]))


def failure_message(what: str, tried: int, last: str) -> str:
    return f"could not download {what}{f' (tried {tried} URLs; the last said)' if tried > 1 else ''}: {last}"


def check_online(what: str, dest_name: str = "") -> None:
    if store.offline():
        raise DownloadError(
            f"{what} is not in the cache and IMGTOOL_OFFLINE is set; "
            "run " + Call("download_model", what) + " with network access first" if what else
            f"{dest_name} is not in the cache and IMGTOOL_OFFLINE is set", model=what or None
        )


def fetch_url(pin: Pinned, dest: Path, *, what: str = "") -> str:
    """Download one URL to `dest` (retrying what is worth retrying); return the URL.
    DownloadError's message is "URL: problem", for the caller to put in context."""
    check_online(what, dest.name)
    import requests

    url = hub_download_url(pin.url)
    for attempt in range(_attempts()):
        try:
            _fetch_one(requests, url, dest, pin, what)
            return url
        except _Retryable as err:
            if attempt + 1 < _attempts():
                time.sleep(min(err.retry_after, 5.0))
                continue
            raise DownloadError(f"{url}: {err}") from None
    raise AssertionError("unreachable")  # pragma: no cover


class _Retryable(Exception):
    def __init__(self, msg: str, retry_after: float = 1.0):
        super().__init__(msg)
        self.retry_after = retry_after


def _get(requests, url: str):  # noqa: ANN001, ANN202
    """GET `url`, following redirects one hop at a time: credentials are decided per hop
    (a Kaggle host gets them, its signed storage redirect target does not)."""
    hops = 0
    while True:
        try:
            resp = requests.get(url, stream=True, timeout=_timeout(), allow_redirects=False, auth=_auth_for(url))
        except requests.exceptions.Timeout:
            raise _Retryable("timed out waiting for the server (set IMGTOOL_TIMEOUT to wait longer)") from None
        except requests.exceptions.ConnectionError as err:
            raise _Retryable(f"cannot connect ({_reason(err)}); check the network or proxy settings") from None
        except (requests.exceptions.RequestException, _urllib3_errors()) as err:  # e.g. two different lengths
            raise DownloadError(f"{url}: the server's response is malformed ({_reason(err)}); "
                                "try another URL or mirror") from None
        if resp.status_code not in REDIRECT_STATUS or "Location" not in resp.headers:
            return resp
        resp.close()
        hops += 1
        if hops > MAX_REDIRECTS:
            raise DownloadError(f"{url}: too many redirects (a redirect loop on the server); try another URL")
        url = urljoin(url, resp.headers["Location"])


def _fetch_one(requests, url: str, dest: Path, pin: Pinned, what: str) -> None:  # noqa: ANN001
    sha256 = pin.sha256
    tmp = store.tmp_dir() / f"{dest.name}.{os.getpid()}.incomplete"
    try:
        resp = _get(requests, url)
        with resp:
            if resp.status_code in RETRYABLE_STATUS:
                ra = resp.headers.get("Retry-After", "1")
                raise _Retryable(f"server answered HTTP {resp.status_code}",
                                 retry_after=float(ra) if ra.isdigit() else 1.0)
            if resp.status_code != 200:
                raise DownloadError(f"{url}: server answered HTTP {resp.status_code}; check the model name or URL")
            expected = resp.headers.get("Content-Length")
            expected_n = int(expected) if expected and expected.isdigit() else None
            digest = hashlib.sha256()
            got = 0
            ui.info(f"Downloading {what + ' from ' if what and what != url else ''}{url}"
                    + (f" ({expected_n / 1e6:.1f} MB)" if expected_n else ""))
            bar = ui.progress(expected_n, what or dest.name)
            try:
                with open(tmp, "wb") as fh:
                    for chunk in _chunks(resp, url):
                        fh.write(chunk)
                        digest.update(chunk)
                        got += len(chunk)
                        bar.update(len(chunk))
                    fh.flush()
                    os.fsync(fh.fileno())
            finally:
                bar.close()
        if expected_n is not None and got != expected_n and resp.headers.get("Content-Encoding") is None:
            raise _Retryable(f"received {got} bytes, the server announced {expected_n}")
        if pin.size is not None and got != pin.size:
            raise DownloadError(f"{url}: received {got} bytes, the catalog pins {pin.size}; the file was changed "
                                "or cut short — nothing was cached")
        if sha256 and digest.hexdigest() != sha256.lower():
            raise DownloadError(
                f"{url}: checksum mismatch (sha256 {digest.hexdigest()[:16]}…, expected {sha256[:16]}…); "
                "the file is corrupt or was changed — nothing was cached"
            )
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, dest)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def _urllib3_errors() -> type[Exception]:
    import urllib3.exceptions

    return urllib3.exceptions.HTTPError


def _chunks(resp, url: str):  # noqa: ANN001, ANN202
    """The body as it arrives (at most CHUNK bytes a piece, each as soon as the socket has
    it, not once CHUNK bytes are in), failing a transfer slower than MIN_RATE over any
    IMGTOOL_TIMEOUT seconds; urllib3's errors as ours."""
    import urllib3.exceptions as u3

    window = settings.current().timeout
    got = 0
    start, since = time.monotonic(), 0
    while True:
        try:
            chunk = resp.raw.read1(CHUNK, decode_content=True)
        except u3.ReadTimeoutError:
            raise _Retryable(f"the server stalled after {got} bytes (timed out)") from None
        except u3.DecodeError:  # e.g. Content-Encoding: gzip on bytes that are not
            raise DownloadError(f"{url}: the server's response is malformed (its body is not the "
                                f"{resp.headers.get('Content-Encoding')!r} data its Content-Encoding says); "
                                "try another URL or mirror") from None
        except (u3.ProtocolError, u3.HTTPError, OSError) as err:
            raise _Retryable(f"the connection broke after {got} bytes ({_reason(err)})") from None
        if not chunk:
            return
        got += len(chunk)
        since += len(chunk)
        now = time.monotonic()
        if now - start >= window:
            if since < MIN_RATE * (now - start):
                raise _Retryable(f"the server sent {got} bytes, the last {since} in {now - start:.0f} s: slower "
                                 f"than {MIN_RATE} bytes/s (set IMGTOOL_TIMEOUT to average over longer)")
            start, since = now, 0
        yield chunk


def _reason(err: Exception) -> str:
    text = str(err)
    for marker in ("Connection refused", "Name or service not known", "timed out", "Connection reset",
                   "Remote end closed", "IncompleteRead", "Connection aborted"):
        if marker in text:
            return marker.lower()
    return first_line(err, 120)


ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")


def archive_kind(path: Path) -> str:
    """"zip", "tflite" or "tar" (tarfile tells gzip/bzip2/xz/plain itself), by the bytes,
    not the name: Kaggle serves zip or tar.gz from the same URL."""
    with open(path, "rb") as fh:
        head = fh.read(8)
    if head[:4] in ZIP_MAGIC:
        return "zip"
    if head[4:8] == b"TFL3":
        return "tflite"
    return "tar"


def extract_archive(archive: Path, target: Path, what: str = "") -> None:
    """Extract a .tar/.tar.gz or .zip (told apart by their bytes) safely: absolute paths,
    `..`, links pointing outside the target and device files are refused (tarfile's
    'data' filter; the same rules by hand for zip)."""
    target.mkdir(parents=True, exist_ok=True)
    if archive_kind(archive) == "zip":
        _extract_zip(archive, target, what)
        return
    try:
        with tarfile.open(archive, "r:*") as tar:
            members, total = [], 0
            for member in tar:  # headers only, stopping at the first past a cap: before anything is written
                if member.name.startswith(("/", "\\")) or ".." in Path(member.name).parts:
                    raise tarfile.FilterError(f"member {member.name!r} points outside the archive")
                members.append(member)
                total += member.size if member.isreg() else 0
                _check_caps(len(members), total, what or archive.name)
            _check_space(target, total, what or archive.name)
            tar.extractall(target, members=members, filter="data")
    except tarfile.FilterError as err:
        raise ModelError(f"{what or archive.name}: unsafe archive refused ({err}); "
                         "the download is not a model") from None
    except StorageError:
        raise
    except (tarfile.TarError, EOFError, OSError) as err:
        if store.is_storage_error(err, target):
            raise  # a full disk or read-only cache, not a corrupt download
        reason = first_line(err, None).rstrip(":")
        if "could not be opened successfully" in reason:  # tarfile lists every method it tried, one a line
            reason = "not a gzip, bzip2, xz or plain tar file"
        raise ModelError(f"{what or archive.name}: not a readable .tar.gz archive ({reason}); "
                         "the download is corrupt") from None


def _extract_zip(archive: Path, target: Path, what: str) -> None:
    try:
        with zipfile.ZipFile(archive) as zf:
            members = zf.infolist()
            _check_caps(len(members), sum(m.file_size for m in members if not m.is_dir()), what or archive.name)
            _check_space(target, sum(m.file_size for m in members), what or archive.name)
            for m in members:
                name = m.filename.replace("\\", "/")
                mode = m.external_attr >> 16
                if name.startswith("/") or (len(name) > 1 and name[1] == ":") or ".." in Path(name).parts:
                    raise _UnsafeZip(f"member {m.filename!r} points outside the archive")
                if stat.S_ISLNK(mode):
                    raise _UnsafeZip(f"member {m.filename!r} is a symbolic link")
                # zipfile.writestr (and other writers) store permission bits without a file
                # type: that is a plain file; only a type that is neither file nor folder is refused
                if stat.S_IFMT(mode) and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                    raise _UnsafeZip(f"member {m.filename!r} is not a regular file")
            for m in members:
                zf.extract(m, target)
    except _UnsafeZip as err:
        raise ModelError(f"{what or archive.name}: unsafe archive refused ({err}); "
                         "the download is not a model") from None
    except StorageError:
        raise
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as err:
        if isinstance(err, OSError) and store.is_storage_error(err, target):
            raise  # a full disk or read-only cache, not a corrupt download
        reason = first_line(err, None)
        raise ModelError(f"{what or archive.name}: not a readable .zip archive ({reason}); "
                         "the download is corrupt") from None


class _UnsafeZip(Exception):
    pass


def _mb(n: int) -> str:
    return f"{n / 1e6:,.0f} MB"


def _check_caps(members: int, total: int, what: str) -> None:
    """An archive bomb is refused on its headers (exit 3): nothing of it is written."""
    if members > MAX_MEMBERS:
        raise ModelError(f"{what}: archive refused: it holds more than {MAX_MEMBERS:,} files, more than any model "
                         "needs; the download is not a model (or not one imgtool takes)")
    if total > MAX_EXTRACT_BYTES:
        raise ModelError(f"{what}: archive refused: it unpacks to more than {_mb(MAX_EXTRACT_BYTES)} "
                         f"(the cap for a model archive); the download is not a model (or not one imgtool takes)")


def _check_space(target: Path, total: int, what: str) -> None:
    """The unpacked size, against the free space, before the first byte is written (exit 4)."""
    import errno
    import shutil

    try:
        free = shutil.disk_usage(target).free
    except OSError:
        return
    if total > free:
        raise store.storage_error(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(target)),
                                  "the model cache", "set IMGTOOL_HOME to a writable folder with space",
                                  note=f" ({what} unpacks to {_mb(total)}, {_mb(free)} are free)")



"""Fetching files over HTTP(S) into the store: streamed, timed out, verified, atomic.

Uses requests (proxies from the environment as requests honours them: HTTP(S)_PROXY,
NO_PROXY). A download goes to `tmp/<name>.<pid>.incomplete` and is renamed to its final
name only once whole (length as announced, checksum as pinned), so nothing that looks
cached is ever half-written."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tarfile
import time
from pathlib import Path

from imgtool import settings, store, ui
from imgtool.errors import DownloadError, ModelError

CHUNK = 1 << 20
RETRYABLE_STATUS = {429, 500, 502, 503, 504}


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


def fetch(urls: list[str] | tuple[str, ...], dest: Path, *, sha256: str | None = None, what: str = "") -> str:
    """Download the first URL that works to `dest`; return the URL used.

    Raises DownloadError with one line naming the URL and the problem."""
    if not urls:
        raise DownloadError(f"{what or dest.name}: no download URL is known; pass a local path instead")
    if store.offline():
        raise DownloadError(
            f"{what or dest.name} is not in the cache and IMGTOOL_OFFLINE is set; "
            f"run `imgtool models download {what}` with network access first" if what else
            f"{dest.name} is not in the cache and IMGTOOL_OFFLINE is set"
        )
    import requests

    errors: list[str] = []
    for url in urls:
        url = hub_download_url(url)
        for attempt in range(_attempts()):
            try:
                _fetch_one(requests, url, dest, sha256, what)
                return url
            except _Retryable as err:
                errors.append(f"{url}: {err}")
                if attempt + 1 < _attempts():
                    time.sleep(min(err.retry_after, 5.0))
                    continue
            except DownloadError as err:
                errors.append(str(err))
            break
    tried = f" (tried {len(urls)} URLs; the last said)" if len(urls) > 1 else ""
    raise DownloadError(f"could not download {what or dest.name}{tried}: {errors[-1]}")


class _Retryable(Exception):
    def __init__(self, msg: str, retry_after: float = 1.0):
        super().__init__(msg)
        self.retry_after = retry_after


def _fetch_one(requests, url: str, dest: Path, sha256: str | None, what: str) -> None:  # noqa: ANN001
    tmp = store.tmp_dir() / f"{dest.name}.{os.getpid()}.incomplete"
    try:
        try:
            resp = requests.get(url, stream=True, timeout=_timeout(), allow_redirects=True)
        except requests.exceptions.TooManyRedirects:
            raise DownloadError(f"{url}: too many redirects (a redirect loop on the server); try another URL") from None
        except requests.exceptions.Timeout:
            raise _Retryable("timed out waiting for the server (set IMGTOOL_TIMEOUT to wait longer)") from None
        except requests.exceptions.ConnectionError as err:
            raise _Retryable(f"cannot connect ({_reason(err)}); check the network or proxy settings") from None
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
                    for chunk in resp.iter_content(CHUNK):
                        fh.write(chunk)
                        digest.update(chunk)
                        got += len(chunk)
                        bar.update(len(chunk))
                    fh.flush()
                    os.fsync(fh.fileno())
            except requests.exceptions.Timeout:
                raise _Retryable(f"the server stalled after {got} bytes (timed out)") from None
            except (requests.exceptions.ChunkedEncodingError, requests.exceptions.ConnectionError) as err:
                raise _Retryable(f"the connection broke after {got} bytes ({_reason(err)})") from None
            finally:
                bar.close()
        if expected_n is not None and got != expected_n and resp.headers.get("Content-Encoding") is None:
            raise _Retryable(f"received {got} bytes, the server announced {expected_n}")
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


def _reason(err: Exception) -> str:
    text = str(err)
    for marker in ("Connection refused", "Name or service not known", "timed out", "Connection reset",
                   "Remote end closed", "IncompleteRead", "Connection aborted"):
        if marker in text:
            return marker.lower()
    return text.splitlines()[0][:120] if text else type(err).__name__


def extract_archive(archive: Path, target: Path, what: str = "") -> None:
    """Extract a .tar/.tar.gz safely: tarfile's 'data' filter refuses absolute paths,
    `..`, links pointing outside the target, and device files."""
    target.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar.getmembers():  # the filter would quietly make these relative; refuse
                if member.name.startswith(("/", "\\")) or ".." in Path(member.name).parts:
                    raise tarfile.FilterError(f"member {member.name!r} points outside the archive")
            tar.extractall(target, filter="data")
    except tarfile.FilterError as err:
        raise ModelError(f"{what or archive.name}: unsafe archive refused ({err}); the download is not a model") from None
    except (tarfile.TarError, EOFError, OSError) as err:
        reason = str(err).strip().splitlines()[0].rstrip(":") if str(err).strip() else type(err).__name__
        if "could not be opened successfully" in reason:  # tarfile lists every method it tried, one a line
            reason = "not a gzip, bzip2, xz or plain tar file"
        raise ModelError(f"{what or archive.name}: not a readable .tar.gz archive ({reason}); "
                         "the download is corrupt") from None


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()

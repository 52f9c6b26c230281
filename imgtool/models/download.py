"""Fetching files over HTTP(S) into the store: streamed, timed out, verified, atomic.

Uses requests (proxies from the environment as requests honours them: HTTP(S)_PROXY,
NO_PROXY). A download goes to `tmp/<name>.<pid>.incomplete` and is renamed to its final
name only once whole (length as announced, size and checksum as pinned), so nothing that
looks cached is ever half-written.

One requests Session per fetch (its connections reused across the fetch's redirects,
retries and URLs) with urllib3's Retry: connection failures, a timeout before the
headers and RETRYABLE_STATUS are retried by urllib3 (exponential backoff, the server's
Retry-After up to MAX_RETRY_AFTER); a body that stalls or is cut short is retried here,
from the same IMGTOOL_RETRIES attempts (`_Attempts`). Unpacking is archives.py.

Redirects are followed here, one hop at a time, so that Kaggle credentials
(KAGGLE_USERNAME + KAGGLE_KEY, HTTP Basic) go to kaggle.com hosts only and never to the
signed storage URL Kaggle redirects to, whatever requests' own redirect rules are."""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urljoin, urlsplit

from imgtool.core import settings, store, ui
from imgtool.core.errors import Call, DownloadError, first_line

if TYPE_CHECKING:
    import requests
    from urllib3.util.retry import Retry

CHUNK = 1 << 20
#: The slowest transfer accepted: a download that receives fewer than MIN_RATE bytes a
#: second, averaged over any IMGTOOL_TIMEOUT seconds, is dropped (a server trickling a
#: byte at a time never trips the read timeout alone).
MIN_RATE = 1024
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


def fetch(
    urls: list[str] | tuple[str, ...], dest: Path, *, sha256: str | None = None, size: int | None = None, what: str = ""
) -> str:
    """Download the first URL that works to `dest`; return the URL used. The URLs share
    one Session (a mirror on the same host reuses the connection).

    Raises DownloadError with one line naming the URL and the problem."""
    if not urls:
        raise DownloadError(f"{what or dest.name}: no download URL is known; pass a local path instead")
    check_online(what, dest.name)
    errors: list[str] = []
    with session() as http:
        for url in urls:
            try:
                return fetch_url(Pinned(url, sha256, size), dest, what=what, http=http)
            except DownloadError as err:
                errors.append(str(err))
    raise DownloadError(failure_message(what or dest.name, len(urls), errors[-1]))


def failure_message(what: str, tried: int, last: str) -> str:
    return f"could not download {what}{f' (tried {tried} URLs; the last said)' if tried > 1 else ''}: {last}"


def check_online(what: str, dest_name: str = "") -> None:
    if store.offline():
        raise DownloadError(
            f"{what} is not in the cache and IMGTOOL_OFFLINE is set; "
            "run " + Call("download_model", what) + " with network access first"
            if what
            else f"{dest_name} is not in the cache and IMGTOOL_OFFLINE is set",
            model=what or None,
        )


@contextlib.contextmanager
def session() -> Iterator[requests.Session]:
    """A requests Session for one fetch: its connections are reused across the fetch's
    redirects, retries and URLs, and closed when it ends. The retries themselves are
    urllib3's (see `_Attempts`), set per request."""
    import requests
    from requests.adapters import HTTPAdapter

    with requests.Session() as http:
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=1)
        http.mount("http://", adapter)
        http.mount("https://", adapter)
        yield http


def fetch_url(pin: Pinned, dest: Path, *, what: str = "", http: requests.Session | None = None) -> str:
    """Download one URL to `dest` (retrying what is worth retrying); return the URL.
    DownloadError's message is "URL: problem", for the caller to put in context."""
    check_online(what, dest.name)
    url = hub_download_url(pin.url)
    with contextlib.ExitStack() as stack:
        http = http or stack.enter_context(session())
        attempts = _Attempts(_attempts())
        while True:
            try:
                _fetch_one(http, attempts, url, dest, pin, what)
                return url
            except _Retryable as err:
                attempts.again(url, str(err))


class _Retryable(Exception):
    """A body that failed after its headers came (a stall, a broken connection, fewer
    bytes than announced): ours to retry, urllib3 has handed the response over."""


class _Attempts:
    """One URL's IMGTOOL_RETRIES attempts, one budget for both kinds of retry: urllib3's
    (connection failures, a timeout before the headers, RETRYABLE_STATUS, with
    exponential backoff and the server's Retry-After up to MAX_RETRY_AFTER) and ours
    (a body that fails after its headers: `again`)."""

    def __init__(self, attempts: int):
        self.retry = _retry_policy(attempts - 1)

    def get(self, http: requests.Session, url: str) -> requests.Response:
        """One GET (no redirects followed) with the retries left; they are spent as urllib3 goes."""
        http.get_adapter(url).max_retries = self.retry  # type: ignore[attr-defined]
        resp = http.get(url, stream=True, timeout=_timeout(), allow_redirects=False, auth=_auth_for(url))
        self.retry = getattr(resp.raw, "retries", None) or self.retry
        return resp

    def again(self, url: str, problem: str) -> None:
        """Spend one attempt on a failed body and wait the backoff; DownloadError when none is left."""
        import urllib3.exceptions

        try:
            self.retry = self.retry.increment(method="GET", url=url)
        except urllib3.exceptions.MaxRetryError:
            raise DownloadError(f"{url}: {problem}") from None
        self.retry.sleep()


#: The longest Retry-After honoured; a server asking for more is retried after this.
MAX_RETRY_AFTER = 60
#: Backoff between attempts: BACKOFF s, then twice as long each time, at most BACKOFF_MAX s.
BACKOFF = 1.0
BACKOFF_MAX = 30.0


def _retry_policy(retries: int) -> Retry:
    from urllib3.util.retry import Retry

    class _Retry(Retry):
        def get_backoff_time(self) -> float:
            """BACKOFF before the first retry too (urllib3 retries the first at once)."""
            errors = len(list(itertools.takewhile(lambda h: h.redirect_location is None, reversed(self.history))))
            return 0.0 if errors == 0 else min(self.backoff_max, self.backoff_factor * 2 ** (errors - 1))

    return _Retry(
        total=retries,
        redirect=False,
        status_forcelist=RETRYABLE_STATUS,
        allowed_methods={"GET"},
        backoff_factor=BACKOFF,
        backoff_max=BACKOFF_MAX,
        respect_retry_after_header=True,
        retry_after_max=MAX_RETRY_AFTER,
        raise_on_status=False,
    )


def _get(http: requests.Session, attempts: _Attempts, url: str) -> requests.Response:
    """GET `url`, following redirects one hop at a time: credentials are decided per hop
    (a Kaggle host gets them, its signed storage redirect target does not)."""
    import requests

    hops = 0
    while True:
        try:
            resp = attempts.get(http, url)
        except requests.exceptions.Timeout:
            raise DownloadError(f"{url}: {TIMED_OUT}") from None
        except requests.exceptions.ConnectionError as err:
            if _timed_out(err):  # a read timeout before the headers, after urllib3's retries
                raise DownloadError(f"{url}: {TIMED_OUT}") from None
            raise DownloadError(
                f"{url}: cannot connect ({_reason(err)}); check the network or proxy settings"
            ) from None
        except (requests.exceptions.RequestException, _urllib3_errors()) as err:  # e.g. two different lengths
            raise DownloadError(
                f"{url}: the server's response is malformed ({_reason(err)}); try another URL or mirror"
            ) from None
        if resp.status_code not in REDIRECT_STATUS or "Location" not in resp.headers:
            return resp
        _done_with(resp)
        hops += 1
        if hops > MAX_REDIRECTS:
            raise DownloadError(f"{url}: too many redirects (a redirect loop on the server); try another URL")
        url = urljoin(url, resp.headers["Location"])


TIMED_OUT = "timed out waiting for the server (set IMGTOOL_TIMEOUT to wait longer)"
#: A body no longer than this (a redirect's, an error page's) is read to the end, so that
#: its connection goes back to the Session for the next request; a longer one is closed.
DRAIN_MAX = 64 << 10


def _done_with(resp: requests.Response) -> None:
    length = resp.headers.get("Content-Length", "")
    if length.isdigit() and int(length) <= DRAIN_MAX:
        with contextlib.suppress(Exception):
            resp.raw.drain_conn()
            resp.raw.release_conn()
            return
    resp.close()


def _timed_out(err: Exception) -> bool:
    import urllib3.exceptions

    inner = err.args[0] if err.args else None
    reason = getattr(inner, "reason", inner)  # NewConnectionError derives from ConnectTimeoutError: refused
    return isinstance(reason, urllib3.exceptions.TimeoutError) and not isinstance(
        reason, urllib3.exceptions.NewConnectionError
    )


def _fetch_one(http: requests.Session, attempts: _Attempts, url: str, dest: Path, pin: Pinned, what: str) -> None:
    tmp = store.tmp_dir() / f"{dest.name}.{os.getpid()}.incomplete"
    try:
        resp = _get(http, attempts, url)
        if resp.status_code != 200:
            _done_with(resp)
            hint = "" if resp.status_code in RETRYABLE_STATUS else "; check the model name or URL"
            raise DownloadError(f"{url}: server answered HTTP {resp.status_code}{hint}")
        with resp:
            got, digest = _receive(resp, url, tmp, what or dest.name, what)
        _check_received(resp, url, pin, got, digest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, dest)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def _receive(resp: requests.Response, url: str, tmp: Path, desc: str, what: str) -> tuple[int, str]:
    """The body into `tmp`, fsynced: (bytes received, their sha256)."""
    expected_n = _announced(resp)
    digest = hashlib.sha256()
    got = 0
    ui.info(
        f"Downloading {what + ' from ' if what and what != url else ''}{url}"
        + (f" ({expected_n / 1e6:.1f} MB)" if expected_n else "")
    )
    bar = ui.progress(expected_n, desc)
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
    return got, digest.hexdigest()


def _announced(resp: requests.Response) -> int | None:
    expected = resp.headers.get("Content-Length")
    return int(expected) if expected and expected.isdigit() else None


def _check_received(resp: requests.Response, url: str, pin: Pinned, got: int, digest: str) -> None:
    expected_n = _announced(resp)
    if expected_n is not None and got != expected_n and resp.headers.get("Content-Encoding") is None:
        raise _Retryable(f"received {got} bytes, the server announced {expected_n}")
    if pin.size is not None and got != pin.size:
        raise DownloadError(
            f"{url}: received {got} bytes, the catalog pins {pin.size}; the file was changed "
            "or cut short — nothing was cached"
        )
    if pin.sha256 and digest != pin.sha256.lower():
        raise DownloadError(
            f"{url}: checksum mismatch (sha256 {digest[:16]}…, expected {pin.sha256[:16]}…); "
            "the file is corrupt or was changed — nothing was cached"
        )


def _urllib3_errors() -> type[Exception]:
    import urllib3.exceptions

    return urllib3.exceptions.HTTPError


def _chunks(resp: requests.Response, url: str) -> Iterator[bytes]:
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
            raise DownloadError(
                f"{url}: the server's response is malformed (its body is not the "
                f"{resp.headers.get('Content-Encoding')!r} data its Content-Encoding says); "
                "try another URL or mirror"
            ) from None
        except (u3.ProtocolError, u3.HTTPError, OSError) as err:
            raise _Retryable(f"the connection broke after {got} bytes ({_reason(err)})") from None
        if not chunk:
            return
        got += len(chunk)
        since += len(chunk)
        now = time.monotonic()
        if now - start >= window:
            if since < MIN_RATE * (now - start):
                raise _Retryable(
                    f"the server sent {got} bytes, the last {since} in {now - start:.0f} s: slower "
                    f"than {MIN_RATE} bytes/s (set IMGTOOL_TIMEOUT to average over longer)"
                )
            start, since = now, 0
        yield chunk


def _reason(err: Exception) -> str:
    text = str(err)
    for marker in (
        "Connection refused",
        "Name or service not known",
        "timed out",
        "Connection reset",
        "Remote end closed",
        "IncompleteRead",
        "Connection aborted",
    ):
        if marker in text:
            return marker.lower()
    return first_line(err, 120)

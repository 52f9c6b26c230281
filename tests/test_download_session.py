"""Downloads on one requests Session with urllib3's Retry (library calls, a 127.0.0.1
server): what is retried and after how long, what is not, and which connection a
fetch's requests come on.

The waits are observed where urllib3 makes them: `time.sleep` as urllib3.util.retry
calls it is replaced by a recorder, which also ends the server's fault (the moment
between two attempts), so no test waits or reads a clock."""

from __future__ import annotations

import types
from collections.abc import Callable
from pathlib import Path

import pytest

from imgtool.core.errors import DownloadError
from imgtool.models import download
from tests.support.httpserver import LoopbackServer

BODY = bytes(range(256)) * 512  # 128 KiB


class Sleeps(list):
    """Each wait urllib3 asks for between attempts, as (seconds, requests the server had
    by then); `on_sleep` is what the server should change meanwhile."""

    def __init__(self) -> None:
        super().__init__()
        self.server: LoopbackServer | None = None
        self.on_sleep: Callable[[], None] | None = None

    def watch(self, server: LoopbackServer, on_sleep: Callable[[], None] | None = None) -> None:
        self.server, self.on_sleep = server, on_sleep

    def sleep(self, seconds: float) -> None:
        self.append((seconds, len(self.server.requests()) if self.server else -1))
        if self.on_sleep:
            self.on_sleep()


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> Sleeps:
    import time

    import urllib3.util.retry

    record = Sleeps()
    monkeypatch.setattr(urllib3.util.retry, "time", types.SimpleNamespace(sleep=record.sleep, time=time.time))
    return record


@pytest.mark.parametrize("retry_after,waited", [("3", 3), ("3600", download.MAX_RETRY_AFTER)])
def test_a_503_with_retry_after_is_retried_after_the_stated_delay(
    retry_after: str,
    waited: int,
    http_server: LoopbackServer,
    sleeps: Sleeps,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("IMGTOOL_RETRIES", "2")
    url = http_server.add("/m.bin", BODY, fault="503", headers={"Retry-After": retry_after})
    sleeps.watch(http_server, lambda: http_server.set_fault("/m.bin", None))
    assert download.fetch([url], tmp_path / "m.bin") == url
    assert (tmp_path / "m.bin").read_bytes() == BODY
    assert http_server.requests() == [("GET", "/m.bin")] * 2
    assert sleeps == [(waited, 1)]  # the server's delay (at most MAX_RETRY_AFTER), after the first request


def test_a_503_without_retry_after_backs_off_and_the_last_answer_is_the_error(
    http_server: LoopbackServer, sleeps: Sleeps, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IMGTOOL_RETRIES", "4")
    url = http_server.add("/m.bin", BODY, fault="503")
    sleeps.watch(http_server)
    with pytest.raises(DownloadError) as err:
        download.fetch([url], tmp_path / "m.bin", what="m")
    assert str(err.value) == f"could not download m: {url}: server answered HTTP 503"
    assert http_server.hits("/m.bin") == 4
    assert sleeps == [(1.0, 1), (2.0, 2), (4.0, 3)]  # BACKOFF, doubling
    assert not (tmp_path / "m.bin").exists()


def test_a_404_is_not_retried(
    http_server: LoopbackServer, sleeps: Sleeps, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IMGTOOL_RETRIES", "3")
    url = http_server.add("/m.bin", BODY, fault="404")
    sleeps.watch(http_server)
    with pytest.raises(DownloadError) as err:
        download.fetch([url], tmp_path / "m.bin", what="m")
    assert str(err.value) == f"could not download m: {url}: server answered HTTP 404; check the model name or URL"
    assert http_server.hits("/m.bin") == 1 and sleeps == []


def test_a_body_cut_short_is_retried_by_us_in_the_same_budget(
    http_server: LoopbackServer, sleeps: Sleeps, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Truncation is ours to retry (urllib3 has handed the response over): one attempt of
    IMGTOOL_RETRIES, the same backoff; a 503 first spends one of the same attempts."""
    monkeypatch.setenv("IMGTOOL_RETRIES", "3")
    url = http_server.add("/m.bin", BODY, fault="503")
    faults = iter(["truncate", None])
    sleeps.watch(http_server, lambda: http_server.set_fault("/m.bin", next(faults)))
    assert download.fetch([url], tmp_path / "m.bin") == url
    assert (tmp_path / "m.bin").read_bytes() == BODY
    assert http_server.hits("/m.bin") == 3
    assert sleeps == [(1.0, 1), (2.0, 2)]

    http_server.set_fault("/m.bin", "truncate")
    monkeypatch.setenv("IMGTOOL_RETRIES", "2")
    sleeps.clear()
    sleeps.watch(http_server)
    with pytest.raises(DownloadError, match=r"the connection broke after \d+ bytes"):
        download.fetch([url], tmp_path / "again.bin")
    assert http_server.hits("/m.bin") == 5 and len(sleeps) == 1


def test_one_connection_serves_the_redirect_the_retry_the_body_and_the_mirror(
    sleeps: Sleeps, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IMGTOOL_RETRIES", "2")
    with LoopbackServer(keep_alive=True) as srv:
        target = srv.add("/m.bin", BODY, fault="503", headers={"Retry-After": "1"})
        start = srv.add("/start", b"", fault="redirect", headers={"Location": target})
        sleeps.watch(srv, lambda: srv.set_fault("/m.bin", None))
        assert download.fetch([start], tmp_path / "a") == start
        assert srv.requests() == [("GET", "/start"), ("GET", "/m.bin"), ("GET", "/m.bin")]
        assert srv.connections() == 1 and sleeps == [(1, 2)]

        srv.reset_hits()
        gone = srv.add("/gone.bin", b"", fault="404")
        assert download.fetch([gone, target], tmp_path / "b") == target  # a mirror on the same host
        assert srv.requests() == [("GET", "/gone.bin"), ("GET", "/m.bin")] and srv.connections() == 1
        assert (tmp_path / "b").read_bytes() == BODY


def test_separate_fetches_do_not_share_a_connection(tmp_path: Path) -> None:
    """A Session lives for one fetch: its connections close with it."""
    with LoopbackServer(keep_alive=True) as srv:
        url = srv.add("/m.bin", BODY)
        download.fetch([url], tmp_path / "a")
        download.fetch([url], tmp_path / "b")
        assert srv.connections() == 2

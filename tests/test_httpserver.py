"""Tests of the loopback HTTP server used by the downloader tests."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
from urllib3.exceptions import ReadTimeoutError

from tests.support.httpserver import LoopbackServer, http_server  # noqa: F401

BODY = bytes(range(256)) * 1000  # 256_000 bytes, not a multiple of the chunk size
T = (1, 1)  # (connect, read) timeouts for requests


def _download(url: str, **kw) -> tuple[requests.Response, bytes]:
    r = requests.get(url, timeout=T, stream=True, **kw)
    data = b"".join(r.iter_content(8192))
    return r, data


# -- normal serving --------------------------------------------------------------


def test_binds_loopback_only(http_server):
    host, port = http_server._httpd.server_address[:2]
    assert host == "127.0.0.1"
    assert port > 0
    assert http_server.url == f"http://127.0.0.1:{port}"


def test_ok_full_body_with_length(http_server):
    url = http_server.add("/m.bin", BODY, chunk_size=10_000, headers={"ETag": '"abc"'})
    assert url == http_server.url + "/m.bin"
    r, data = _download(url)
    assert r.status_code == 200
    assert r.headers["Content-Length"] == str(len(BODY))
    assert r.headers["Content-Type"] == "application/octet-stream"
    assert r.headers["Connection"] == "close"
    assert r.headers["ETag"] == '"abc"'
    assert data == BODY
    assert http_server.hits("/m.bin") == 1
    assert http_server.errors == []


def test_empty_body(http_server):
    url = http_server.add("/empty", b"", content_type="text/plain")
    r = requests.get(url, timeout=T)
    assert r.status_code == 200
    assert r.headers["Content-Length"] == "0"
    assert r.headers["Content-Type"] == "text/plain"
    assert r.content == b""


def test_delay_per_chunk_allows_interrupting_midway(http_server):
    url = http_server.add("/slow", BODY, chunk_size=32_000, delay_per_chunk=0.05)  # 8 chunks
    t0 = time.monotonic()
    r, data = _download(url)
    assert data == BODY
    assert time.monotonic() - t0 >= 7 * 0.05 * 0.9

    # A client that gives up after the first chunk: the server copes and keeps serving.
    with requests.get(url, timeout=T, stream=True) as r:
        first = next(r.iter_content(1000))
        assert first == BODY[:1000]
    r, data = _download(url)
    assert data == BODY
    assert http_server.hits("/slow") == 3
    assert http_server.errors == []


def test_unknown_path_404(http_server):
    r = requests.get(http_server.url + "/nope?x=1", timeout=T)
    assert r.status_code == 404
    assert http_server.last_query("/nope") == "x=1"


def test_head_headers_only(http_server):
    url = http_server.add("/h.bin", BODY)
    r = requests.head(url, timeout=T)
    assert r.status_code == 200
    assert r.headers["Content-Length"] == str(len(BODY))
    assert r.content == b""
    assert http_server.hits("/h.bin") == 0  # only GETs count
    assert http_server.hits("/h.bin", method="HEAD") == 1
    assert requests.head(http_server.url + "/missing", timeout=T).status_code == 404
    http_server.set_fault("/h.bin", "503")
    assert requests.head(url, timeout=T).status_code == 503


def test_query_string_ignored_for_routing_but_recorded(http_server):
    url = http_server.add("/tfhub/model/1", BODY)
    assert http_server.last_query("/tfhub/model/1") is None
    r = requests.get(url + "?tf-hub-format=compressed", timeout=T)
    assert r.status_code == 200 and r.content == BODY
    assert http_server.last_query("/tfhub/model/1") == "tf-hub-format=compressed"
    requests.get(url, timeout=T)
    assert http_server.last_query("/tfhub/model/1") == ""
    assert http_server.hits("/tfhub/model/1") == 2
    assert "User-Agent" in http_server.last_headers("/tfhub/model/1")


def test_hits_set_fault_and_reset(http_server):
    url = http_server.add("/flaky", BODY, fault="500")
    assert requests.get(url, timeout=T).status_code == 500
    assert requests.get(url, timeout=T).status_code == 500
    http_server.set_fault("/flaky", None)  # next good attempt succeeds
    r = requests.get(url, timeout=T)
    assert r.status_code == 200 and r.content == BODY
    assert http_server.hits("/flaky") == 3
    assert http_server.hits("/other") == 0
    http_server.reset_hits()
    assert http_server.hits("/flaky") == 0
    with pytest.raises(KeyError):
        http_server.set_fault("/not-added", None)


def test_invalid_arguments(http_server):
    with pytest.raises(ValueError):
        http_server.add("/x", BODY, fault="bogus")
    with pytest.raises(ValueError):
        http_server.add("no-slash", BODY)
    with pytest.raises(ValueError):
        http_server.add("/x?q=1", BODY)
    with pytest.raises(ValueError):
        http_server.add("/x", BODY, fault="redirect")  # needs a Location
    with pytest.raises(ValueError):
        http_server.add("/x", b"", fault="truncate")
    http_server.add("/x", BODY)
    with pytest.raises(ValueError):
        http_server.set_fault("/x", "nope")


# -- faults ------------------------------------------------------------------------


@pytest.mark.parametrize("fault,status", [("404", 404), ("500", 500), ("429", 429), ("503", 503)])
def test_status_faults(http_server, fault, status):
    url = http_server.add(f"/s{fault}", BODY, fault=fault)
    r = requests.get(url, timeout=T)
    assert r.status_code == status
    assert int(r.headers["Content-Length"]) == len(r.content) < 100
    if fault == "429":
        assert r.headers["Retry-After"] == "1"
    else:
        assert "Retry-After" not in r.headers
    with pytest.raises(requests.HTTPError):
        r.raise_for_status()
    assert http_server.hits(f"/s{fault}") == 1


def test_stall_read_timeout_mid_body(http_server):
    url = http_server.add("/stall", BODY, fault="stall", chunk_size=4096)
    r = requests.get(url, timeout=(1, 0.5), stream=True)
    assert r.status_code == 200
    assert r.headers["Content-Length"] == str(len(BODY))
    got = bytearray()
    t0 = time.monotonic()
    # NB: a read timeout *while streaming the body* surfaces from requests as
    # requests.ConnectionError wrapping urllib3's ReadTimeoutError — not requests.Timeout.
    with pytest.raises(requests.ConnectionError) as ei:
        for chunk in r.iter_content(1024):
            got += chunk
    assert time.monotonic() - t0 < 3
    assert not isinstance(ei.value, requests.Timeout)
    assert isinstance(ei.value.args[0], ReadTimeoutError)
    assert bytes(got) == BODY[:4096]


def test_stall_non_streaming_get(http_server):
    url = http_server.add("/stall2", BODY, fault="stall")
    with pytest.raises(requests.ConnectionError) as ei:
        requests.get(url, timeout=(5, 3))  # a loaded machine may take >0.5 s to send the headers
    assert isinstance(ei.value.args[0], ReadTimeoutError)


def test_stall_small_body_never_completes(http_server):
    # Body smaller than one chunk: the "first chunk" is all but the last byte.
    url = http_server.add("/stall-small", b"abc", fault="stall")
    with pytest.raises(requests.ConnectionError):
        requests.get(url, timeout=(5, 3))  # a loaded machine may take >0.5 s to send the headers


def test_stall_headers_read_timeout(http_server):
    url = http_server.add("/sh", BODY, fault="stall_headers")
    t0 = time.monotonic()
    with pytest.raises(requests.ReadTimeout):
        requests.get(url, timeout=(1, 0.5))
    assert time.monotonic() - t0 < 3
    assert http_server.hits("/sh") == 1


def test_truncate(http_server):
    url = http_server.add("/t", BODY, fault="truncate", chunk_size=10_000)
    r = requests.get(url, timeout=T, stream=True)
    assert r.status_code == 200
    assert r.headers["Content-Length"] == str(len(BODY))
    got = bytearray()
    raised = None
    try:
        for chunk in r.iter_content(8192):
            got += chunk
    except (
        requests.exceptions.ChunkedEncodingError,
        requests.exceptions.ContentDecodingError,
        requests.ConnectionError,
    ) as e:
        raised = e
    # urllib3 2.x enforces Content-Length: requests raises ChunkedEncodingError(IncompleteRead).
    assert raised is not None or len(got) < len(BODY)
    assert len(got) <= len(BODY) // 2
    assert bytes(got) == BODY[: len(got)]
    # Non-streaming too.
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        requests.get(url, timeout=T)


def test_overlong(http_server):
    url = http_server.add("/o", BODY, fault="overlong")
    r = requests.get(url, timeout=T)
    assert r.status_code == 200
    assert r.headers["Content-Length"] == str(len(BODY) // 2)
    # requests/urllib3 stop at Content-Length: a *silently short* body, no exception.
    assert len(r.content) >= len(BODY) // 2
    assert r.content == BODY[: len(r.content)]
    assert len(r.content) != len(BODY) or r.content == BODY


def test_redirect_loop(http_server):
    url = http_server.add("/loop", BODY, fault="redirect_loop")
    r = requests.get(url + "?a=b", timeout=T, allow_redirects=False)
    assert r.status_code == 302
    assert r.headers["Location"] == url + "?a=b"
    http_server.reset_hits()
    with pytest.raises(requests.TooManyRedirects):
        requests.get(url, timeout=T)
    assert http_server.hits("/loop") == 31  # 1 + requests' default max_redirects (30)


def test_redirect_to_good_route(http_server):
    target = http_server.add("/real.bin", BODY)
    url = http_server.add("/short", b"unused", fault="redirect", headers={"Location": target})
    r = requests.get(url, timeout=T, allow_redirects=False)
    assert r.status_code == 302 and r.headers["Location"] == target
    r = requests.get(url, timeout=T)
    assert r.status_code == 200 and r.content == BODY
    assert [h.status_code for h in r.history] == [302]
    assert http_server.hits("/short") == 2 and http_server.hits("/real.bin") == 1


def test_drop(http_server):
    url = http_server.add("/drop", BODY, fault="drop")
    with pytest.raises(requests.ConnectionError) as ei:
        requests.get(url, timeout=T)
    assert not isinstance(ei.value, requests.Timeout)
    assert http_server.hits("/drop") == 1  # no retries by default in requests


def test_no_length(http_server):
    url = http_server.add("/nl", BODY, fault="no_length", chunk_size=7000)
    r, data = _download(url)
    assert r.status_code == 200
    assert "Content-Length" not in r.headers
    assert "Transfer-Encoding" not in r.headers
    assert data == BODY


def test_refused_url():
    url = LoopbackServer.refused_url()
    assert url.startswith("http://127.0.0.1:")
    t0 = time.monotonic()
    with pytest.raises(requests.ConnectionError) as ei:
        requests.get(url, timeout=T)
    assert not isinstance(ei.value, requests.Timeout)
    assert time.monotonic() - t0 < 1


# -- lifecycle / concurrency ------------------------------------------------------


@pytest.mark.parametrize("fault", ["stall", "stall_headers"])
def test_stop_is_prompt_during_stall(fault):
    srv = LoopbackServer().start()
    url = srv.add("/s", BODY, fault=fault)
    outcome: list[object] = []

    def client():
        try:
            requests.get(url, timeout=(1, 20))
            outcome.append("ok")
        except requests.RequestException as e:
            outcome.append(e)

    t = threading.Thread(target=client, daemon=True)
    t.start()
    deadline = time.monotonic() + 2
    while srv.hits("/s") == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert srv.hits("/s") == 1
    time.sleep(0.1)
    t0 = time.monotonic()
    srv.stop()
    assert time.monotonic() - t0 < 2
    t.join(timeout=2)
    assert not t.is_alive()  # the client saw the connection end, not its 20 s timeout
    assert outcome and isinstance(outcome[0], requests.RequestException)
    srv.stop()  # idempotent


def test_context_manager_stops_and_port_is_freed():
    with LoopbackServer() as srv:
        url = srv.add("/a", b"x")
        assert requests.get(url, timeout=T).content == b"x"
    with pytest.raises(requests.ConnectionError):
        requests.get(url, timeout=T)
    with pytest.raises(RuntimeError):
        srv.start()


def test_add_before_start():
    srv = LoopbackServer()
    try:
        url = srv.add("/early", b"hello")
        srv.start()
        assert requests.get(url, timeout=T).content == b"hello"
    finally:
        srv.stop()


def test_concurrent_threads(http_server):
    url = http_server.add("/c", BODY, chunk_size=16_000, delay_per_chunk=0.01)
    results: list[bytes] = []
    lock = threading.Lock()

    def worker():
        _, data = _download(url)
        with lock:
            results.append(data)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert len(results) == 8 and all(d == BODY for d in results)
    assert http_server.hits("/c") == 8


def test_two_processes_download_at_once(http_server, tmp_path: Path):
    url = http_server.add("/p", BODY, chunk_size=32_000, delay_per_chunk=0.02)
    script = (
        "import sys, urllib.request\n"
        "data = urllib.request.urlopen(sys.argv[1], timeout=5).read()\n"
        "open(sys.argv[2], 'wb').write(data)\n"
    )
    outs = [tmp_path / f"out{i}" for i in range(2)]
    procs = [subprocess.Popen([sys.executable, "-c", script, url, str(o)]) for o in outs]
    for p in procs:
        assert p.wait(timeout=10) == 0
    assert all(o.read_bytes() == BODY for o in outs)
    assert http_server.hits("/p") == 2


def test_no_stderr_noise(capfd):
    with LoopbackServer() as srv:
        ok = srv.add("/ok", b"data")
        requests.get(ok, timeout=T)
        requests.get(srv.url + "/missing", timeout=T)
        requests.post(ok, timeout=T)  # 501, logged via log_error by default
        with socket.create_connection(("127.0.0.1", srv.port), timeout=1) as s:
            s.sendall(b"garbage\r\n\r\n")
            s.recv(1000)
    _out, err = capfd.readouterr()
    assert err == ""

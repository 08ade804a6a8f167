"""Fetching D4RL files from a loopback HTTP server, a folder and a file:// URL."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from bench.data.download import fetch_dataset
from bench.data.hdf5 import read_d4rl_arrays
from bench.errors import BenchError
from tests.d4rl_files import make_d4rl_arrays, write_small_d4rl_file

NAME = "hopper-medium-v2"
FILENAME = "hopper_medium-v2.hdf5"


@dataclass
class ServerState:
    """What the test server serves and how it misbehaves; every request's Range header is logged."""

    files: dict[str, bytes] = field(default_factory=dict)
    ranges: list[str | None] = field(default_factory=list)
    drop_after: int | None = None  # first request: send this many bytes, then close the connection
    stall_after: int | None = None  # first request: send this many bytes, then stall until released
    ignore_range: bool = False
    status: int | None = None  # answer every request with this error status
    release: threading.Event = field(default_factory=threading.Event)


def make_handler(state: ServerState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            range_header = self.headers.get("Range")
            state.ranges.append(range_header)
            first = len(state.ranges) == 1
            if state.status is not None:
                self.send_error(state.status)
                return
            data = state.files.get(self.path.rsplit("/", 1)[-1])
            if data is None:
                self.send_error(404)
                return
            start = 0
            if range_header and not state.ignore_range:
                start = int(range_header.removeprefix("bytes=").split("-")[0])
                if start >= len(data):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                self.send_response(200)
            body = data[start:]
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if first and state.drop_after is not None:
                self.wfile.write(body[: state.drop_after])
                self.wfile.flush()
                self.close_connection = True
                return
            if first and state.stall_after is not None:
                self.wfile.write(body[: state.stall_after])
                self.wfile.flush()
                state.release.wait(5)
                self.close_connection = True
                return
            self.wfile.write(body)

    return Handler


@pytest.fixture
def server() -> Iterator[tuple[str, ServerState]]:
    state = ServerState()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(state))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/d4rl", state
    finally:
        state.release.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


@pytest.fixture
def hopper_bytes(tmp_path: Path) -> bytes:
    return write_small_d4rl_file(tmp_path / "src" / FILENAME, env="hopper").read_bytes()


@pytest.fixture(autouse=True)
def no_env_base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("D4RL_BASE_URL", raising=False)


def test_full_transfer_and_cached_file_reused(server, hopper_bytes: bytes, tmp_path: Path) -> None:
    url, state = server
    state.files[FILENAME] = hopper_bytes
    cache = tmp_path / "cache"
    path = fetch_dataset(NAME, cache_dir=cache, base_url=url, progress=False)
    assert path == cache / FILENAME
    assert path.read_bytes() == hopper_bytes
    assert not (cache / f"{FILENAME}.part").exists()
    assert state.ranges == [None]
    assert fetch_dataset(f"d4rl:{NAME}", cache_dir=cache, base_url=url, progress=False) == path
    assert len(state.ranges) == 1  # the valid cached file was not downloaded again
    fetch_dataset(NAME, cache_dir=cache, base_url=url, progress=False, force=True)
    assert len(state.ranges) == 2


def test_interrupted_transfer_resumes_with_a_range_request(server, hopper_bytes: bytes, tmp_path: Path) -> None:
    url, state = server
    state.files[FILENAME] = hopper_bytes
    state.drop_after = 1000
    cache = tmp_path / "cache"
    with pytest.raises(BenchError) as excinfo:
        fetch_dataset(NAME, cache_dir=cache, base_url=url, progress=False)
    message = str(excinfo.value)
    part = cache / f"{FILENAME}.part"
    assert f"{url}/{FILENAME}" in message
    assert "resume" in message and str(part) in message
    assert str(cache / FILENAME) in message and "--base-url" in message
    assert part.stat().st_size == 1000
    assert not (cache / FILENAME).exists()

    path = fetch_dataset(NAME, cache_dir=cache, base_url=url, progress=False)
    assert state.ranges == [None, "bytes=1000-"]
    assert path.read_bytes() == hopper_bytes
    assert not part.exists()


def test_stalled_transfer_times_out_and_keeps_the_partial(server, hopper_bytes: bytes, tmp_path: Path) -> None:
    url, state = server
    state.files[FILENAME] = hopper_bytes
    state.stall_after = 700
    cache = tmp_path / "cache"
    with pytest.raises(BenchError, match="resume") as excinfo:
        fetch_dataset(NAME, cache_dir=cache, base_url=url, progress=False, timeout=0.3)
    assert "timed out" in str(excinfo.value)
    assert (cache / f"{FILENAME}.part").stat().st_size == 700
    state.release.set()
    assert fetch_dataset(NAME, cache_dir=cache, base_url=url, progress=False).read_bytes() == hopper_bytes
    assert state.ranges[-1] == "bytes=700-"


def test_server_ignoring_range_restarts_from_zero(server, hopper_bytes: bytes, tmp_path: Path) -> None:
    url, state = server
    state.files[FILENAME] = hopper_bytes
    state.ignore_range = True
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / f"{FILENAME}.part").write_bytes(b"stale bytes from another file")
    path = fetch_dataset(NAME, cache_dir=cache, base_url=url, progress=False)
    assert state.ranges == ["bytes=29-"]
    assert path.read_bytes() == hopper_bytes


def test_complete_partial_gets_416_and_is_used(server, hopper_bytes: bytes, tmp_path: Path) -> None:
    url, state = server
    state.files[FILENAME] = hopper_bytes
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / f"{FILENAME}.part").write_bytes(hopper_bytes)
    path = fetch_dataset(NAME, cache_dir=cache, base_url=url, progress=False)
    assert state.ranges == [f"bytes={len(hopper_bytes)}-"]
    assert path.read_bytes() == hopper_bytes


def test_partial_longer_than_the_file_starts_over(server, hopper_bytes: bytes, tmp_path: Path) -> None:
    url, state = server
    state.files[FILENAME] = hopper_bytes
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / f"{FILENAME}.part").write_bytes(hopper_bytes + b"extra")
    path = fetch_dataset(NAME, cache_dir=cache, base_url=url, progress=False)
    assert state.ranges == [f"bytes={len(hopper_bytes) + 5}-", None]
    assert path.read_bytes() == hopper_bytes


@pytest.mark.parametrize("status", [403, 500])
def test_server_error_names_the_url(server, tmp_path: Path, status: int) -> None:
    url, state = server
    state.status = status
    cache = tmp_path / "cache"
    with pytest.raises(BenchError) as excinfo:
        fetch_dataset(NAME, cache_dir=cache, base_url=url, progress=False)
    message = str(excinfo.value)
    assert f"{url}/{FILENAME}" in message and f"HTTP {status}" in message
    assert str(cache / FILENAME) in message and "$D4RL_BASE_URL" in message
    assert not (cache / FILENAME).exists()


def test_unreachable_server(tmp_path: Path) -> None:
    # Port 9 on loopback: nothing listens there, the connection is refused at once.
    with pytest.raises(BenchError, match=r"could not download http://127\.0\.0\.1:9/"):
        fetch_dataset(NAME, cache_dir=tmp_path, base_url="http://127.0.0.1:9", progress=False, timeout=2)


def test_corrupt_file_with_a_missing_key_is_refused(server, tmp_path: Path) -> None:
    url, state = server
    arrays = make_d4rl_arrays(11, 3, [20, 10], terminal_episodes={1})
    del arrays["actions"]
    bad = write_small_d4rl_file(tmp_path / "bad.hdf5", arrays=arrays)
    state.files[FILENAME] = bad.read_bytes()
    cache = tmp_path / "cache"
    with pytest.raises(BenchError) as excinfo:
        fetch_dataset(NAME, cache_dir=cache, base_url=url, progress=False)
    message = str(excinfo.value)
    assert "actions" in message and "not placed in the cache" in message
    assert str(cache / f"{FILENAME}.invalid") in message
    assert not (cache / FILENAME).exists() and not (cache / f"{FILENAME}.part").exists()
    assert (cache / f"{FILENAME}.invalid").read_bytes() == bad.read_bytes()


def test_truncated_file_is_refused(server, hopper_bytes: bytes, tmp_path: Path) -> None:
    url, state = server
    # The server itself serves a short file (Content-Length matches), so the transfer "succeeds".
    state.files[FILENAME] = hopper_bytes[: len(hopper_bytes) // 2]
    cache = tmp_path / "cache"
    with pytest.raises(BenchError, match="corrupt or incomplete"):
        fetch_dataset(NAME, cache_dir=cache, base_url=url, progress=False)
    assert not (cache / FILENAME).exists()


def test_file_of_another_environment_is_refused(server, tmp_path: Path) -> None:
    url, state = server
    state.files[FILENAME] = write_small_d4rl_file(tmp_path / "w.hdf5", env="walker2d").read_bytes()
    with pytest.raises(BenchError, match="expected 11"):
        fetch_dataset(NAME, cache_dir=tmp_path / "cache", base_url=url, progress=False)
    assert not (tmp_path / "cache" / FILENAME).exists()


def test_local_folder_and_file_url(hopper_bytes: bytes, tmp_path: Path) -> None:
    folder = tmp_path / "src"
    path = fetch_dataset(NAME, cache_dir=tmp_path / "c1", base_url=str(folder), progress=False)
    assert path.read_bytes() == hopper_bytes
    path = fetch_dataset(NAME, cache_dir=tmp_path / "c2", base_url=folder.as_uri(), progress=False)
    assert path.read_bytes() == hopper_bytes
    with pytest.raises(BenchError) as excinfo:
        fetch_dataset("walker2d-medium-v2", cache_dir=tmp_path / "c3", base_url=str(folder), progress=False)
    assert str(folder / "walker2d_medium-v2.hdf5") in str(excinfo.value)


def test_env_base_url_and_argument_precedence(
    server, hopper_bytes: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, state = server
    state.files[FILENAME] = hopper_bytes
    monkeypatch.setenv("D4RL_BASE_URL", url)
    assert fetch_dataset(NAME, cache_dir=tmp_path / "c1", progress=False).read_bytes() == hopper_bytes
    assert state.ranges == [None]
    # An explicit base URL wins over $D4RL_BASE_URL: the folder is used, the server sees no request.
    fetch_dataset(NAME, cache_dir=tmp_path / "c2", base_url=str(tmp_path / "src"), progress=False)
    assert state.ranges == [None]


def test_invalid_cached_file_is_moved_aside_and_fetched_again(hopper_bytes: bytes, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / FILENAME).write_bytes(b"not hdf5")
    with pytest.warns(UserWarning, match="failed validation"):
        path = fetch_dataset(NAME, cache_dir=cache, base_url=str(tmp_path / "src"), progress=False)
    assert path.read_bytes() == hopper_bytes
    assert (cache / f"{FILENAME}.invalid").read_bytes() == b"not hdf5"


def test_bad_names_and_schemes(tmp_path: Path) -> None:
    with pytest.raises(BenchError, match="hopper-medium-v2"):
        fetch_dataset("hopper-meduim-v2", cache_dir=tmp_path, progress=False)
    with pytest.raises(BenchError, match="scheme 'ftp'"):
        fetch_dataset(NAME, cache_dir=tmp_path, base_url="ftp://mirror.example/d4rl", progress=False)
    assert not (tmp_path / FILENAME).exists()


def test_downloaded_file_is_bit_identical_data(server, hopper_bytes: bytes, tmp_path: Path) -> None:
    url, state = server
    state.files[FILENAME] = hopper_bytes
    state.drop_after = 5000
    cache = tmp_path / "cache"
    with pytest.raises(BenchError):
        fetch_dataset(NAME, cache_dir=cache, base_url=url, progress=False)
    path = fetch_dataset(NAME, cache_dir=cache, base_url=url, progress=False)
    source = read_d4rl_arrays(tmp_path / "src" / FILENAME)
    fetched = read_d4rl_arrays(path)
    for key, value in source.items():
        np.testing.assert_array_equal(fetched[key], value)


def test_concurrent_fetch_of_the_same_file_is_refused(hopper_bytes: bytes, tmp_path: Path) -> None:
    import fcntl

    cache = tmp_path / "cache"
    cache.mkdir()
    with open(cache / f"{FILENAME}.lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(BenchError, match="another process is fetching hopper-medium-v2"):
            fetch_dataset("hopper-medium-v2", cache_dir=cache, base_url=str(tmp_path), progress=False)
    (tmp_path / FILENAME).write_bytes(hopper_bytes)
    assert fetch_dataset("hopper-medium-v2", cache_dir=cache, base_url=str(tmp_path), progress=False).exists()

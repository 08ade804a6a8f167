"""Fetching D4RL files from a loopback HTTP server, a folder and a file:// URL."""

from __future__ import annotations

import hashlib
import shlex
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from bench.data.download import fetch_command, fetch_dataset, verify_datasets
from bench.data.hdf5 import read_d4rl_arrays
from bench.errors import BenchError
from tests.d4rl_files import (
    ServerState,
    corrupt_tail,
    flip_bytes_in_array,
    http_server,
    make_d4rl_arrays,
    write_small_d4rl_file,
)

NAME = "hopper-medium-v2"
FILENAME = "hopper_medium-v2.hdf5"


@pytest.fixture
def server() -> Iterator[tuple[str, ServerState]]:
    with http_server() as served:
        yield served


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
    assert f"`python -m bench datasets fetch {NAME} --cache-dir {cache} --base-url {url}`" in message
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


# --- a full-size .part with broken HDF5 internals ----------------------------------------------------------


def test_corrupt_complete_part_is_moved_aside_and_the_next_fetch_starts_clean(
    server, hopper_bytes: bytes, tmp_path: Path
) -> None:
    url, state = server
    state.files[FILENAME] = hopper_bytes
    cache = tmp_path / "cache"
    cache.mkdir()
    part, invalid = cache / f"{FILENAME}.part", cache / f"{FILENAME}.invalid"
    broken = corrupt_tail(hopper_bytes, keep=0.4, seed=0)
    part.write_bytes(broken)
    with pytest.raises(BenchError) as excinfo:
        fetch_dataset(NAME, cache_dir=cache, base_url=url, progress=False)
    message = str(excinfo.value)
    assert state.ranges == [f"bytes={len(broken)}-"]  # 416: the .part has the server's length
    assert "corrupt or incomplete" in message and str(invalid) in message and "\n" not in message
    assert not part.exists() and invalid.read_bytes() == broken
    assert not (cache / FILENAME).exists()

    path = fetch_dataset(NAME, cache_dir=cache, base_url=url, progress=False)
    assert state.ranges[1:] == [None]
    assert path.read_bytes() == hopper_bytes


def test_corrupt_cached_file_is_moved_aside_and_fetched_again(server, hopper_bytes: bytes, tmp_path: Path) -> None:
    url, state = server
    state.files[FILENAME] = hopper_bytes
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / FILENAME).write_bytes(corrupt_tail(hopper_bytes, keep=0.4, seed=1))
    with pytest.warns(UserWarning, match="failed validation.*corrupt or incomplete"):
        path = fetch_dataset(NAME, cache_dir=cache, base_url=url, progress=False)
    assert path.read_bytes() == hopper_bytes


def test_force_discards_an_existing_part(server, hopper_bytes: bytes, tmp_path: Path) -> None:
    url, state = server
    state.files[FILENAME] = hopper_bytes
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / f"{FILENAME}.part").write_bytes(corrupt_tail(hopper_bytes[:2000], keep=0.4, seed=0))
    path = fetch_dataset(NAME, cache_dir=cache, base_url=url, progress=False, force=True)
    assert state.ranges == [None]
    assert path.read_bytes() == hopper_bytes


# --- the resume hint repeats the whole command --------------------------------------------------------------


def test_resume_hint_names_the_base_url_from_the_environment(
    server, hopper_bytes: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, state = server
    state.files[FILENAME] = hopper_bytes
    state.drop_after = 1000
    cache = tmp_path / "my cache"
    monkeypatch.setenv("D4RL_BASE_URL", url)
    monkeypatch.setenv("D4RL_DATASET_DIR", str(cache))
    with pytest.raises(BenchError) as excinfo:
        fetch_dataset(NAME, progress=False, sha256=hashlib.sha256(hopper_bytes).hexdigest())
    command = str(excinfo.value).split("`")[1]
    words = shlex.split(command)
    assert words[:6] == ["python", "-m", "bench", "datasets", "fetch", NAME]
    assert words[words.index("--base-url") + 1] == url
    assert words[words.index("--cache-dir") + 1] == str(cache)
    assert words[words.index("--sha256") + 1] == hashlib.sha256(hopper_bytes).hexdigest()


def test_fetch_command_spells_out_every_option(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("D4RL_DATASET_DIR", raising=False)
    assert fetch_command([NAME]) == f"python -m bench datasets fetch {NAME}"
    assert fetch_command([], all_datasets=True, cache_dir=tmp_path, base_url="/mirror dir") == (
        f"python -m bench datasets fetch --all --cache-dir {tmp_path} --base-url '/mirror dir'"
    )


# --- SHA-256: recorded beside the file, checked on request, verified later ---------------------------------


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_fetched_file_gets_its_sha256_recorded_beside_it(server, hopper_bytes: bytes, tmp_path: Path) -> None:
    url, state = server
    state.files[FILENAME] = hopper_bytes
    cache = tmp_path / "cache"
    fetch_dataset(NAME, cache_dir=cache, base_url=url, progress=False)
    assert (cache / f"{FILENAME}.sha256").read_text() == f"{sha256_of(hopper_bytes)}  {FILENAME}\n"
    # A cached file without a record (copied by hand, or fetched by an older version) gets one on the next fetch.
    (cache / f"{FILENAME}.sha256").unlink()
    fetch_dataset(NAME, cache_dir=cache, base_url=url, progress=False)
    assert (cache / f"{FILENAME}.sha256").read_text() == f"{sha256_of(hopper_bytes)}  {FILENAME}\n"
    assert len(state.ranges) == 1


def test_flipped_bytes_pass_validation_but_not_the_expected_sha256(server, hopper_bytes: bytes, tmp_path: Path) -> None:
    url, state = server
    flipped = flip_bytes_in_array(hopper_bytes, tmp_path / "src" / FILENAME, "observations", 4096)
    (tmp_path / "flipped.hdf5").write_bytes(flipped)
    read_d4rl_arrays(tmp_path / "flipped.hdf5", expected_obs_dim=11, expected_act_dim=3)  # structure is fine
    state.files[FILENAME] = flipped
    cache = tmp_path / "cache"
    good = sha256_of(hopper_bytes)
    with pytest.raises(BenchError) as excinfo:
        fetch_dataset(NAME, cache_dir=cache, base_url=url, progress=False, sha256=good.upper())
    message = str(excinfo.value)
    invalid = cache / f"{FILENAME}.invalid"
    assert good in message and sha256_of(flipped) in message and str(invalid) in message
    assert "not placed in the cache" in message
    assert invalid.read_bytes() == flipped
    assert not (cache / FILENAME).exists() and not (cache / f"{FILENAME}.sha256").exists()

    state.files[FILENAME] = hopper_bytes
    path = fetch_dataset(NAME, cache_dir=cache, base_url=url, progress=False, sha256=good)
    assert path.read_bytes() == hopper_bytes


def test_cached_file_with_another_sha256_is_moved_aside_and_fetched_again(
    server, hopper_bytes: bytes, tmp_path: Path
) -> None:
    url, state = server
    state.files[FILENAME] = flip_bytes_in_array(hopper_bytes, tmp_path / "src" / FILENAME, "observations")
    cache = tmp_path / "cache"
    fetch_dataset(NAME, cache_dir=cache, base_url=url, progress=False)  # cached, flipped bytes and all
    state.files[FILENAME] = hopper_bytes
    with pytest.warns(UserWarning, match="SHA-256"):
        path = fetch_dataset(NAME, cache_dir=cache, base_url=url, progress=False, sha256=sha256_of(hopper_bytes))
    assert path.read_bytes() == hopper_bytes
    assert (cache / f"{FILENAME}.sha256").read_text().split()[0] == sha256_of(hopper_bytes)
    # The matching cached file is kept: no further download.
    requests = len(state.ranges)
    fetch_dataset(NAME, cache_dir=cache, base_url=url, progress=False, sha256=sha256_of(hopper_bytes))
    assert len(state.ranges) == requests


def test_malformed_sha256_argument_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BenchError, match="64 hexadecimal digits"):
        fetch_dataset(NAME, cache_dir=tmp_path, base_url=str(tmp_path), progress=False, sha256="abc123")


def test_verify_recomputes_and_compares(hopper_bytes: bytes, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    fetch_dataset(NAME, cache_dir=cache, base_url=str(tmp_path / "src"), progress=False)
    good = sha256_of(hopper_bytes)
    [result] = verify_datasets(None, cache_dir=cache)
    assert (result.name, result.path, result.sha256, result.ok) == (NAME, cache / FILENAME, good, True)
    [result] = verify_datasets([NAME], cache_dir=cache, sha256=good)
    assert result.ok and good in result.line()

    # Bytes changed after the fetch: the recomputed hash differs from the recorded one.
    flipped = flip_bytes_in_array(hopper_bytes, cache / FILENAME, "observations")
    (cache / FILENAME).write_bytes(flipped)
    [result] = verify_datasets([f"d4rl:{NAME}"], cache_dir=cache)
    assert not result.ok and sha256_of(flipped) in result.line() and good in result.line()

    # Another machine's hash, given on the command line.
    (cache / FILENAME).write_bytes(hopper_bytes)
    [result] = verify_datasets([NAME], cache_dir=cache, sha256=sha256_of(flipped))
    assert not result.ok and "--sha256" in result.line()

    (cache / f"{FILENAME}.sha256").unlink()
    [result] = verify_datasets([NAME], cache_dir=cache)
    assert not result.ok and "no recorded SHA-256" in result.line() and good in result.line()


def test_verify_errors(tmp_path: Path) -> None:
    with pytest.raises(BenchError, match="no D4RL files"):
        verify_datasets(None, cache_dir=tmp_path)
    with pytest.raises(BenchError, match="not in the cache"):
        verify_datasets(["walker2d-medium-v2"], cache_dir=tmp_path)
    with pytest.raises(BenchError, match="one dataset"):
        verify_datasets(None, cache_dir=tmp_path, sha256="0" * 64)
    (tmp_path / FILENAME).write_bytes(b"data")
    (tmp_path / f"{FILENAME}.sha256").write_text("not a hash\n")
    [result] = verify_datasets([NAME], cache_dir=tmp_path)
    assert not result.ok and str(tmp_path / f"{FILENAME}.sha256") in result.line()

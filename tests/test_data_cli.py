"""`python -m bench datasets list|fetch|verify` through bench.cli.main."""

from __future__ import annotations

import hashlib
import shlex
from collections.abc import Iterator
from pathlib import Path

import h5py
import pytest

from bench.cli import main
from bench.data.commands import format_dataset_table
from bench.data.registry import D4RL_DATASETS
from tests.d4rl_files import ServerState, corrupt_tail, flip_bytes_in_array, http_server, write_small_d4rl_file

REFERENCE_RETURNS = ("-20.272305", "3234.3", "1.629008", "4592.3", "-280.178953", "12135.0")
FILENAME = "hopper_medium-v2.hdf5"


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, ServerState]]:
    monkeypatch.delenv("D4RL_BASE_URL", raising=False)
    monkeypatch.delenv("D4RL_DATASET_DIR", raising=False)
    with http_server() as served:
        yield served


@pytest.fixture
def hopper_bytes(tmp_path: Path) -> bytes:
    return write_small_d4rl_file(tmp_path / "src" / FILENAME, env="hopper").read_bytes()


def test_list_prints_the_nine_datasets_and_reference_returns(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cache, local = tmp_path / "cache", tmp_path / "local"
    assert main(["datasets", "list", "--cache-dir", str(cache), "--local-dir", str(local)]) == 0
    out = capsys.readouterr().out
    for name in D4RL_DATASETS:
        assert name in out
    for value in REFERENCE_RETURNS:
        assert value in out
    assert f"D4RL cache: {cache} (from the command line)" in out
    assert f"Local datasets: {local}" in out
    assert "Hopper-v4" in out and "402,000" in out
    assert "No local datasets" in out


def test_list_shows_cached_and_local_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    cache, local = tmp_path / "cache", tmp_path / "local"
    write_small_d4rl_file(cache / "walker2d_medium-v2.hdf5", env="walker2d")
    write_small_d4rl_file(local / "hopper-medium.hdf5", env="hopper", attrs={"env": "hopper", "source": "local"})
    (local / "broken.hdf5").write_bytes(b"junk")
    (local / "garbled.hdf5").write_bytes(corrupt_tail((local / "hopper-medium.hdf5").read_bytes(), keep=0.4))
    monkeypatch.setenv("D4RL_DATASET_DIR", str(cache))
    monkeypatch.setenv("BENCH_LOCAL_DATASET_DIR", str(local))

    def no_data_reads(self, *args, **kwargs):
        raise AssertionError("the listing read dataset contents")

    monkeypatch.setattr(h5py.Dataset, "__getitem__", no_data_reads)
    assert main(["datasets", "list"]) == 0
    out = capsys.readouterr().out
    assert "(from $D4RL_DATASET_DIR)" in out and "(from $BENCH_LOCAL_DATASET_DIR)" in out
    walker_line = next(line for line in out.splitlines() if line.startswith("walker2d-medium-v2"))
    assert "KiB" in walker_line
    hopper_line = next(line for line in out.splitlines() if line.startswith("hopper-medium-v2"))
    assert hopper_line.rstrip().endswith("no")
    assert "local data, not D4RL" in out
    local_line = next(line for line in out.splitlines() if line.startswith("local:hopper-medium"))
    assert "Hopper-v4" in local_line and "220" in local_line
    assert "unreadable" in next(line for line in out.splitlines() if line.startswith("local:broken"))
    assert "unreadable" in next(line for line in out.splitlines() if line.startswith("local:garbled"))


def test_table_function_directly(tmp_path: Path) -> None:
    table = format_dataset_table(cache_dir=tmp_path, local_dir=tmp_path / "none")
    assert table.count("-v2 ") >= 9


def test_unknown_fetch_name_exits_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["datasets", "fetch", "hoper-medium-v2", "--cache-dir", str(tmp_path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: ") and "'hopper-medium-v2'" in lines[0]


def test_fetch_from_a_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "mirror"
    write_small_d4rl_file(source / "halfcheetah_medium_replay-v2.hdf5", env="halfcheetah")
    cache = tmp_path / "cache"
    argv = [
        "datasets",
        "fetch",
        "halfcheetah-medium-replay-v2",
        "--cache-dir",
        str(cache),
        "--base-url",
        str(source),
    ]
    assert main(argv) == 0
    assert capsys.readouterr().out.strip() == (
        f"halfcheetah-medium-replay-v2: {cache / 'halfcheetah_medium_replay-v2.hdf5'}"
    )
    assert (cache / "halfcheetah_medium_replay-v2.hdf5").read_bytes() == (
        source / "halfcheetah_medium_replay-v2.hdf5"
    ).read_bytes()


def test_fetch_of_a_missing_mirror_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "datasets",
            "fetch",
            "hopper-medium-v2",
            "--cache-dir",
            str(tmp_path),
            "--base-url",
            str(tmp_path / "m"),
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "hopper_medium-v2.hdf5" in err


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


def test_fetch_onto_a_corrupt_complete_part_fails_once_in_one_line(
    server, hopper_bytes: bytes, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, state = server
    state.files[FILENAME] = hopper_bytes
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / f"{FILENAME}.part").write_bytes(corrupt_tail(hopper_bytes, keep=0.4, seed=0))
    argv = ["datasets", "fetch", "hopper-medium-v2", "--cache-dir", str(cache), "--base-url", url]
    assert main(argv) == 2
    line = one_error_line(capsys)
    assert "corrupt or incomplete" in line and f"{FILENAME}.invalid" in line
    assert main(argv) == 0
    assert (cache / FILENAME).read_bytes() == hopper_bytes


def test_resume_hint_repeats_the_whole_command(
    server, hopper_bytes: bytes, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, state = server
    state.files[FILENAME] = hopper_bytes
    state.drop_after = 1000
    cache = tmp_path / "cache"
    argv = ["datasets", "fetch", "hopper-medium-v2", "--cache-dir", str(cache), "--base-url", url, "--force"]
    assert main(argv) == 2
    hint = one_error_line(capsys).split("`")[1]
    assert hint == f"python -m bench datasets fetch hopper-medium-v2 --cache-dir {cache} --base-url {url}"
    # Followed literally (without --force, which would throw the partial away), it resumes from the same server.
    assert main(shlex.split(hint)[3:]) == 0
    assert state.ranges == [None, "bytes=1000-"]
    assert (cache / FILENAME).read_bytes() == hopper_bytes


def test_resume_hint_of_fetch_all_repeats_all(
    server, hopper_bytes: bytes, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, state = server
    state.status = 503
    assert main(["datasets", "fetch", "--all", "--cache-dir", str(tmp_path), "--base-url", url]) == 2
    hint = one_error_line(capsys).split("`")[1]
    assert hint == f"python -m bench datasets fetch --all --cache-dir {tmp_path} --base-url {url}"


def test_sha256_recorded_listed_checked_and_verified(
    server, hopper_bytes: bytes, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, state = server
    good = hashlib.sha256(hopper_bytes).hexdigest()
    flipped = flip_bytes_in_array(hopper_bytes, tmp_path / "src" / FILENAME, "observations")
    cache = tmp_path / "cache"
    fetch = ["datasets", "fetch", "hopper-medium-v2", "--cache-dir", str(cache), "--base-url", url]

    # A server that sends flipped bytes inside an array: refused by --sha256, kept aside.
    state.files[FILENAME] = flipped
    assert main([*fetch, "--sha256", good]) == 2
    line = one_error_line(capsys)
    assert good in line and hashlib.sha256(flipped).hexdigest() in line and f"{FILENAME}.invalid" in line
    assert not (cache / FILENAME).exists()

    state.files[FILENAME] = hopper_bytes
    assert main([*fetch, "--sha256", good]) == 0
    capsys.readouterr()
    assert main(["datasets", "list", "--cache-dir", str(cache), "--local-dir", str(tmp_path / "none")]) == 0
    out = capsys.readouterr().out
    assert "sha256" in out and good in next(line for line in out.splitlines() if line.startswith("hopper-medium-v2"))
    assert "walker2d-medium-v2" in out and out.count(good) == 1

    verify = ["datasets", "verify", "--cache-dir", str(cache)]
    assert main(verify) == 0
    assert capsys.readouterr().out.strip() == f"hopper-medium-v2: OK {good} ({cache / FILENAME})"
    assert main([*verify, "hopper-medium-v2", "--sha256", good]) == 0
    capsys.readouterr()

    # The cached bytes change after the fetch: verify says so and exits 2.
    (cache / FILENAME).write_bytes(flipped)
    assert main(verify) == 2
    captured = capsys.readouterr()
    assert captured.out.startswith("hopper-medium-v2: FAILED") and good in captured.out
    assert len(captured.err.splitlines()) == 1 and "1 of 1 files do not match" in captured.err


def test_sha256_needs_exactly_one_dataset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    digest = "0" * 64
    for argv in (
        ["datasets", "fetch", "--all", "--sha256", digest],
        ["datasets", "fetch", "hopper-medium-v2", "walker2d-medium-v2", "--sha256", digest],
        ["datasets", "verify", "--sha256", digest],
    ):
        assert main([*argv, "--cache-dir", str(tmp_path)]) == 2
        assert "exactly one dataset" in one_error_line(capsys)
    assert main(["datasets", "fetch", "hopper-medium-v2", "--sha256", "xyz", "--cache-dir", str(tmp_path)]) == 2
    assert "64 hexadecimal digits" in one_error_line(capsys)


def test_the_default_local_folder_is_the_one_the_makefile_fills(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # `make smoke` and `make local-data` write to .cache/local-data in the repository root; without --local-dir
    # the README's commands, run from there, must find what they made.
    smoke_grid = Path(__file__).resolve().parent.parent / "configs" / "smoke.yaml"
    monkeypatch.delenv("BENCH_LOCAL_DATASET_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    attrs = {"env": "hopper", "source": "local", "policy": "random"}
    write_small_d4rl_file(tmp_path / ".cache" / "local-data" / "hopper-random.hdf5", env="hopper", attrs=attrs)
    assert main(["datasets", "list"]) == 0
    out = capsys.readouterr().out
    assert any(line.startswith("local:hopper-random") for line in out.splitlines())
    assert main(["grid", "check", str(smoke_grid)]) == 0
    assert "grid smoke: all 1 datasets are here" in capsys.readouterr().out

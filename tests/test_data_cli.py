"""`python -m bench datasets list|fetch` through bench.cli.main."""

from __future__ import annotations

from pathlib import Path

import h5py
import pytest

from bench.cli import main
from bench.data.commands import format_dataset_table
from bench.data.registry import D4RL_DATASETS
from tests.d4rl_files import write_small_d4rl_file

REFERENCE_RETURNS = ("-20.272305", "3234.3", "1.629008", "4592.3", "-280.178953", "12135.0")


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

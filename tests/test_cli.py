"""The command line itself: output into a closed pipe, misspelled flags, `nets describe`'s help and defaults."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.cli import main
from bench.nets.spec import load_architectures

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    "argv",
    [["datasets", "list"], ["grid", "run", "configs/paper.yaml", "--dry-run"]],
    ids=["datasets-list", "grid-dry-run"],
)
def test_output_into_a_closed_pipe_exits_quietly(argv: list[str], tmp_path: Path) -> None:
    # `python -m bench ... | head` once head has exited: the pipe's read end is closed before the command writes.
    read_end, write_end = os.pipe()
    os.close(read_end)
    env = {
        **os.environ,
        "D4RL_DATASET_DIR": str(tmp_path / "d4rl"),
        "BENCH_LOCAL_DATASET_DIR": str(tmp_path / "local"),
    }
    extra = ["--results", str(tmp_path / "results")] if argv[0] == "grid" else []
    try:
        done = subprocess.run(
            [sys.executable, "-m", "bench", *argv, *extra],
            stdout=write_end,
            stderr=subprocess.PIPE,
            cwd=ROOT,
            env=env,
            text=True,
            timeout=300,
        )
    finally:
        os.close(write_end)
    assert done.stderr == ""
    assert done.returncode == 141


@pytest.mark.parametrize(
    ("argv", "usage", "suggestion"),
    [
        (["nets", "describe", "mlp", "--evn", "hopper"], "python -m bench nets describe", "--env"),
        (["nets", "describe", "mlp", "--evn=hopper"], "python -m bench nets describe", "--env"),
        (
            ["run", "--dataset", "local:x", "--arch", "mlp", "--out", "x", "--stpes", "9"],
            "python -m bench run",
            "--steps",
        ),
        (["grid", "run", "configs/smoke.yaml", "--dryrun"], "python -m bench grid run", "--dry-run"),
    ],
)
def test_a_misspelled_flag_shows_the_subcommand_usage_and_the_nearest_flag(
    argv: list[str], usage: str, suggestion: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"usage: {usage} ")
    assert f"did you mean {suggestion}?" in err.splitlines()[-1]


def test_an_unknown_argument_without_a_near_flag_is_still_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["nets", "describe", "mlp", "extra"])
    assert exit_info.value.code == 2
    last = capsys.readouterr().err.splitlines()[-1]
    assert "unrecognized arguments: extra" in last and "did you mean" not in last


def test_nets_describe_help_lists_the_architectures(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["nets", "describe", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for name in load_architectures():
        assert name in out.split(), name
    assert "walker2d" in out


def test_nets_describe_says_when_it_picks_the_environment(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["nets", "describe", "mlp"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert "walker2d" in first and "default" in first and "--env" in first
    assert main(["nets", "describe", "mlp", "--env", "hopper"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert "hopper" in first and "default" not in first

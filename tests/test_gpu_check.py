"""`python -m benchmarks.gpu_check`: the GPU box's checks in one command (its parts run for real on a GPU; here
the command's plumbing: refusals, the batched paper grid it estimates, logs and exit status)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from bench.grid.estimate import plan_groups
from bench.grid.spec import load_grid
from benchmarks import gpu_check


def test_without_a_gpu_it_says_so_and_exits_2(monkeypatch: pytest.MonkeyPatch, capsys, tmp_path: Path) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_check.main(["--out", str(tmp_path / "out")]) == 2
    assert "torch sees no CUDA device" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_an_unknown_part_is_refused_with_the_choices(capsys) -> None:
    assert gpu_check.main(["--parts", "tests,speeed"]) == 2
    assert "choose from tests, speed, estimate" in capsys.readouterr().err


def test_the_batched_paper_grid_trains_five_seeds_side_by_side_compiled(tmp_path: Path) -> None:
    paper = load_grid(gpu_check.PAPER_GRID)
    batched = load_grid(gpu_check.batched_paper_grid(tmp_path / "batched.yaml"))
    assert (batched.seeds_per_process, batched.compile) == (5, True)
    assert list(batched.architectures) == list(paper.architectures) and batched.datasets == paper.datasets
    assert batched.steps == paper.steps == 1_000_000
    plans = plan_groups(batched, None, datasets=[gpu_check.ESTIMATE_DATASET])
    assert [(p.arch, p.seeds) for p in plans] == [(arch, (0, 1, 2, 3, 4)) for arch in paper.architectures]


def test_every_part_runs_logs_its_output_and_a_failure_sets_the_status(
    monkeypatch: pytest.MonkeyPatch, capsys, tmp_path: Path
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Test GPU")
    commands = {
        "tests": [[sys.executable, "-c", "print('4 passed')"]],
        "speed": [[sys.executable, "-c", "import sys; print('no kernel image'); sys.exit(1)"]],
        "estimate": [[sys.executable, "-c", "print('eager')"], [sys.executable, "-c", "print('compiled')"]],
    }
    monkeypatch.setattr(gpu_check, "part_commands", lambda part, *args: commands[part])
    out = tmp_path / "out"
    assert gpu_check.main(["--out", str(out)]) == 1
    printed = capsys.readouterr().out
    assert "GPU check on Test GPU" in printed and "4 passed" in printed
    assert [line.split()[:2] for line in printed.splitlines()[-3:]] == [
        ["tests", "ok"],
        ["speed", "FAILED"],
        ["estimate", "ok"],
    ]
    assert "no kernel image" in (out / "speed.txt").read_text()
    estimate = (out / "estimate.txt").read_text()
    assert estimate.index("eager") < estimate.index("compiled")
    assert gpu_check.main(["--out", str(out), "--parts", "tests"]) == 0
    assert "no kernel image" in (out / "speed.txt").read_text()  # a part not run keeps its last output


def test_the_tests_part_collects_every_gpu_test_from_the_files_it_names() -> None:
    """The tests part names the files that hold GPU tests instead of the whole folder (whose other files import
    what a GPU box with a torch of its own may lack); pytest's own selection over the folder finds no other."""
    import subprocess

    files = gpu_check.gpu_test_files()
    assert Path("tests/test_device.py") in files and Path("tests/test_train_group.py") in files
    (command,) = gpu_check.part_commands("tests", Path("unused"), 1.0, 1)
    assert command[-len(files) :] == [str(path) for path in files] and "-m" in command and "cuda" in command
    collected = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-m", "cuda", "-p", "no:cacheprovider", "tests"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    nodes = [line for line in collected if "::" in line]
    assert nodes and {Path(node.split("::")[0]) for node in nodes} <= set(files)

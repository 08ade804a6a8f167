"""The suite's checks on a GPU box, in one command, before a grid is planned or run there.

    python -m benchmarks.gpu_check [--out DIR] [--parts tests,speed,estimate] [--seconds 3] [--rounds 3]
    make gpu-check

Parts, each run as its own process, its output shown as it comes and saved to DIR/<part>.txt:

- tests: `pytest -m cuda`, the tests that need a GPU: a cell trained, interrupted and resumed on it; a group of
  seeds extending its final state there to a longer budget (and a CPU run refusing that state); MLP, KAN (its
  own autograd included) and RBF networks, and a CQL step of three seeds side by side, computing there what they
  compute on the CPU; 200 compiled steps (CUDA graphs) agreeing with the eager step; every algorithm's step,
  and CQL's compiled one, never waiting for the GPU (torch's sync debug mode); `grid estimate` timing there.
  Pytest collects only the files that hold GPU tests (those that take the mark from tests/devices.py), so a GPU
  box with a torch of its own needs only their imports, not the report's or the launchers'.
- speed: `python -m bench speed cql --device cuda --no-peers`, gradient steps/s of CORL's 3 x 256 and of 2 x 64
  networks, one seed and five side by side, eager and compiled, and the share of the GPU's matmul rate.
- estimate: `python -m bench grid estimate` of the paper grid (configs/paper.yaml) on the GPU, its Walker2d cells
  (every architecture; Halfcheetah has the same sizes), twice: as the file runs it (one seed per process, eager)
  and with five seeds side by side, compiled (a copy of the file with `seeds_per_process: 5`, `compile: true`,
  in DIR). Its process-hours are measured GPU-hours of one process at a time, to set against the README's
  estimate.

Every part runs even if one before it failed; the command exits with 1 if any failed, with 2 if torch sees no
CUDA device. Compilation takes about a minute per compiled process kind, so `--parts` lets the parts run in
separate calls on a machine held for a limited time.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import torch
import yaml

PARTS = ("tests", "speed", "estimate")
PAPER_GRID = Path("configs/paper.yaml")
ESTIMATE_DATASET = "d4rl:walker2d-medium-v2"
TESTS = Path("tests")


def gpu_test_files(tests: Path = TESTS) -> list[Path]:
    """The test files that hold GPU tests: those that take the `cuda` mark from tests/devices.py."""
    return [path for path in sorted(tests.glob("test_*.py")) if "from tests.devices import" in path.read_text()]


def part_commands(part: str, out: Path, seconds: float, rounds: int) -> list[list[str]]:
    """The commands of one part, each a process of its own."""
    python = [sys.executable]
    if part == "tests":
        files = [str(path) for path in gpu_test_files()]
        return [[*python, "-m", "pytest", "-m", "cuda", "-p", "no:cacheprovider", "-q", *files]]
    if part == "speed":
        speed = [*python, "-m", "bench", "speed", "cql", "--device", "cuda", "--no-peers"]
        return [[*speed, "--rounds", str(rounds), "--seconds", str(seconds)]]
    if part == "estimate":
        batched = batched_paper_grid(out / "paper-5-seeds-compiled.yaml")
        estimate = [*python, "-m", "bench", "grid", "estimate", "--all", "--datasets", ESTIMATE_DATASET]
        return [[*estimate, "--seconds", str(seconds), str(grid)] for grid in (PAPER_GRID, batched)]
    raise ValueError(f"unknown part {part!r}; the parts are {', '.join(PARTS)}")


def batched_paper_grid(path: Path) -> Path:
    """A copy of the paper grid that trains five seeds side by side per process with the compiled step."""
    spec = yaml.safe_load(PAPER_GRID.read_text())
    spec.update(name="paper-5-seeds-compiled", seeds_per_process=5, compile=True)
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def run_logged(command: list[str], log: Path) -> int:
    """Run `command`, its output shown as it comes and appended to `log`; its exit status."""
    with log.open("a") as file:
        file.write(f"$ {' '.join(command)}\n")
        file.flush()
        process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},  # progress lines as they come, not at the end
        )
        assert process.stdout is not None
        for line in process.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            file.write(line)
        return process.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path(".cache/gpu-check"), help="folder for each part's output")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"which of {', '.join(PARTS)} to run, in order")
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds timed per row and round, per timing")
    parser.add_argument("--rounds", type=int, default=3, help="alternated rounds of the speed table")
    args = parser.parse_args(argv)
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = [p for p in parts if p not in PARTS]
    if unknown or not parts:
        print(f"error: --parts {args.parts!r}: choose from {', '.join(PARTS)}", file=sys.stderr)
        return 2
    if not torch.cuda.is_available():
        print(
            "error: torch sees no CUDA device; this command checks a GPU box (`nvidia-smi`, and a CUDA build of "
            "torch: `python -c 'import torch; print(torch.version.cuda)'`)",
            file=sys.stderr,
        )
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    name = torch.cuda.get_device_name(torch.device("cuda"))
    print(f"GPU check on {name} (torch {torch.__version__}, CUDA {torch.version.cuda}); output in {args.out}/")
    results = []
    for part in parts:
        log = args.out / f"{part}.txt"
        log.write_text(f"# {name}, torch {torch.__version__}\n")
        start = time.perf_counter()
        statuses = [run_logged(command, log) for command in part_commands(part, args.out, args.seconds, args.rounds)]
        failed = any(statuses)
        results.append((part, failed, time.perf_counter() - start, log))
    print()
    for part, failed, seconds, log in results:
        print(f"{part:<9} {'FAILED' if failed else 'ok':<7} {seconds:6.0f} s   {log}")
    return 1 if any(failed for _, failed, _, _ in results) else 0


if __name__ == "__main__":
    sys.exit(main())

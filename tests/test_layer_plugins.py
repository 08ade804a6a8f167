"""A layer type registered from outside the package trains and is counted like the built-in ones."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import tests.plugin_cheby  # noqa: F401  (registers the "cheby" layer type)
from bench.agents.cql import CQL, CQLConfig
from bench.errors import BenchError
from bench.nets.layers import register_layer_type
from bench.nets.spec import count_parameters, get_architecture, parse_network_spec
from tests.d4rl_files import write_small_d4rl_file
from tests.test_train_group import random_batch

ROOT = Path(__file__).resolve().parents[1]
ARCHS = "cheby-small:\n  actor: cheby[4]\n  critic: mlp[16]\n  description: Chebyshev-KAN actor.\n"


def test_a_registered_layer_type_builds_trains_and_is_counted(tmp_path: Path) -> None:
    arch_file = tmp_path / "archs.yaml"
    arch_file.write_text(ARCHS)
    arch = get_architecture("cheby-small", arch_file)
    assert parse_network_spec("cheby[4]") == arch.actor
    members = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        members.append(CQL(17, 6, arch, CQLConfig(batch_size=8, cql_n_actions=2)))
    # Walker2d's actor 17 -> 4 -> 12 at 5 coefficients per edge, plus CORL's two log-std scalars.
    assert count_parameters(members[0].actor.network) == 17 * 4 * 5 + 4 * 12 * 5 == 580
    population = CQL.from_members(members)
    before = population.actor.network.layers[0].coefficients.detach().clone()
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        assert torch.isfinite(population.update(random_batch(2, 8, g, obs=17, act=6))).all()
    assert not torch.equal(population.actor.network.layers[0].coefficients, before)
    obs = torch.randn(5, 17)
    alone = population.actor.member(1, arch.actor, arch.kan)
    torch.testing.assert_close(alone(obs, deterministic=True)[0], population.act(obs.expand(2, 5, 17))[1])


def test_layer_type_names_are_checked() -> None:
    with pytest.raises(BenchError, match="already registered"):
        register_layer_type("mlp", lambda *args: None)
    with pytest.raises(BenchError, match="lowercase letters"):
        register_layer_type("Cheby2", lambda *args: None)
    with pytest.raises(BenchError, match=r"'cheb\[4\]': network kind 'cheb': use one of cheby, kan, mlp"):
        parse_network_spec("cheb[4]")


def test_a_plugin_named_in_the_environment_reaches_a_training_run(tmp_path: Path) -> None:
    data = write_small_d4rl_file(tmp_path / "hopper-tiny.hdf5", env="hopper")
    arch_file = tmp_path / "archs.yaml"
    arch_file.write_text(ARCHS)
    out = tmp_path / "cheby.json"
    command = [sys.executable, "-m", "bench", "run", "--dataset", f"local:{data}", "--arch", "cheby-small"]
    command += ["--arch-file", str(arch_file), "--steps", "2", "--epoch-steps", "2", "--eval-every", "2"]
    command += ["--eval-episodes", "1", "--device", "cpu", "--threads", "1", "--no-progress"]
    command += ["--set", "batch_size=8", "--set", "cql_n_actions=2", "--out", str(out)]
    env = {**os.environ, "BENCH_LAYER_PLUGINS": str(ROOT / "tests" / "plugin_cheby.py")}
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    record = json.loads(out.read_text())
    assert record["status"] == "done" and record["architecture"]["actor"] == "cheby[4]"
    assert record["parameters"]["actor_network"] == 11 * 4 * 5 + 4 * 6 * 5  # Hopper: 11 -> 4 -> 6
    without = {k: v for k, v in env.items() if k != "BENCH_LAYER_PLUGINS"}
    command[command.index(str(out))] = str(tmp_path / "refused.json")
    refused = subprocess.run(command, cwd=tmp_path, env=without, capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2 and "BENCH_LAYER_PLUGINS" in refused.stderr

"""The measures behind `python -m bench speed cql`: FLOPs of a CQL step, operator counts, the matmul rate, and
the d3rlpy peer run."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from bench.agents.cql import CQL, Batch, CQLConfig
from bench.errors import BenchError
from bench.nets.spec import Architecture, parse_network_spec
from bench.perf import PEERS_PYTHON, count_ops, cql_step_flops, matmul_gflops, mlp_layer_flops, run_peer

WALKER_OBS, WALKER_ACT = 17, 6


def test_mlp_layer_flops_counts_two_per_weight() -> None:
    assert mlp_layer_flops(3, [4, 5], 2) == [2 * 3 * 4, 2 * 4 * 5, 2 * 5 * 2]
    assert mlp_layer_flops(3, [], 1) == [6]


def test_cql_step_flops_at_the_spec_sizes() -> None:
    # SPEC section 8: about 15 GFLOP with CORL's 3 x 256 networks as CORL runs them, about 0.5 GFLOP with 2 x 64.
    # The suite's step runs the actor once per state and next state, where CORL runs it on all 2N + 1 = 21
    # repeated states: 19 fewer actor passes per state.
    corl = cql_step_flops(WALKER_OBS, WALKER_ACT, [256] * 3, [256] * 3)
    small = cql_step_flops(WALKER_OBS, WALKER_ACT, [64] * 2, [64] * 2)
    actor_forward = sum(mlp_layer_flops(WALKER_OBS, [256] * 3, 2 * WALKER_ACT))
    assert 14.5e9 < corl + 19 * 256 * actor_forward < 15.5e9
    assert 13.5e9 < corl < 13.8e9
    assert 0.45e9 < small < 0.65e9
    assert cql_step_flops(WALKER_OBS, WALKER_ACT, [64] * 2, [64] * 2, population=5) == 5 * small


@pytest.mark.parametrize("population", [1, 2])
def test_cql_step_flops_equals_the_agents_update(population: int) -> None:
    # Actor and critic of different shapes, three critics and three sampled actions, so that a swapped or
    # miscounted pass shows; torch's own FLOP counter on the real update is the oracle.
    obs_dim, act_dim, batch, n_actions, critics = 5, 3, 8, 3, 3
    arch = Architecture("t", parse_network_spec("mlp[12,7]"), parse_network_spec("mlp[9]"))
    config = CQLConfig(batch_size=batch, cql_n_actions=n_actions, num_critics=critics)
    agent = CQL(obs_dim, act_dim, arch, config, population=population)
    p = population
    data = Batch(
        torch.randn(p, batch, obs_dim),
        torch.rand(p, batch, act_dim) * 2 - 1,
        torch.randn(p, batch),
        torch.randn(p, batch, obs_dim),
        torch.zeros(p, batch),
    )
    with FlopCounterMode(display=False) as counter:
        agent.update(data)
    expected = cql_step_flops(obs_dim, act_dim, [12, 7], [9], batch, n_actions, critics, population)
    assert counter.get_total_flops() == expected


def test_cql_step_flops_rejects_non_positive_sizes() -> None:
    with pytest.raises(ValueError, match="positive"):
        cql_step_flops(WALKER_OBS, WALKER_ACT, [64], [64], batch_size=0)


def test_count_ops_counts_each_aten_call() -> None:
    x = torch.randn(4, 4)
    assert count_ops(lambda t: torch.relu(t @ t + 1.0), x) == 3  # mm, add, relu

    def five_adds(t: torch.Tensor) -> torch.Tensor:
        for _ in range(5):
            t = t + 1
        return t

    assert count_ops(five_adds, x) == 5


def test_count_ops_includes_the_backward() -> None:
    x = torch.randn(4, 4)
    w = torch.randn(4, 4, requires_grad=True)
    forward = count_ops(lambda: (x @ w).sum())
    assert count_ops(lambda: (x @ w).sum().backward()) > forward


def test_matmul_gflops_is_a_rate_and_restores_threads() -> None:
    threads = torch.get_num_threads()
    rate = matmul_gflops(size=64, repeats=2, threads=1)
    assert math.isfinite(rate) and rate > 0
    assert torch.get_num_threads() == threads


def test_run_peer_names_make_target_when_the_venv_is_missing(tmp_path: Path) -> None:
    with pytest.raises(BenchError, match="make bench-peers"):
        run_peer(tmp_path / "no-venv" / "bin" / "python", [64, 64], steps=2, warmup=1, threads=1)


def _script(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "peer.py"
    path.write_text(textwrap.dedent(body))
    return path


def test_run_peer_passes_the_settings_and_returns_the_json(tmp_path: Path) -> None:
    # A stand-in peer that reports the command line it got, in the real script's JSON shape.
    script = _script(
        tmp_path,
        """
        import json, sys
        print("log line", file=sys.stderr)
        args = dict(zip(sys.argv[1::2], sys.argv[2::2]))
        print(json.dumps({
            "peer": "stub", "version": "0", "hidden": [int(w) for w in args["--hidden"].split(",")],
            "batch_size": int(args["--batch-size"]), "steps": int(args["--steps"]), "seconds": 1.0,
            "steps_per_s": 1.0, "threads": int(args["--threads"]), "warmup": int(args["--warmup"]),
        }))
        """,
    )
    result = run_peer(Path(sys.executable), [256, 128], steps=7, warmup=3, threads=2, script=script)
    assert result["hidden"] == [256, 128]
    assert (result["steps"], result["warmup"], result["threads"], result["batch_size"]) == (7, 3, 2, 256)


def test_run_peer_reports_a_failing_script(tmp_path: Path) -> None:
    script = _script(tmp_path, "import sys\nprint('ModuleNotFoundError: d3rlpy', file=sys.stderr)\nsys.exit(3)\n")
    with pytest.raises(BenchError, match=r"exit 3.*d3rlpy.*make bench-peers"):
        run_peer(Path(sys.executable), [64], steps=2, warmup=1, threads=1, script=script)


@pytest.mark.parametrize("output", ["", "not json", json.dumps({"peer": "d3rlpy"}), "[1, 2]", "{}\n{}"])
def test_run_peer_rejects_output_that_is_not_one_result(tmp_path: Path, output: str) -> None:
    script = _script(tmp_path, f"print({output!r})\n")
    with pytest.raises(BenchError, match="not one JSON result line"):
        run_peer(Path(sys.executable), [64], steps=2, warmup=1, threads=1, script=script)


@pytest.mark.slow
@pytest.mark.skipif(not PEERS_PYTHON.exists(), reason="peers environment not built (make bench-peers)")
def test_run_peer_runs_d3rlpy_cql() -> None:
    result = run_peer(PEERS_PYTHON, [16, 16], steps=3, warmup=1, threads=1, batch_size=32)
    assert result["peer"] == "d3rlpy" and result["version"] == "2.8.1"
    assert result["hidden"] == [16, 16] and result["steps"] == 3 and result["batch_size"] == 32
    assert result["threads"] == 1 and result["steps_per_s"] > 0


_FAULTS_PER_STEP = """
import resource, statistics, sys, torch
from bench.perf import retain_freed_memory
from bench.speed import architecture_agent, synthetic_data, time_steps
torch.set_num_threads(1)
retained = retain_freed_memory() if sys.argv[1] == "retain" else False
agent = architecture_agent("mlp-small", 2, False, torch.device("cpu"))
data = synthetic_data(torch.device("cpu"))
time_steps(agent, data, seconds=0.0, min_steps=3)  # optimizer state, the heap's high-water mark
faults = []
for _ in range(5):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    time_steps(agent, data, seconds=0.0, min_steps=3)  # one sizing step and three timed ones
    faults.append((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 4)
print(retained, statistics.median(faults))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc settings")
def test_retain_freed_memory_stops_the_page_faults_of_cql_steps() -> None:
    def faults(mode: str) -> tuple[str, float]:
        out = subprocess.run(
            [sys.executable, "-c", _FAULTS_PER_STEP, mode], capture_output=True, text=True, check=True
        ).stdout.split()
        return out[0], float(out[1])

    default_flag, default_faults = faults("default")
    retained_flag, retained_faults = faults("retain")
    assert (default_flag, retained_flag) == ("False", "True")
    # Two seeds of 64-wide critics make activations of several MB: with glibc's defaults a step faults in
    # thousands of fresh pages (measured 2,500-13,200); with the freed memory kept, next to none on a quiet
    # machine (0-1). The kept heap still grows now and then (a round of 80-900 faults per step, measured), and
    # beside other busy processes in most rounds of a run (medians of 58 and 79 measured), so the bound is a
    # fraction of the default's faults, not a count: the median of five rounds, at most a tenth.
    assert default_faults > 1000
    assert retained_faults < default_faults / 10


def test_speed_agents_take_named_architectures_from_a_file(tmp_path: Path) -> None:
    """`benchmarks.hybrid_speed --arch-file` times a grid's own architectures (the CPU study's ablations)."""
    from bench.speed import architecture_agent

    arch_file = tmp_path / "architectures.yaml"
    arch_file.write_text("rbf2:\n  actor: rbf[2]\n  critic: mlp[8]\n")
    agent = architecture_agent("rbf2", 3, False, torch.device("cpu"), arch_file)
    assert agent.population == 3 and str(agent.arch.actor) == "rbf[2]" and str(agent.arch.critic) == "mlp[8]"
    with pytest.raises(BenchError, match="rbf3"):
        architecture_agent("rbf3", 1, False, torch.device("cpu"), arch_file)


def test_group_size_benchmark_times_every_size_against_one_seed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`benchmarks.group_size`: one row per (architecture, seeds side by side), one seed added as the reference."""
    from benchmarks import group_size

    arch_file = tmp_path / "architectures.yaml"
    arch_file.write_text("tiny:\n  actor: mlp[4]\n  critic: mlp[4]\n")
    argv = ["group_size", "--arch-file", str(arch_file), "--archs", "tiny", "--sizes", "2", "--rounds", "1"]
    monkeypatch.setattr(sys, "argv", [*argv, "--seconds", "0.01", "--threads", "1"])
    group_size.main()
    rows = [line.split() for line in capsys.readouterr().out.splitlines() if line.startswith("tiny")]
    assert [row[:2] for row in rows] == [["tiny", "1"], ["tiny", "2"]]
    assert rows[0][4] == "1.00x"  # one seed against itself
    seed_steps = float(rows[1][3])
    assert seed_steps == pytest.approx(2 * float(rows[1][2]), rel=0.05)

"""`bench speed cql` builds its table from real timed steps (no peer environment needed with --no-peers)."""

from __future__ import annotations

import pytest
import torch

from bench.cli import main
from bench.errors import BenchError
from bench.speed import run_cql_speed


def test_speed_table_times_one_seed_and_seeds_side_by_side() -> None:
    text = run_cql_speed(sizes=("small",), seeds=(1, 2), modes=("eager",), rounds=1, seconds=0.05, peers=False)
    header, _rule, *rows = text.splitlines()[1:]
    assert "seed-steps/s" in header and "ops per seed-step" in header
    assert [row.split()[:4] for row in rows] == [["2x64", "suite", "1", "eager"], ["2x64", "suite", "2", "eager"]]
    one, two = (row.split() for row in rows)
    assert float(one[4]) > 0 and float(two[4]) > 0
    # Two seeds in one step run about as many operators as one: that is what seed batching saves on a GPU.
    ops_one, ops_two = int(one[-3].replace(",", "")), int(two[-3].replace(",", ""))
    assert ops_one <= ops_two < 1.1 * ops_one
    assert float(two[-2].replace(",", "")) == pytest.approx(ops_two / 2, abs=1)


def test_speed_rejects_unknown_sizes_and_a_missing_peer_environment(tmp_path, capsys) -> None:
    with pytest.raises(BenchError, match="unknown size"):
        run_cql_speed(sizes=("huge",), peers=False)
    with pytest.raises(BenchError, match="make bench-peers"):
        run_cql_speed(sizes=("small",), peers_python=tmp_path / "missing" / "python")
    assert main(["speed", "cql", "--modes", "jit", "--no-peers"]) == 2
    assert "unknown mode" in capsys.readouterr().err
    if not torch.cuda.is_available():  # one line naming the way out, not torch's assertion from inside CUDA
        assert main(["speed", "cql", "--device", "cuda", "--no-peers"]) == 2
        assert "torch sees no CUDA device; use --device cpu or auto" in capsys.readouterr().err

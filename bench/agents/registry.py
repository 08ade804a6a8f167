"""The offline algorithms by name: `--algo` on `bench run`, `algo:` in grid files and `config.algo` in records."""

from __future__ import annotations

from bench.agents import bc, cql, iql, td3_bc
from bench.agents.base import Algorithm
from bench.errors import BenchError, did_you_mean

# The algorithm of a configuration that names none: every record written before other algorithms existed.
DEFAULT_ALGORITHM = "cql"

ALGORITHMS: dict[str, Algorithm] = {
    "cql": Algorithm(
        "cql", "CQL", cql.CQL, cql.CQLConfig, cql.single_actor, "Conservative Q-Learning, CQL(H) on SAC (CORL)"
    ),
    "td3bc": Algorithm(
        "td3bc", "TD3+BC", td3_bc.TD3BC, td3_bc.TD3BCConfig, td3_bc.single_actor, "TD3 with behaviour cloning (CORL)"
    ),
    "iql": Algorithm(
        "iql",
        "IQL",
        iql.IQL,
        iql.IQLConfig,
        iql.single_actor,
        "Implicit Q-Learning (CORL)",
        budget_dependence="its actor's learning rate follows a cosine schedule over the run's steps (CORL's)",
    ),
    "bc": Algorithm("bc", "BC", bc.BC, bc.BCConfig, bc.single_actor, "behaviour cloning (CORL)"),
}


def get_algorithm(name: str) -> Algorithm:
    """The algorithm `name`; BenchError naming the known ones otherwise."""
    if name in ALGORITHMS:
        return ALGORITHMS[name]
    hint = did_you_mean(name, ALGORITHMS)
    raise BenchError(f"unknown algorithm {name!r}: {hint}use one of {', '.join(ALGORITHMS)}")


__all__ = ["ALGORITHMS", "DEFAULT_ALGORITHM", "get_algorithm"]

"""Networks: KAN layers, MLPs, CQL's actor and critic heads, architecture specs and parameter counts."""

from bench.nets.heads import EnsembleCritic, TanhGaussianActor
from bench.nets.kan import KAN, KANLinear, KANOptions
from bench.nets.mlp import MLP, EnsembleLinear
from bench.nets.spec import (
    Architecture,
    NetworkSpec,
    build_network,
    count_parameters,
    get_architecture,
    load_architectures,
    parse_network_spec,
)

__all__ = [
    "KAN",
    "MLP",
    "Architecture",
    "EnsembleCritic",
    "EnsembleLinear",
    "KANLinear",
    "KANOptions",
    "NetworkSpec",
    "TanhGaussianActor",
    "build_network",
    "count_parameters",
    "get_architecture",
    "load_architectures",
    "parse_network_spec",
]

"""`python -m bench nets describe ARCH`: layer tables and parameter counts of an architecture's networks."""

from __future__ import annotations

from pathlib import Path

from tabulate import tabulate
from torch import nn

from bench.nets.kan import KANLinear
from bench.nets.spec import NetworkSpec, build_network, count_parameters, get_architecture

CRITICS = 2  # CQL's two critics (CQLConfig.num_critics)
DEFAULT_ENV = "walker2d"  # the sizes architectures.yaml quotes its counts in


def describe_architecture(name: str, env: str | None = None, arch_file: Path | None = None) -> str:
    """Actor and critic layer tables (layer, type, in -> out, parameters), totals and KAN options.

    Sizes come from `env`; without one, from walker2d, and the first line says so.
    """
    from bench.data.registry import get_env_spec

    arch = get_architecture(name, arch_file)
    env_spec = get_env_spec(env or DEFAULT_ENV)
    obs_dim, act_dim = env_spec.obs_dim, env_spec.act_dim
    actor = build_network(arch.actor, obs_dim, 2 * act_dim, arch.kan)
    critic = build_network(arch.critic, obs_dim + act_dim, 1, arch.kan)
    uses_kan = bool({"kan", "rbf"} & {arch.actor.kind, arch.critic.kind})  # both read the KAN options
    chosen = "" if env else "; the default environment, --env hopper|walker2d|halfcheetah for another"
    lines = [f"Architecture {arch.name} on {env_spec.name} (obs {obs_dim}, actions {act_dim}{chosen})"]
    if arch.description:
        lines.append(arch.description)
    if uses_kan:
        k = arch.kan
        kinds = {arch.actor.kind, arch.critic.kind}
        per_edge = [f"{k.params_per_edge} parameters per B-spline edge"] if "kan" in kinds else []
        if "rbf" in kinds:
            per_edge.append(
                f"rbf layers: {k.num_bases} Gaussians{' and a SiLU weight' if k.base_activation else ''} per edge, "
                "a LayerNorm affine (2) per input"
            )
        lines.append(f"KAN options: {k.summary()}; {'; '.join(per_edge)}")
    lines += [
        "",
        f"Actor {arch.actor}: obs -> mean and log-std of {act_dim} actions",
        _layer_table(actor, arch.actor),
        "(plus CORL's 2 trainable log-std scalars, not counted: the paper's counts leave them out)",
        "",
        f"Critic {arch.critic}, per critic: concat(obs, action) -> Q",
        _layer_table(critic, arch.critic),
        f"{CRITICS} critics: {CRITICS * count_parameters(critic):,} parameters (target copies not counted)",
    ]
    return "\n".join(lines)


def _layer_table(network: nn.Module, spec: NetworkSpec) -> str:
    rows = []
    last = len(network.layers) - 1
    for i, layer in enumerate(network.layers):
        rows.append([i, _layer_type(layer, i == last), _shape(layer), f"{count_parameters(layer):,}"])
    rows.append(["total", str(spec), "", f"{count_parameters(network):,}"])
    return tabulate(rows, headers=["layer", "type", "in -> out", "parameters"], tablefmt="simple")


def _layer_type(layer: nn.Module, is_last: bool) -> str:
    if isinstance(layer, KANLinear):
        return "KANLinear" if layer.options.base_activation else "KANLinear (spline-only)"
    if isinstance(layer, nn.Linear):
        return "Linear" if is_last else "Linear + ReLU"
    return type(layer).__name__  # a plug-in layer type's class


def _shape(layer: nn.Module) -> str:
    sizes = getattr(layer, "in_features", None), getattr(layer, "out_features", None)
    return "?" if None in sizes else f"{sizes[0]} -> {sizes[1]}"

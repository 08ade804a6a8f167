"""The agent interface: what the trainer, the grid and the report need of an offline algorithm, and nothing more.

An agent trains a population of P independent agents at once (seeds side by side): every network has a leading
member dim (an ensemble of critics has num_critics x P members, critic-major), each member sees its own
minibatch, and the loss is the sum of the members' losses, so each member gets exactly the gradient it gets
alone. One seed is a population of one. The trainer builds one agent per seed (after seeding with that seed)
and stacks them with `from_members`, so a member starts from the parameters its seed gives alone.

`Algorithm` names an agent class with its configuration class; `bench.agents.registry.ALGORITHMS` lists them.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import torch
from torch import Tensor, nn

from bench.nets.kan import KANOptions
from bench.nets.spec import Architecture, NetworkSpec, count_parameters


class Batch(NamedTuple):
    """One minibatch per seed of the population: every field has a leading dim P."""

    observations: Tensor  # (P, B, obs_dim), already normalized
    actions: Tensor  # (P, B, act_dim)
    rewards: Tensor  # (P, B)
    next_observations: Tensor  # (P, B, obs_dim)
    dones: Tensor  # (P, B), 1.0 where the episode terminated


class Agent(Protocol):
    """A population of offline agents as the trainer drives it."""

    # The rows of `update`'s result, each recorded per epoch in a record's `diagnostics`.
    loss_names: tuple[str, ...]
    # What the progress bar shows: label -> one of loss_names.
    progress: dict[str, str]
    population: int
    device: torch.device
    total_steps: int

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        arch: Architecture,
        config: Any,
        device: torch.device | str = "cpu",
        max_action: float = 1.0,
        population: int = 1,
        noise_seed: int = 0,
        compiled: bool = False,
        run_steps: int = 1_000_000,
    ) -> None: ...

    @classmethod
    def from_members(cls, members: list[Any], noise_seed: int = 0, compiled: bool = False) -> Agent:
        """One population agent holding `members`, fresh agents (population 1, no update yet) of one
        architecture and configuration."""
        ...

    def update(self, batch: Batch) -> Tensor:
        """One gradient step of every member; the losses as one (len(loss_names), P) tensor on the device."""
        ...

    def act(self, observations: Tensor) -> Tensor:
        """Deterministic evaluation actions: observations (P, N, obs_dim) -> actions (P, N, act_dim)."""
        ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    def member_actor(self, index: int) -> nn.Module:
        """Member `index`'s actor as a standalone network (no population dim): the final policy a record keeps."""
        ...

    def parameter_counts(self) -> dict[str, int]:
        """The trainable parameters of one member, as a record's `parameters` block: actor, actor_network (its
        body without extra scalars), critic (one critic), critics_total, and any other network by name."""
        ...


@dataclass(frozen=True)
class Algorithm:
    """An offline algorithm: its name in configs and records, its label in tables, its agent and config types,
    and how its final actor is rebuilt from a record."""

    name: str
    label: str
    agent: type[Agent]
    config: type
    # (obs_dim, act_dim, actor spec, KAN options, config) -> a fresh single actor of the class `member_actor`
    # returns, to load a saved final actor into.
    build_actor: Callable[[int, int, NetworkSpec, KANOptions, Any], nn.Module]
    description: str = ""
    # What of the update depends on the run's budget (the agent's `run_steps`), "" when nothing does. A run of an
    # algorithm whose update does is not a shorter run continued, so it cannot extend another run's final state.
    budget_dependence: str = ""


class _OptimizerProfilerRangeFilter(logging.Filter):
    """Drops dynamo's "Profiler record function ... will be ignored": torch.optim's step opens a profiler range,
    which a compiled step leaves out. Nothing is lost, but the warning opened every grid worker's log."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Profiler record function")


_PROFILER_FILTER = _OptimizerProfilerRangeFilter()


# Dynamo's limits as torch sets them, and a count of this process's compiled agents (see `compiled_update`).
_DYNAMO_LIMITS = (torch._dynamo.config.recompile_limit, torch._dynamo.config.accumulated_recompile_limit)
_compiled_agents = itertools.count(1)


def compiled_update(step: Callable[..., Any], device: torch.device) -> Callable[..., Any]:
    """`step` (a whole update: losses, backward, optimizer steps, Polyak) under torch.compile; on CUDA in
    "reduce-overhead" mode, which replays it as CUDA graphs.

    Dynamo keeps at most `recompile_limit` (8) compiled versions of one piece of code, and the update and the
    optimizer's step are compiled once per agent, guarded on that agent's optimizer: so the ninth compiled agent
    of a process (a grid estimate's ninth group, a benchmark of many architectures, a test session) ran eagerly,
    behind one log warning, while its record said compiled. Each compiled agent raises the limits by the versions
    it may add (two per piece of code: before and after the optimizer has its state).
    """
    logger = logging.getLogger("torch._dynamo.variables.ctx_manager")
    if _PROFILER_FILTER not in logger.filters:
        logger.addFilter(_PROFILER_FILTER)
    room = 2 * next(_compiled_agents)
    dynamo = torch._dynamo.config
    dynamo.recompile_limit = max(dynamo.recompile_limit, _DYNAMO_LIMITS[0] + room)
    dynamo.accumulated_recompile_limit = max(dynamo.accumulated_recompile_limit, _DYNAMO_LIMITS[1] + room)
    return torch.compile(step, mode="reduce-overhead" if device.type == "cuda" else None)


@torch.no_grad()
def stack_members(stacked: nn.Module, members: list[nn.Module], critic_major: int = 1) -> None:
    """Copy members' parameters and buffers into `stacked`, whose leading dim holds critic_major * P members
    laid out critic-major (member c * P + p is member c of agent p; critic_major is 1 for actors)."""
    states = [m.state_dict() for m in members]
    merged = {}
    for name, value in stacked.state_dict().items():
        parts = [s[name] for s in states]
        if value.dim() == 0 or parts[0].dim() == 0:
            raise ValueError(f"cannot stack the scalar {name!r}")
        per_member = [p.reshape(critic_major, -1, *p.shape[1:]) for p in parts]
        merged[name] = torch.cat(per_member, dim=1).reshape(value.shape)
    stacked.load_state_dict(merged)


def check_fresh_members(members: list[Any]) -> None:
    """`from_members` stacks agents built one by one: population 1 each, not trained yet."""
    if not members or any(m.population != 1 or m.total_steps for m in members):
        raise ValueError("from_members stacks fresh single agents (population 1, no update yet)")


__all__ = ["Agent", "Algorithm", "Batch", "check_fresh_members", "stack_members"]


def network_counts(actor: nn.Module, critic: nn.Module, population: int, num_critics: int) -> dict[str, int]:
    """One member's trainable parameters, a record's `parameters` block: the actor (with any extra scalars), its
    body alone (`actor_network`), one critic and all critics, from networks that hold `population` members."""
    critics = count_parameters(critic) // population
    return {
        "actor": count_parameters(actor) // population,
        "actor_network": count_parameters(actor.network) // population,
        "critic": critics // num_critics,
        "critics_total": critics,
    }

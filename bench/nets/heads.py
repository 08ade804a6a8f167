"""Actors, critics and value networks around any body, for CQL, TD3+BC and IQL as CORL writes them.

CQL's `TanhGaussianActor` and `EnsembleCritic` follow CORL's `TanhGaussianPolicy` and `FullyConnectedQFunction`;
TD3+BC's and IQL's deterministic actor (`DeterministicActor`), IQL's Gaussian actor (`GaussianActor`) and value
network (`ValueNetwork`) follow CORL's `td3_bc.py` and `iql.py` and keep the body's own initialization, as CORL
keeps PyTorch's default there (`EnsembleCritic(cql_init=False)` for their critics). Every actor has
`act(obs)`, its deterministic evaluation action, and `member(index, spec, kan)`, one seed of a population.

CQL, faithful to CORL's `algorithms/offline/cql.py` (corl-team/CORL):
- actor: body -> 2 * act_dim (mean, raw log-std); log_std = clamp(multiplier * raw + offset, -20, 2) with a
  trainable multiplier (1.0) and offset (-1.0), CORL's `Scalar`s; action = tanh(z) * max_action with
  z ~ Normal(mean, std) by rsample, or z = mean when deterministic. The log-prob is that of tanh(z) (CORL's
  `TransformedDistribution(Normal, TanhTransform)`), summed over action dims; like CORL it leaves out the
  constant -act_dim * log(max_action) of the final scaling.
- critics: body on concat(obs, action) -> 1. CORL keeps two `FullyConnectedQFunction`s; here all critics
  are one ensemble network (stacked weights), so every layer is one batched matmul for all of them.
- init (CORL's `init_module_weights`): with orthogonal_init, hidden Linear layers orthogonal with gain sqrt(2)
  and bias 0; the last layer orthogonal with gain 1e-2 (xavier_uniform with gain 1e-2 without
  orthogonal_init), bias 0. Per ensemble member. Note that CORL's `TanhGaussianPolicy` calls
  `init_module_weights(self.base_network)` without passing its flag, so CORL's actor always gets the
  non-orthogonal variant: pass orthogonal_init=False to the actor to match CORL exactly.
- RBF-KAN bodies (bench/nets/rbf.py): the last layer's output weights multiplied by 1e-2, as for KAN.
- plug-in bodies (bench/nets/layers.py): their own init, the last layer's parameters scaled by 1e-2.
- KAN bodies: orthogonal init has no KAN counterpart, so hidden KAN layers keep the efficient-kan init; the
  last KAN layer's w_b and w_s are multiplied by 1e-2, which scales its output by 1e-2 as CORL's last-layer
  gain does, so a fresh actor's mean and log-std start near 0 and fresh Q-values near 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench.nets.kan import KAN, KANLinear, KANOptions
from bench.nets.mlp import MLP, EnsembleLinear
from bench.nets.rbf import RBFKAN
from bench.nets.spec import NetworkSpec, build_network

LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0
LAST_LAYER_GAIN = 1e-2
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
_ATANH_EPS = 1e-6


def init_corl_(network: nn.Module, orthogonal_init: bool) -> None:
    """CORL's `init_module_weights` on a body from `build_network` (see the module docstring)."""
    layers = list(network.layers)
    with torch.no_grad():
        if isinstance(network, RBFKAN):
            layers[-1].weight.mul_(LAST_LAYER_GAIN)  # the output weights only: the LayerNorm affine stays
            return
        if not isinstance(network, KAN | MLP):
            # A plug-in layer type (bench.nets.layers): its own init, the last layer's output scaled by 1e-2.
            for parameter in layers[-1].parameters():
                parameter.mul_(LAST_LAYER_GAIN)
            return
        if isinstance(network, KAN):
            last = layers[-1]
            assert isinstance(last, KANLinear)
            if last.base_weight is not None:
                last.base_weight.mul_(LAST_LAYER_GAIN)
            last.spline_scaler.mul_(LAST_LAYER_GAIN)
            return
        if orthogonal_init:
            for layer in layers[:-1]:
                _init_linear_(layer, math.sqrt(2.0), orthogonal=True)
        _init_linear_(layers[-1], LAST_LAYER_GAIN, orthogonal=orthogonal_init)


def _init_linear_(layer: nn.Module, gain: float, orthogonal: bool) -> None:
    init = nn.init.orthogonal_ if orthogonal else nn.init.xavier_uniform_
    if isinstance(layer, EnsembleLinear):
        for member in range(layer.ensemble_size):
            # Each member as an nn.Linear weight (out, in); stored transposed.
            weight = torch.empty(layer.out_features, layer.in_features, device=layer.weight.device)
            layer.weight[member].copy_(init(weight, gain=gain).T)
    else:
        init(layer.weight, gain=gain)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)


def tanh_log_det_jacobian(z: Tensor) -> Tensor:
    """log |d tanh(z) / dz| = log(1 - tanh(z)^2), in the stable form 2 * (log 2 - z - softplus(-2z))."""
    return 2.0 * (math.log(2.0) - z - F.softplus(-2.0 * z))


class TanhGaussianActor(nn.Module):
    """CORL's tanh-Gaussian policy on any body; observations may have any leading dims (..., obs_dim).

    With `population=P` it holds P independent actors (one per seed trained side by side): observations are
    (P, ..., obs_dim), actor p acts on [p], and the log-std multiplier and offset are (P,) vectors.
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        spec: NetworkSpec,
        kan: KANOptions,
        max_action: float = 1.0,
        orthogonal_init: bool = True,
        log_std_multiplier: float = 1.0,
        log_std_offset: float = -1.0,
        population: int | None = None,
    ) -> None:
        super().__init__()
        self.obs_dim, self.act_dim, self.max_action = obs_dim, act_dim, max_action
        self.population = population
        self.network = build_network(spec, obs_dim, 2 * act_dim, kan, ensemble_size=population)
        init_corl_(self.network, orthogonal_init)
        shape = () if population is None else (population,)
        self.log_std_multiplier = nn.Parameter(torch.full(shape, float(log_std_multiplier)))
        self.log_std_offset = nn.Parameter(torch.full(shape, float(log_std_offset)))

    @torch.no_grad()
    def member(self, index: int, spec: NetworkSpec, kan: KANOptions) -> TanhGaussianActor:
        """Member `index` of a population as a standalone actor (no population dim), e.g. to save one seed's
        final policy; `spec` and `kan` are the body this actor was built with. It acts exactly as the member."""
        if self.population is None:
            raise ValueError("member() takes one actor out of a population; this actor is a single one")
        single = TanhGaussianActor(self.obs_dim, self.act_dim, spec, kan, max_action=self.max_action)
        copy_member_network(single.network, self.network, index)
        single.log_std_multiplier.copy_(self.log_std_multiplier[index])
        single.log_std_offset.copy_(self.log_std_offset[index])
        return single

    def distribution_params(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        """(mean, log_std) of the pre-tanh Gaussian, log_std already scaled, shifted and clamped."""
        mean, raw_log_std = self.network(obs).split(self.act_dim, dim=-1)
        # Per-member scalars broadcast over everything after the population dim.
        lead = (*self.log_std_multiplier.shape, *([1] * (raw_log_std.dim() - self.log_std_multiplier.dim())))
        log_std = self.log_std_multiplier.reshape(lead) * raw_log_std + self.log_std_offset.reshape(lead)
        return mean, log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)

    def forward(
        self, obs: Tensor, deterministic: bool = False, need_log_prob: bool = True, noise: Tensor | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """(action (..., act_dim), log-prob (...) or None); deterministic: tanh(mean) * max_action.

        `noise`, standard normal of the mean's shape, replaces the draw from the global generator (a trainer
        that draws its randomness outside the step, for a compiled step or its own stream).
        """
        mean, log_std = self.distribution_params(obs)
        return self._sample(mean, log_std, deterministic, need_log_prob, noise)

    def forward_repeated(
        self, obs: Tensor, repeats: Sequence[int], noise: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Samples with log-probs at states repeated: obs (..., K, obs_dim), state k taken `repeats[k]` times
        along dim -2, noise (..., sum(repeats), act_dim) -> actions (..., sum(repeats), act_dim), log-probs
        (..., sum(repeats)).

        The same values as `forward` on the repeated states (CORL's repeat of a state over its sampled actions),
        but the body runs once per state rather than once per sample: its output for a state does not depend
        on the sample it is used for.
        """
        if obs.shape[-2] != len(repeats):
            raise ValueError(f"expected {len(repeats)} states along dim -2, got shape {tuple(obs.shape)}")
        mean, log_std = self.distribution_params(obs)

        def repeat(x: Tensor) -> Tensor:
            parts = [x[..., k : k + 1, :].expand(*x.shape[:-2], r, x.shape[-1]) for k, r in enumerate(repeats)]
            return torch.cat(parts, dim=-2)

        action, log_prob = self._sample(repeat(mean), repeat(log_std), False, True, noise)
        assert log_prob is not None
        return action, log_prob

    def _sample(
        self, mean: Tensor, log_std: Tensor, deterministic: bool, need_log_prob: bool, noise: Tensor | None
    ) -> tuple[Tensor, Tensor | None]:
        if deterministic:
            z = mean
            noise = torch.zeros_like(mean)
        else:
            noise = torch.randn_like(mean) if noise is None else noise
            z = mean + noise * log_std.exp()
        action = torch.tanh(z) * self.max_action
        if not need_log_prob:
            return action, None
        # (z - mean) / std is the noise itself, so the Gaussian term needs no division.
        gaussian = -0.5 * noise.square() - log_std - _HALF_LOG_2PI
        return action, (gaussian - tanh_log_det_jacobian(z)).sum(-1)

    def log_prob(self, obs: Tensor, actions: Tensor) -> Tensor:
        """Log-prob of given actions (..., act_dim); obs (..., obs_dim) broadcast, or one dim short (CORL's
        repeat over sampled actions). Actions are clipped to within 1e-6 of +-max_action (tanh saturates).
        """
        obs, actions = _broadcast_pair(obs, actions)
        mean, log_std = self.distribution_params(obs)
        y = (actions / self.max_action).clamp(-1.0 + _ATANH_EPS, 1.0 - _ATANH_EPS)
        z = torch.atanh(y)
        gaussian = -0.5 * ((z - mean) * torch.exp(-log_std)).square() - log_std - _HALF_LOG_2PI
        return (gaussian - tanh_log_det_jacobian(z)).sum(-1)

    @torch.no_grad()
    def act(self, obs: Tensor) -> Tensor:
        """The deterministic evaluation action tanh(mean) * max_action."""
        return self(obs, deterministic=True, need_log_prob=False)[0]


@torch.no_grad()
def copy_member_network(single: nn.Module, population: nn.Module, index: int) -> None:
    """Copy member `index` of a network built with `ensemble_size` into the same network built without it."""
    if len(getattr(population, "norms", ())):
        raise ValueError("member() does not take layer-normalized bodies apart")
    for target, source in zip(single.layers, population.layers, strict=True):
        if isinstance(source, EnsembleLinear):
            target.weight.copy_(source.weight[index].T)
            if source.bias is not None:
                target.bias.copy_(source.bias[index, 0])
        else:
            for name, value in source.state_dict().items():
                getattr(target, name).copy_(value[index].reshape(getattr(target, name).shape))


class DeterministicActor(nn.Module):
    """TD3+BC's actor (CORL's `Actor`, and IQL's `DeterministicPolicy`) on any body: max_action * tanh(body(s)).

    The body maps obs -> act_dim and keeps its own initialization (CORL's TD3+BC and IQL networks use PyTorch's
    default init). With `population=P` it holds P independent actors, observations (P, ..., obs_dim).
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        spec: NetworkSpec,
        kan: KANOptions,
        max_action: float = 1.0,
        population: int | None = None,
    ) -> None:
        super().__init__()
        self.obs_dim, self.act_dim, self.max_action = obs_dim, act_dim, max_action
        self.population = population
        self.network = build_network(spec, obs_dim, act_dim, kan, ensemble_size=population)

    def forward(self, obs: Tensor) -> Tensor:
        return torch.tanh(self.network(obs)) * self.max_action

    @torch.no_grad()
    def act(self, obs: Tensor) -> Tensor:
        return self(obs)

    @torch.no_grad()
    def member(self, index: int, spec: NetworkSpec, kan: KANOptions) -> DeterministicActor:
        """Member `index` of a population as a standalone actor; `spec` and `kan` are its body's."""
        if self.population is None:
            raise ValueError("member() takes one actor out of a population; this actor is a single one")
        single = DeterministicActor(self.obs_dim, self.act_dim, spec, kan, max_action=self.max_action)
        copy_member_network(single.network, self.network, index)
        return single


class GaussianActor(nn.Module):
    """IQL's Gaussian policy (CORL's `GaussianPolicy`) on any body: Normal(tanh(body(s)), exp(log_std)).

    The mean is the body's output squashed by tanh (CORL's output activation); the log-std is a state-independent
    trainable vector, initialized at 0 and clamped to [-20, 2] when used. Log-probabilities are those of the
    Gaussian itself (no tanh correction: the tanh is on the mean, not on the sample), summed over action dims.
    Evaluation acts with clamp(max_action * mean). With `population=P` the log-std is (P, act_dim).
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        spec: NetworkSpec,
        kan: KANOptions,
        max_action: float = 1.0,
        population: int | None = None,
    ) -> None:
        super().__init__()
        self.obs_dim, self.act_dim, self.max_action = obs_dim, act_dim, max_action
        self.population = population
        self.network = build_network(spec, obs_dim, act_dim, kan, ensemble_size=population)
        shape = (act_dim,) if population is None else (population, act_dim)
        self.log_std = nn.Parameter(torch.zeros(shape))

    def forward(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        """(mean, log_std), log_std broadcast to the mean's shape."""
        mean = torch.tanh(self.network(obs))
        log_std = self.log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)
        if self.population is not None:
            log_std = log_std.reshape(self.population, *([1] * (mean.dim() - 2)), self.act_dim)
        return mean, log_std.expand_as(mean)

    def log_prob(self, obs: Tensor, actions: Tensor) -> Tensor:
        """log N(actions; mean(obs), std), summed over the action dims: (..., act_dim) -> (...)."""
        mean, log_std = self(obs)
        gaussian = -0.5 * ((actions - mean) * torch.exp(-log_std)).square() - log_std - _HALF_LOG_2PI
        return gaussian.sum(-1)

    @torch.no_grad()
    def act(self, obs: Tensor) -> Tensor:
        """The deterministic evaluation action: the mean, scaled to the action range and clamped to it."""
        mean, _ = self(obs)
        return (mean * self.max_action).clamp(-self.max_action, self.max_action)

    @torch.no_grad()
    def member(self, index: int, spec: NetworkSpec, kan: KANOptions) -> GaussianActor:
        """Member `index` of a population as a standalone actor; `spec` and `kan` are its body's."""
        if self.population is None:
            raise ValueError("member() takes one actor out of a population; this actor is a single one")
        single = GaussianActor(self.obs_dim, self.act_dim, spec, kan, max_action=self.max_action)
        copy_member_network(single.network, self.network, index)
        single.log_std.copy_(self.log_std[index])
        return single


class ValueNetwork(nn.Module):
    """IQL's state-value function (CORL's `ValueFunction`) on any body: obs -> V(s), PyTorch's default init.

    With `population=P`, observations (P, ..., obs_dim) and values (P, ...).
    """

    def __init__(self, obs_dim: int, spec: NetworkSpec, kan: KANOptions, population: int | None = None) -> None:
        super().__init__()
        self.obs_dim, self.population = obs_dim, population
        self.network = build_network(spec, obs_dim, 1, kan, ensemble_size=population)

    def forward(self, obs: Tensor) -> Tensor:
        return self.network(obs).squeeze(-1)


class EnsembleCritic(nn.Module):
    """`num_critics` Q-functions in one ensemble network: forward(obs, actions) -> (num_critics, ...).

    With `population=P` it holds P groups of `num_critics` (one group per seed trained side by side) as one
    ensemble of num_critics * P members, critic-major (member c * P + p is critic c of seed p): inputs are
    (P, ..., dim), seed p's critics see [p], and Q-values come back as (num_critics, P, ...), so a minimum
    over the critics is still a minimum over dim 0.
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        spec: NetworkSpec,
        kan: KANOptions,
        num_critics: int = 2,
        orthogonal_init: bool = True,
        population: int | None = None,
        cql_init: bool = True,
    ) -> None:
        super().__init__()
        self.obs_dim, self.act_dim, self.num_critics = obs_dim, act_dim, num_critics
        self.population = population
        members = num_critics * (population or 1)
        self.network = build_network(spec, obs_dim + act_dim, 1, kan, ensemble_size=members)
        # cql_init=False keeps the body's own init (PyTorch's default for MLPs), as CORL's TD3+BC and IQL critics.
        if cql_init:
            init_corl_(self.network, orthogonal_init)

    def forward(self, obs: Tensor, actions: Tensor) -> Tensor:
        """Every critic on the same inputs: obs (..., obs_dim) and actions (..., act_dim) with broadcastable
        leading dims (obs may also be one dim short, as in CORL) -> Q-values (num_critics, ...).
        """
        obs, actions = _broadcast_pair(obs, actions)
        lead = obs.shape[:-1]
        width = self.obs_dim + self.act_dim
        groups = self.population or 1
        if self.population is not None and lead[0] != groups:
            raise ValueError(f"expected a leading dim of {groups} seeds, got shape {tuple(obs.shape)}")
        x = torch.cat([obs, actions], dim=-1).reshape(1, groups, -1, width)
        q = self.network(x.expand(self.num_critics, -1, -1, -1).reshape(self.num_critics * groups, -1, width))
        return q.reshape(self.num_critics, *lead)

    def forward_members(self, obs: Tensor, actions: Tensor) -> Tensor:
        """Critic i on inputs [i]: obs (num_critics, ..., obs_dim), actions (num_critics, ..., act_dim)."""
        obs, actions = _broadcast_pair(obs, actions)
        if obs.shape[0] != self.num_critics:
            raise ValueError(f"expected a leading dim of {self.num_critics} critics, got shape {tuple(obs.shape)}")
        lead = obs.shape[:-1]
        x = torch.cat([obs, actions], dim=-1).reshape(self.num_critics, -1, self.obs_dim + self.act_dim)
        return self.network(x).reshape(lead)


def _broadcast_pair(obs: Tensor, actions: Tensor) -> tuple[Tensor, Tensor]:
    """Expand obs and actions to common leading dims; obs one dim short gets a dim before its last."""
    if obs.dim() == actions.dim() - 1:
        obs = obs.unsqueeze(-2)
    lead = torch.broadcast_shapes(obs.shape[:-1], actions.shape[:-1])
    return obs.expand(*lead, obs.shape[-1]), actions.expand(*lead, actions.shape[-1])

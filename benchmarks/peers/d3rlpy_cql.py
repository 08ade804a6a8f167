"""Gradient steps/s of d3rlpy's CQL, configured as CORL's CQL as far as d3rlpy allows, on Walker2d sizes.

    .cache/peers-venv/bin/python benchmarks/peers/d3rlpy_cql.py --hidden 256,256,256 --threads 2

Runs under the peers environment (`make bench-peers`), never under the suite's: it imports d3rlpy, not `bench`.
The dataset is synthetic (random transitions of Walker2d's sizes, obs 17, act 6, in a few episodes); the speed
of a step does not depend on the numbers. Batches are sampled before the clock starts (d3rlpy's own sampler is a
Python loop per transition) and the clock covers the `update(batch)` calls alone: the conversion of the batch to
tensors and one gradient step of critics, actor and temperature, plus the target update. The first `--warmup`
updates are not timed.

The mapping of CORL's gym-mujoco CQL onto `d3rlpy.algos.CQLConfig` (d3rlpy 2.8.1):
- batch_size 256, gamma 0.99, tau 5e-3, n_critics 2, n_action_samples 10, Adam with PyTorch's defaults;
- actor_learning_rate 3e-5, critic_learning_rate 3e-4, temp_learning_rate 3e-5, initial_temperature 1.0
  (log temperature starts at 0; d3rlpy's target entropy is -action_dim, as CORL's);
- CQL alpha 10 fixed: d3rlpy scales the conservative term by conservative_weight * exp(log_alpha) and tunes
  log_alpha only when alpha_learning_rate > 0, so conservative_weight=10, initial_alpha=1.0,
  alpha_learning_rate=0.0 (alpha_threshold then only shifts the loss by a constant);
- importance-sampled logsumexp over 10 uniform, 10 current-policy and 10 next-state-policy actions, temperature
  1, no clipping, as CORL's defaults; soft_q_backup=False (no entropy in the backup), max_q_backup=False;
- actor and critics: MLP encoders with ReLU of the given hidden sizes (`VectorEncoderFactory`), the critics on
  concat(obs, action), the actor with separate mean and log-std heads, log-std clamped to [-20, 2];
- no observation, action or reward scaler (CORL normalizes the dataset once, before training).
What d3rlpy cannot match: its backup uses the deterministic action tanh(mean) at s' (CORL samples it); CORL's
log-std multiplier and offset parameters, its weight initialization and its alpha-loss-first update order have
no d3rlpy setting. None of these changes the work of a step.

Prints one JSON line to stdout; everything else (d3rlpy's logs, warnings) goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time


def parse_hidden(text: str) -> list[int]:
    try:
        hidden = [int(width) for width in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected widths like 256,256,256, got {text!r}") from None
    if not hidden or min(hidden) < 1:
        raise argparse.ArgumentTypeError(f"widths must be positive, got {text!r}")
    return hidden


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hidden", type=parse_hidden, default=[256, 256, 256], help="actor and critic widths")
    parser.add_argument("--steps", type=int, default=200, help="timed updates")
    parser.add_argument("--warmup", type=int, default=20, help="untimed updates before the clock starts")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--transitions", type=int, default=10_000, help="size of the synthetic dataset")
    parser.add_argument("--episodes", type=int, default=10, help="episodes the dataset is cut into")
    parser.add_argument("--batches", type=int, default=100, help="pre-sampled batches, cycled through")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda:0")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for name in ("steps", "batch_size", "transitions", "episodes", "batches"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    if args.warmup < 0:
        parser.error("--warmup must be non-negative")
    if args.episodes > args.transitions:
        parser.error("--episodes must not exceed --transitions")
    return args


def synthetic_dataset(transitions: int, episodes: int, obs_dim: int, act_dim: int, seed: int):
    """Random transitions of the given sizes, cut into `episodes` timed-out episodes of about equal length."""
    import numpy as np
    from d3rlpy.dataset import MDPDataset

    rng = np.random.default_rng(seed)
    observations = rng.standard_normal((transitions, obs_dim), dtype=np.float32)
    actions = rng.uniform(-1.0, 1.0, (transitions, act_dim)).astype(np.float32)
    rewards = rng.standard_normal((transitions, 1), dtype=np.float32)
    terminals = np.zeros(transitions, dtype=np.float32)
    timeouts = np.zeros(transitions, dtype=np.float32)
    ends = np.linspace(0, transitions, episodes + 1).astype(int)[1:] - 1
    timeouts[ends] = 1.0
    return MDPDataset(observations, actions, rewards, terminals, timeouts)


def corl_cql_config(hidden: list[int], batch_size: int):
    """d3rlpy's CQLConfig set to CORL's gym-mujoco CQL (see the module docstring)."""
    from d3rlpy.algos import CQLConfig
    from d3rlpy.models.encoders import VectorEncoderFactory
    from d3rlpy.optimizers import AdamFactory

    return CQLConfig(
        batch_size=batch_size,
        gamma=0.99,
        tau=5e-3,
        n_critics=2,
        actor_learning_rate=3e-5,
        critic_learning_rate=3e-4,
        temp_learning_rate=3e-5,
        initial_temperature=1.0,
        alpha_learning_rate=0.0,
        initial_alpha=1.0,
        conservative_weight=10.0,
        n_action_samples=10,
        soft_q_backup=False,
        max_q_backup=False,
        actor_encoder_factory=VectorEncoderFactory(hidden_units=hidden, activation="relu"),
        critic_encoder_factory=VectorEncoderFactory(hidden_units=hidden, activation="relu"),
        actor_optim_factory=AdamFactory(),
        critic_optim_factory=AdamFactory(),
        temp_optim_factory=AdamFactory(),
        compile_graph=False,
    )


def check_cql_metrics(metrics: dict[str, float]) -> None:
    """Stop unless the update did CQL's work: a finite conservative loss, alpha' fixed at 1, a tuned temperature."""
    missing = {"conservative_loss", "critic_loss", "actor_loss", "temp_loss", "alpha"} - metrics.keys()
    if missing:
        raise SystemExit(f"d3rlpy CQL update returned no {sorted(missing)}: got {sorted(metrics)}")
    if not math.isfinite(metrics["conservative_loss"]) or metrics["conservative_loss"] == 0.0:
        raise SystemExit(f"d3rlpy CQL conservative loss is {metrics['conservative_loss']}, expected finite, non-zero")
    if metrics["alpha"] != 1.0:
        raise SystemExit(f"d3rlpy CQL alpha' moved to {metrics['alpha']}; it must stay fixed at 1.0")


def measure(args: argparse.Namespace) -> dict:
    import d3rlpy
    import torch

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    d3rlpy.seed(args.seed)
    dataset = synthetic_dataset(args.transitions, args.episodes, obs_dim=17, act_dim=6, seed=args.seed)
    cql = corl_cql_config(args.hidden, args.batch_size).create(device=args.device)
    cql.build_with_dataset(dataset)
    batches = [dataset.sample_transition_batch(args.batch_size) for _ in range(args.batches)]
    on_cuda = torch.device(args.device).type == "cuda"

    for step in range(args.warmup):
        cql.update(batches[step % len(batches)])
    check_cql_metrics(cql.update(batches[0]))
    if on_cuda:
        torch.cuda.synchronize()
    # The timed loop: the update calls and the loop itself, nothing else.
    start = time.perf_counter()
    for step in range(args.steps):
        cql.update(batches[step % len(batches)])
    if on_cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start

    return {
        "peer": "d3rlpy",
        "version": d3rlpy.__version__,
        "hidden": args.hidden,
        "batch_size": args.batch_size,
        "steps": args.steps,
        "seconds": seconds,
        "steps_per_s": args.steps / seconds,
        "threads": torch.get_num_threads(),
        "device": args.device,
    }


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    # d3rlpy logs to stdout; point file descriptor 1 at stderr so stdout carries the JSON line alone.
    result_stream = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    result = measure(args)
    result_stream.write(json.dumps(result) + "\n")
    result_stream.flush()


if __name__ == "__main__":
    main()

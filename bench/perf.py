"""Measures for `python -m bench speed cql`: the device's matmul rate, the FLOPs of one CQL step, the operator
count of a function (a proxy for GPU kernel launches), and d3rlpy's CQL run as a peer in its own environment.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import json
import math
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from itertools import pairwise
from pathlib import Path
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from bench.errors import BenchError

REPO_ROOT = Path(__file__).resolve().parents[1]
PEER_SCRIPT = REPO_ROOT / "benchmarks" / "peers" / "d3rlpy_cql.py"
PEERS_PYTHON = REPO_ROOT / ".cache" / "peers-venv" / "bin" / "python"
PEER_KEYS = ("peer", "version", "hidden", "batch_size", "steps", "seconds", "steps_per_s", "threads")
# Each timed sample of `matmul_gflops` runs enough products to last about this long, so that a fast device is
# not timed on a single sub-millisecond call.
_MIN_SAMPLE_SECONDS = 0.05


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_gflops(
    size: int = 2048, repeats: int = 5, threads: int | None = None, device: torch.device | str = "cpu"
) -> float:
    """Dense float32 matmul rate of `device` in GFLOP/s: 2 * size^3 per (size x size) @ (size x size) product.

    The best of `repeats` timed samples after one warm-up product (the device's capability, which background
    load only lowers), under the current precision settings. `threads` sets torch's CPU threads for the
    measurement and restores them after.
    """
    if size < 1 or repeats < 1:
        raise ValueError(f"size and repeats must be positive, got size={size}, repeats={repeats}")
    device = torch.device(device)
    previous_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        a = torch.randn(size, size, device=device)
        b = torch.randn(size, size, device=device)
        out = torch.empty(size, size, device=device)

        def timed(calls: int) -> float:
            _synchronize(device)
            start = time.perf_counter()
            for _ in range(calls):
                torch.mm(a, b, out=out)
            _synchronize(device)
            return time.perf_counter() - start

        first = timed(1)
        calls = max(1, math.ceil(_MIN_SAMPLE_SECONDS / max(first, 1e-9)))
        best = min(timed(calls) / calls for _ in range(repeats))
    finally:
        torch.set_num_threads(previous_threads)
    return 2.0 * size**3 / best / 1e9


def mlp_layer_flops(in_dim: int, hidden: Sequence[int], out_dim: int) -> list[int]:
    """Forward FLOPs of one row through each layer of the MLP in_dim -> hidden... -> out_dim: 2 * m * n for an
    (m x n) weight."""
    widths = [in_dim, *hidden, out_dim]
    return [2 * m * n for m, n in pairwise(widths)]


def cql_step_flops(
    obs_dim: int,
    act_dim: int,
    actor_hidden: Sequence[int],
    critic_hidden: Sequence[int],
    batch_size: int = 256,
    n_actions: int = 10,
    num_critics: int = 2,
    population: int = 1,
) -> float:
    """Analytic FLOPs of one CQL gradient step of `bench.agents.cql.CQL` with MLP actor and critic bodies.

    Only the matmuls count, 2 * m * n * k each; activations, losses and the optimizer are left out. A pass
    without gradients costs its forward (1x). A pass that trains costs 3x its forward, the backward computing
    each layer's input and weight gradients (a forward-sized matmul each), except the first layer at 2x: its
    input is data (states, dataset or sampled actions) that needs no gradient, and autograd skips it. A pass
    through frozen critics whose gradient flows to the actions costs 2x (forward and input gradients). The
    actor maps obs_dim -> 2 * act_dim (mean, log-std), each critic obs_dim + act_dim -> 1. With
    B = batch_size, N = n_actions, C = num_critics, one step is (as `CQL.compute_losses` runs it):

    - the actor on B states with gradients (the actor loss): trained;
    - the actor without gradients on 2B states, each state and next state once: 1x (the mean and log-std of
      a state serve all its samples: N current, N next-state and 1 backup);
    - the C target critics without gradients on the B backup rows: 1x each;
    - the C critics with gradients on B * (3N + 1) rows (the dataset action and 3N sampled actions): trained;
    - the C critics in the actor loss on B rows, parameters frozen, the gradient flowing to the actions: 2x.

    A population of P seeds trained side by side does P times the work. CORL's sizes (3 x 256, batch 256,
    Walker2d obs 17, act 6) come to 13.65 GFLOP (15.0 in CORL's own step, which runs the actor on each of the
    2N + 1 repeated states), 2 x 64 to 0.52 GFLOP (`torch.utils.flop_counter` counts the same on the agent's
    update).
    """
    if min(obs_dim, act_dim, batch_size, n_actions, num_critics, population) < 1:
        raise ValueError("obs_dim, act_dim, batch_size, n_actions, num_critics and population must be positive")
    actor_layers = mlp_layer_flops(obs_dim, actor_hidden, 2 * act_dim)
    critic_layers = mlp_layer_flops(obs_dim + act_dim, critic_hidden, 1)
    actor_forward, critic_forward = sum(actor_layers), sum(critic_layers)
    actor_trained = 3 * actor_forward - actor_layers[0]
    critic_trained = 3 * critic_forward - critic_layers[0]
    b, n, c = batch_size, n_actions, num_critics
    actor = b * actor_trained + 2 * b * actor_forward
    critics = c * (b * critic_forward + b * (3 * n + 1) * critic_trained + b * 2 * critic_forward)
    return float(population * (actor + critics))


class _OperatorCounter(TorchDispatchMode):
    """Counts every ATen operator call that reaches the dispatcher while active."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.calls += 1
        return func(*args, **(kwargs or {}))


# glibc mallopt parameters (malloc.h) and the values `retain_freed_memory` sets.
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
_MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's largest allowed value on 64-bit
_TRIM_THRESHOLD = 1024 * 1024 * 1024
_TOP_PAD = 64 * 1024 * 1024


@functools.cache
def retain_freed_memory() -> bool:
    """Make glibc's malloc keep freed memory for reuse instead of handing it back to the OS; True if it did.

    PyTorch's CPU allocator has no cache: every activation of a step is a fresh malloc. A CQL step on small
    critics makes tensors of a few MB to 32 MB (31 actions x 256 states x width x critics x seeds), and with
    glibc's defaults each comes from mmap or a just-grown heap and is returned on free, so every step pays page
    faults and the kernel's zeroing again. Keeping blocks up to 32 MB on the heap and not trimming it cuts the
    system time of such a step several times; the arithmetic and the results are unchanged. A no-op (False)
    where the C library is not glibc. Process-wide and idempotent.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    settings = ((_M_MMAP_THRESHOLD, _MMAP_THRESHOLD), (_M_TRIM_THRESHOLD, _TRIM_THRESHOLD), (_M_TOP_PAD, _TOP_PAD))
    return all(mallopt(param, value) == 1 for param, value in settings)


def count_ops(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> int:
    """ATen operator calls one call of `fn(*args, **kwargs)` makes, backward ones included when `fn` runs a
    backward: in eager mode on a GPU each is about one kernel launch, so the count bounds a launch-bound step.
    """
    counter = _OperatorCounter()
    with counter:
        fn(*args, **kwargs)
    return counter.calls


def run_peer(
    python: Path,
    hidden: Sequence[int],
    steps: int,
    warmup: int,
    threads: int | None,
    *,
    batch_size: int = 256,
    device: str = "cpu",
    script: Path = PEER_SCRIPT,
    timeout: float | None = None,
) -> dict[str, Any]:
    """Run d3rlpy's CQL speed script (`benchmarks/peers/d3rlpy_cql.py`) with the peers environment's `python`;
    returns its JSON line: peer, version, hidden, batch_size, steps, seconds, steps_per_s, threads, device.
    """
    python, script = Path(python), Path(script)
    if not python.exists():
        raise BenchError(f"{python}: the peers environment (d3rlpy) is missing; build it with `make bench-peers`")
    if not script.is_file():
        raise BenchError(f"{script}: the peer speed script is missing; run from a checkout of the repository")
    command = [
        str(python),
        str(script),
        "--hidden",
        ",".join(str(width) for width in hidden),
        "--steps",
        str(steps),
        "--warmup",
        str(warmup),
        "--batch-size",
        str(batch_size),
        "--device",
        device,
    ]
    if threads is not None:
        command += ["--threads", str(threads)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as e:
        raise BenchError(f"{script}: the peer run took over {timeout} s; lower --steps") from e
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-5:])
        raise BenchError(
            f"{script} failed (exit {done.returncode}) under {python}: {tail}; "
            "if d3rlpy is missing or broken, rebuild the environment with `make bench-peers`"
        )
    lines = done.stdout.strip().splitlines()
    try:
        if len(lines) != 1:
            raise ValueError(f"expected one line, got {len(lines)}")
        result = json.loads(lines[0])
        if not isinstance(result, dict):
            raise ValueError(f"expected a JSON object, got {type(result).__name__}")
        missing = [key for key in PEER_KEYS if key not in result]
        if missing:
            raise ValueError(f"missing keys {missing}")
    except ValueError as e:
        raise BenchError(f"{script}: its output is not one JSON result line ({e}): {done.stdout[-500:]!r}") from e
    return result


__all__ = [
    "PEERS_PYTHON",
    "PEER_SCRIPT",
    "count_ops",
    "cql_step_flops",
    "matmul_gflops",
    "mlp_layer_flops",
    "run_peer",
]

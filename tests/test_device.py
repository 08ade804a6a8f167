"""The GPU-only code paths of a cell (device choice, CUDA synchronization for timing, device naming, RNG state on
resume), checked on CPU by faking what torch.cuda reports; the tests marked `cuda` run for real when a GPU is
present: a cell trained, interrupted and resumed there, a group extending its final state there (refused on the
CPU), networks and a CQL step computing there what they compute on the CPU, and training steps that never wait for
the GPU."""

from __future__ import annotations

import copy
import dataclasses
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from torch._dynamo.utils import counters

from bench import train
from bench.agents.cql import CQL, Batch, CQLConfig, StepNoise
from bench.agents.registry import ALGORITHMS
from bench.cli import main
from bench.errors import BenchError
from bench.nets.kan import KANOptions
from bench.nets.spec import build_network, get_architecture, parse_network_spec
from bench.train import RunConfig, apply_overrides, device_info, resolve_device, synchronize, train_cell
from tests.d4rl_files import write_small_d4rl_file
from tests.devices import needs_cuda
from tests.interrupts import interrupted_on_call
from tests.test_train import tiny_config
from tests.test_train_group import random_batch, single


def fake_cuda(monkeypatch: pytest.MonkeyPatch, available: bool, count: int = 1) -> None:
    """Make torch.cuda report `count` GPUs (or none) without touching a driver."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: available)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count if available else 0)


@pytest.mark.parametrize(("available", "expected"), [(True, "cuda"), (False, "cpu")])
def test_auto_picks_cuda_only_when_present(monkeypatch: pytest.MonkeyPatch, available: bool, expected: str) -> None:
    fake_cuda(monkeypatch, available)
    assert resolve_device("auto") == torch.device(expected)


@pytest.mark.parametrize("name", ["cuda", "cuda:0"])
def test_cuda_without_a_gpu_is_refused_with_the_fix(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    fake_cuda(monkeypatch, False)
    with pytest.raises(BenchError, match="no CUDA device") as info:
        resolve_device(name)
    assert "--device cpu" in str(info.value) and "auto" in str(info.value)


def test_explicit_devices_resolve(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_cuda(monkeypatch, True, count=2)
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("cuda") == torch.device("cuda")
    assert resolve_device("cuda:1") == torch.device("cuda", 1)


def test_gpu_ordinal_past_the_visible_gpus_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_cuda(monkeypatch, True, count=1)
    with pytest.raises(BenchError, match="1 CUDA device") as info:
        resolve_device("cuda:1")
    assert "CUDA_VISIBLE_DEVICES" in str(info.value)


@pytest.mark.parametrize("name", ["cuda:x", "cudax", "gpu"])
def test_malformed_device_is_a_bench_error(name: str) -> None:
    with pytest.raises(BenchError, match="bad device"):
        resolve_device(name)


def test_cli_run_on_cuda_without_a_gpu_exits_with_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    fake_cuda(monkeypatch, False)
    out = tmp_path / "cell.json"
    args = ["run", "--dataset", "d4rl:hopper-medium-v2", "--arch", "mlp-small", "--device", "cuda", "--out", str(out)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--device cpu" in err
    assert not out.exists()


def test_synchronize_waits_only_for_cuda_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[torch.device] = []
    monkeypatch.setattr(torch.cuda, "synchronize", calls.append)
    synchronize(torch.device("cpu"))
    assert calls == []
    synchronize(torch.device("cuda", 0))
    assert calls == [torch.device("cuda", 0)]


def test_epoch_timing_is_bracketed_by_synchronization(monkeypatch: pytest.MonkeyPatch) -> None:
    """The clock starts after queued work is done and stops after the epoch's work is done, not just launched."""
    events: list[str] = []
    monkeypatch.setattr(train, "synchronize", lambda device: events.append("sync"))
    real_counter = train.time.perf_counter
    monkeypatch.setattr(train.time, "perf_counter", lambda: events.append("clock") or real_counter())

    torch.manual_seed(0)
    config = CQLConfig(batch_size=8, cql_n_actions=2)
    agent = CQL(3, 2, get_architecture("mlp-small"), config)
    data = {
        "observations": torch.randn(32, 3),
        "actions": torch.rand(32, 2) * 2 - 1,
        "rewards": torch.randn(32),
        "next_observations": torch.randn(32, 3),
        "dones": torch.zeros(32),
    }
    seconds, losses = train._train_epoch(agent, data, [torch.Generator().manual_seed(0)], 2, config.batch_size)
    assert events == ["sync", "clock", "sync", "clock"]
    assert seconds > 0 and "critic_loss" in losses


def test_device_info_names_the_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[torch.device] = []

    def device_name(device: torch.device) -> str:
        asked.append(device)
        return "NVIDIA A100-SXM4-80GB"

    monkeypatch.setattr(torch.cuda, "get_device_name", device_name)
    info = device_info(torch.device("cuda", 0))
    assert info["type"] == "cuda" and info["name"] == "NVIDIA A100-SXM4-80GB"
    assert asked == [torch.device("cuda", 0)]


def test_device_info_names_the_cpu_without_asking_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_gpu(device: torch.device) -> str:
        raise AssertionError("device_info asked CUDA for the name of a CPU")

    monkeypatch.setattr(torch.cuda, "get_device_name", no_gpu)
    info = device_info(torch.device("cpu"))
    assert info["type"] == "cpu" and info["name"] and info["torch_threads"] >= 1


class _OnGpu:
    """A tensor as `torch.load(map_location="cuda")` returns it: only `.cpu()` gives the CPU tensor back."""

    def __init__(self, tensor: torch.Tensor) -> None:
        self.tensor = tensor

    def cpu(self) -> torch.Tensor:
        return self.tensor


def test_rng_state_from_a_gpu_checkpoint_is_restored_on_the_host(monkeypatch: pytest.MonkeyPatch) -> None:
    """Resuming on a GPU: generator states mapped onto the GPU by torch.load go back to the CPU before restoring."""
    cuda_states: list[tuple[torch.Tensor, torch.device]] = []
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, device: cuda_states.append((state, device)))
    torch.manual_seed(3)
    state = train.rng_state(torch.device("cpu"))
    expected = torch.rand(4), np.random.rand(), random.random()
    cuda_state = torch.zeros(16, dtype=torch.uint8)
    device = torch.device("cuda", 0)

    train.set_rng_state({**state, "torch": _OnGpu(state["torch"]), "cuda": _OnGpu(cuda_state)}, device)
    assert torch.equal(torch.rand(4), expected[0])
    assert (np.random.rand(), random.random()) == expected[1:]
    assert len(cuda_states) == 1 and cuda_states[0][0] is cuda_state and cuda_states[0][1] == device


@pytest.fixture(scope="module")
def hopper_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_small_d4rl_file(tmp_path_factory.mktemp("data") / "hopper-tiny.hdf5", env="hopper")


@needs_cuda
def test_cell_trains_checkpoints_and_resumes_on_the_gpu(
    hopper_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = RunConfig(
        dataset=f"local:{hopper_file}",
        arch="mlp-small",
        steps=6,
        epoch_steps=2,
        eval_every=4,
        eval_episodes=1,
        checkpoint_every=1,
        device="auto",
        cql=apply_overrides(train.CQLConfig(), ["batch_size=16", "cql_n_actions=3"]),
    )
    out = tmp_path / "gpu.json"
    real = train._train_epoch
    monkeypatch.setattr(train, "_train_epoch", interrupted_on_call(real, 3))
    with pytest.raises(KeyboardInterrupt):
        train_cell(config, out, progress=False)
    assert train.checkpoint_path(out).exists()
    monkeypatch.setattr(train, "_train_epoch", real)
    record = train_cell(config, out, progress=False)  # loads the checkpoint onto the GPU
    assert record["status"] == "done" and record["steps_done"] == 6
    assert record["device"]["type"] == "cuda"
    assert record["device"]["name"] == torch.cuda.get_device_name(torch.device("cuda"))


@needs_cuda
def test_a_group_on_the_gpu_extends_its_final_state_there_and_a_cpu_run_refuses_it(
    hopper_file: Path, tmp_path: Path
) -> None:
    config = tiny_config(hopper_file, arch="kan-small", steps=4, eval_every=2, eval_episodes=1, device="cuda")
    shorter = [tmp_path / "short" / f"seed{seed}.json" for seed in (0, 1)]
    longer = [tmp_path / "long" / f"seed{seed}.json" for seed in (0, 1)]
    before = train.train_group(config, [0, 1], shorter, progress=False, keep_final_state=True)
    state = train.final_state_path(shorter)
    after = train.train_group(dataclasses.replace(config, steps=8), [0, 1], longer, progress=False, extend_from=state)
    for short, long in zip(before, after, strict=True):
        assert long["status"] == "done" and long["steps_done"] == 8 and long["device"]["type"] == "cuda"
        assert long["extended_from"]["steps"] == 4 and long["curve"][:2] == short["curve"]
    with pytest.raises(BenchError, match="written on CUDA and this run is on CPU"):
        cpu = dataclasses.replace(config, steps=8, device="cpu")
        train.train_group(cpu, [0, 1], [tmp_path / "cpu" / f"seed{seed}.json" for seed in (0, 1)], extend_from=state)


@needs_cuda
def test_synchronize_on_a_real_gpu() -> None:
    device = resolve_device("auto")
    x = torch.randn(512, 512, device=device)
    y = x @ x
    synchronize(device)
    assert torch.isfinite(y).all()


@needs_cuda
@pytest.mark.parametrize("spec", ["mlp[16,16]", "kan[4,4]", "rbf[4]"])
def test_a_network_computes_on_the_gpu_what_it_computes_on_the_cpu(spec: str) -> None:
    """Outputs and gradients of an ensemble of each layer type (the KAN's own autograd included), in float64 so
    that any difference beyond rounding is an error; inputs reach past the KAN grid's range."""
    torch.manual_seed(0)
    network = build_network(parse_network_spec(spec), 7, 3, KANOptions(), ensemble_size=3).double()
    on_gpu = copy.deepcopy(network).cuda()
    x = torch.randn(3, 64, 7, dtype=torch.float64) * 2
    x_gpu = x.cuda().requires_grad_()
    x.requires_grad_()
    out, out_gpu = network(x), on_gpu(x_gpu)
    (out.square().sum()).backward()
    (out_gpu.square().sum()).backward()
    torch.testing.assert_close(out_gpu.cpu(), out, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(x_gpu.grad.cpu(), x.grad, rtol=1e-9, atol=1e-10)
    for (name, p), p_gpu in zip(network.named_parameters(), on_gpu.parameters(), strict=True):
        torch.testing.assert_close(p_gpu.grad.cpu(), p.grad, rtol=1e-9, atol=1e-10, msg=name)


@needs_cuda
@pytest.mark.parametrize("arch", ["mlp-small", "kan-small", "kan-kan"])
def test_a_cql_step_on_the_gpu_computes_the_cpus_losses(arch: str) -> None:
    """The first update of three seeds side by side (the same initial parameters, batch and noise) gives the same
    losses on CUDA as on the CPU, to float32 rounding."""
    config = CQLConfig(batch_size=32, cql_n_actions=4)
    agents = {
        device: CQL.from_members([single(arch, seed, config, device) for seed in (0, 1, 2)])
        for device in ("cpu", "cuda")
    }
    batch = random_batch(3, 32, torch.Generator().manual_seed(0))
    noise = agents["cpu"].draw_noise(32)
    expected = agents["cpu"].update(batch, noise)
    got = agents["cuda"].update(Batch(*(x.cuda() for x in batch)), StepNoise(*(x.cuda() for x in noise)))
    torch.testing.assert_close(got.cpu(), expected, rtol=1e-4, atol=1e-5)


# Every algorithm's step, eager and compiled (CUDA graphs).
STEPS_ON_THE_GPU = [
    pytest.param(name, compiled, id=f"{name}-compiled" if compiled else name)
    for name in sorted(ALGORITHMS)
    for compiled in (False, True)
]


@needs_cuda
@pytest.mark.parametrize(("algo", "compiled"), STEPS_ON_THE_GPU)
def test_training_steps_on_the_gpu_never_wait_for_it(algo: str, compiled: bool) -> None:
    """The body of the trainer's epoch loop (each seed's minibatch gathered on the GPU by its indices, one update
    of two seeds side by side, the losses summed on the GPU) only queues work: under torch's sync debug mode any
    host-device synchronization in it raises. The steps before it create Adam's state and, compiled, record the
    CUDA graphs, which must cover every graph of the step (inductor skips CUDA graphs for a graph that, say,
    mutates a tensor it takes as an input, and the step then runs those kernels one launch at a time)."""
    skipped = counters["inductor"]["cudagraph_skips"]
    algorithm = ALGORITHMS[algo]
    members = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        members.append(algorithm.agent(11, 3, get_architecture("kan-small"), algorithm.config(), device="cuda"))
    agent = algorithm.agent.from_members(members, noise_seed=0, compiled=compiled)
    g = torch.Generator().manual_seed(0)
    data = dict(zip(Batch._fields, (x[0].cuda() for x in random_batch(1, 1000, g)), strict=True))
    indices = torch.randint(1000, (8, 2, 256), device="cuda")  # (steps, seeds, batch), as `_train_epoch` draws
    losses = []

    def step(i: int) -> None:
        batch = Batch(*(data[k][indices[i]] for k in Batch._fields))
        losses.append(agent.update(batch).clone())

    for i in range(4):
        step(i)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for i in range(4, 8):
            step(i)
        total = torch.stack(losses).sum(dim=0)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert torch.isfinite(total).all()
    assert counters["inductor"]["cudagraph_skips"] == skipped, "a compiled graph of the step left out of CUDA graphs"

"""Seeds side by side: a population of agents in one process trains each seed as it trains alone."""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from bench import train
from bench.agents.cql import CQL, Batch, CQLConfig, StepNoise
from bench.cli import main
from bench.errors import BenchError
from bench.evaluate import evaluate_policy
from bench.nets.heads import TanhGaussianActor
from bench.nets.spec import count_parameters, get_architecture
from bench.train import RunConfig, train_group
from tests import test_train as train_tests
from tests.d4rl_files import write_small_d4rl_file
from tests.devices import devices
from tests.interrupts import FirstEpochDiverges, interrupted_on_call
from tests.test_train import comparable


@pytest.fixture(scope="module")
def hopper_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_small_d4rl_file(tmp_path_factory.mktemp("data") / "hopper-tiny.hdf5", env="hopper")


def tiny_config(path: Path, **changes) -> RunConfig:
    """test_train's tiny cell with a KAN actor."""
    return train_tests.tiny_config(path, **{"arch": "kan-small", **changes})


def random_batch(population: int, size: int, generator: torch.Generator, obs: int = 11, act: int = 3) -> Batch:
    """A minibatch per member of uniform-random transitions (about one in ten terminal)."""
    return Batch(
        torch.randn(population, size, obs, generator=generator),
        torch.rand(population, size, act, generator=generator) * 2 - 1,
        torch.randn(population, size, generator=generator),
        torch.randn(population, size, obs, generator=generator),
        (torch.rand(population, size, generator=generator) < 0.1).float(),
    )


def single(arch: str, seed: int, config: CQLConfig, device: str = "cpu") -> CQL:
    torch.manual_seed(seed)
    return CQL(11, 3, get_architecture(arch), config, device=device)


def member_slice(noise_or_batch, p: int):
    return type(noise_or_batch)(*(x[p : p + 1] for x in noise_or_batch))


@pytest.mark.parametrize("arch", ["mlp-small", "kan-small", "kan-kan"])
def test_a_population_update_is_each_members_update_alone(arch: str) -> None:
    config = CQLConfig(batch_size=8, cql_n_actions=3)
    members = [single(arch, seed, config) for seed in (0, 1, 2)]
    alone = copy.deepcopy(members)
    population = CQL.from_members(members)
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        batch = random_batch(3, 8, g)
        noise = population.draw_noise(8)
        together = population.losses_dict(population.update(batch, noise))
        for p, agent in enumerate(alone):
            losses = agent.losses_dict(agent.update(member_slice(batch, p), member_slice(noise, p)))
            for name, value in losses.items():
                torch.testing.assert_close(value[0], together[name][p], rtol=1e-5, atol=1e-6)
    for p, agent in enumerate(alone):
        for name, value in agent.actor.state_dict().items():
            torch.testing.assert_close(value.reshape(-1), population.actor.state_dict()[name][p].reshape(-1))
        critics = population.critic.state_dict()
        for name, value in agent.critic.state_dict().items():
            stacked = critics[name].reshape(config.num_critics, 3, *value.shape[1:])
            torch.testing.assert_close(value, stacked[:, p])


def test_a_diverged_member_leaves_the_others_untouched() -> None:
    config = CQLConfig(batch_size=8, cql_n_actions=3)
    members = [single("mlp-small", seed, config) for seed in (0, 1)]
    reference = CQL.from_members(copy.deepcopy(members))
    population = CQL.from_members(members)
    with torch.no_grad():
        population.actor.network.layers[0].weight[1].fill_(float("nan"))
    batch = Batch(
        torch.randn(2, 8, 11), torch.rand(2, 8, 3), torch.randn(2, 8), torch.randn(2, 8, 11), torch.zeros(2, 8)
    )
    noise = reference.draw_noise(8)
    losses = population.update(batch, noise)
    expected = reference.update(batch, noise)
    assert torch.isnan(losses[:, 1]).any()
    torch.testing.assert_close(losses[:, 0], expected[:, 0])
    torch.testing.assert_close(
        population.actor.network.layers[0].weight[0], reference.actor.network.layers[0].weight[0]
    )


def test_group_members_start_from_their_seeds_parameters_and_draw_their_own_batches(
    hopper_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict[str, list] = {}
    real_update = CQL.update

    def recording_update(self: CQL, batch: Batch, noise: StepNoise | None = None) -> torch.Tensor:
        key = "group" if self.population > 1 else "alone"
        entry = seen.setdefault(key, [])
        if not entry:
            entry.append(copy.deepcopy(self.actor.state_dict()))
        entry.append(batch.observations.clone())
        return real_update(self, batch, noise)

    monkeypatch.setattr(CQL, "update", recording_update)
    train_group(tiny_config(hopper_file), [4], [tmp_path / "alone" / "seed4.json"], progress=False)
    train_group(
        tiny_config(hopper_file), [3, 4], [tmp_path / "g" / "seed3.json", tmp_path / "g" / "seed4.json"], progress=False
    )
    alone_init, *alone_batches = seen["alone"]
    group_init, *group_batches = seen["group"]
    for name, value in alone_init.items():
        torch.testing.assert_close(group_init[name][1], value[0], rtol=0, atol=0)
    assert len(alone_batches) == len(group_batches) == 6
    for a, g in zip(alone_batches, group_batches, strict=True):
        assert torch.equal(a[0], g[1])
        assert not torch.equal(g[0], g[1])


def test_group_is_deterministic_and_writes_one_record_per_seed(hopper_file: Path, tmp_path: Path) -> None:
    outs = [tmp_path / "a" / f"seed{s}.json" for s in (0, 1)]
    records = train_group(tiny_config(hopper_file), [0, 1], outs, progress=False)
    again = train_group(
        tiny_config(hopper_file), [0, 1], [tmp_path / "b" / f"seed{s}.json" for s in (0, 1)], progress=False
    )
    assert [comparable(r) for r in records] == [comparable(r) for r in again]
    for seed, out, record in zip((0, 1), outs, records, strict=True):
        assert json.loads(out.read_text()) == record
        arch = get_architecture(record["cell"]["arch"])
        actor = TanhGaussianActor(11, 3, arch.actor, arch.kan)
        actor.load_state_dict(torch.load(train.actor_path(out), weights_only=True))
        assert count_parameters(actor) == record["parameters"]["actor"]
        assert record["status"] == "done" and record["cell"]["seed"] == seed and record["config"]["seed"] == seed
        assert record["group"] == {"seeds": [0, 1], "size": 2}
        assert record["evaluation"]["seed"] == seed * 2
        assert record["parameters"]["actor"] == 682  # one seed's actor: KAN 11-4-6 (440 + 240) and 2 log-std scalars
        diagnostics = record["diagnostics"]
        assert diagnostics["step"] == [2, 4, 6]
        for name in ("td_loss", "cql_gap", "q_data", "alpha", "policy_loss", "log_pi"):
            assert len(diagnostics[name]) == 3 and all(np.isfinite(diagnostics[name]))
        assert record["losses"]["td_loss"] == diagnostics["td_loss"][-1]
    assert records[0]["curve"] != records[1]["curve"]


# The compiled step (a grid's `compile: true`) must resume as exactly as the eager one: a study may compile.
@pytest.mark.parametrize("compiled", [False, pytest.param(True, marks=pytest.mark.slow)], ids=["eager", "compiled"])
def test_killed_group_resumes_to_the_uninterrupted_records(
    hopper_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, compiled: bool
) -> None:
    config = tiny_config(hopper_file, compile=compiled)
    reference = train_group(config, [0, 1], [tmp_path / "ref" / f"seed{s}.json" for s in (0, 1)], progress=False)
    outs = [tmp_path / "killed" / f"seed{s}.json" for s in (0, 1)]
    real = train._train_epoch
    monkeypatch.setattr(train, "_train_epoch", interrupted_on_call(real, 3))
    with pytest.raises(KeyboardInterrupt):
        train_group(config, [0, 1], outs, progress=False)
    checkpoint = train.group_checkpoint_path(outs)
    assert checkpoint.name == "seed0+seed1.ckpt.pt" and checkpoint.exists()
    assert not any(out.exists() for out in outs)
    monkeypatch.setattr(train, "_train_epoch", real)
    resumed = train_group(config, [0, 1], outs, progress=False)
    assert [comparable(r) for r in resumed] == [comparable(r) for r in reference]
    assert not checkpoint.exists()


def test_one_diverged_seed_does_not_stop_the_others(
    hopper_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = train._train_epoch

    def seed_one_diverges(*args, **kwargs):
        seconds, losses = real(*args, **kwargs)
        critic = losses["critic_loss"].copy()
        critic[1] = np.nan
        return seconds, {**losses, "critic_loss": critic}

    monkeypatch.setattr(train, "_train_epoch", seed_one_diverges)
    outs = [tmp_path / f"seed{s}.json" for s in (0, 1)]
    done, diverged = train_group(tiny_config(hopper_file), [0, 1], outs, progress=False)
    assert done["status"] == "done" and done["steps_done"] == 6 and len(done["curve"]) == 2
    assert diverged["status"] == "diverged" and diverged["steps_done"] == 2 and "critic_loss" in diverged["error"]
    assert json.loads(outs[1].read_text())["status"] == "diverged"


def test_a_group_resumes_at_its_checkpoints_step_past_a_seed_that_diverged_before_it(
    hopper_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    diverges = FirstEpochDiverges(train._train_epoch)

    config = tiny_config(hopper_file)  # 3 epochs of 2 steps, a checkpoint after each
    monkeypatch.setattr(train, "_train_epoch", diverges)
    reference = train_group(config, [0, 1], [tmp_path / "ref" / f"seed{s}.json" for s in (0, 1)], progress=False)
    outs = [tmp_path / "killed" / f"seed{s}.json" for s in (0, 1)]
    monkeypatch.setattr(train, "_train_epoch", interrupted_on_call(diverges.restart(), 3))
    with pytest.raises(KeyboardInterrupt):
        train_group(config, [0, 1], outs, progress=False)
    diverged = outs[0].read_bytes()
    assert json.loads(diverged)["status"] == "diverged" and train.group_checkpoint_path(outs).exists()
    monkeypatch.setattr(train, "_train_epoch", diverges.restart())
    resumed = train_group(config, [0, 1], outs, progress=False)
    # One epoch left after the checkpoint at step 4, although the diverged seed stopped counting at step 2.
    assert diverges.epochs == 1
    assert [comparable(r) for r in resumed] == [comparable(r) for r in reference]
    assert resumed[1]["diagnostics"]["step"] == [2, 4, 6]
    assert outs[0].read_bytes() == diverged  # the diverged seed trained along; its record stays as it was


def test_a_done_record_is_kept_when_its_group_resumes_and_refused_without_a_checkpoint(
    hopper_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tiny_config(hopper_file)
    outs = [tmp_path / f"seed{s}.json" for s in (0, 1)]
    monkeypatch.setattr(train, "_train_epoch", interrupted_on_call(train._train_epoch, 3))
    with pytest.raises(KeyboardInterrupt):
        train_group(config, [0, 1], outs, progress=False)
    monkeypatch.undo()
    # Killed while the final records were written: seed 0's is there, seed 1's is not.
    reference = train_group(config, [0, 1], [tmp_path / "ref" / f"seed{s}.json" for s in (0, 1)], progress=False)
    outs[0].write_text(json.dumps(reference[0]))
    resumed = train_group(config, [0, 1], outs, progress=False)
    assert resumed[0] == reference[0] and json.loads(outs[0].read_text()) == reference[0]
    assert comparable(resumed[1]) == comparable(reference[1])
    with pytest.raises(BenchError, match="already holds a finished record; pass --force"):
        train_group(config, [0, 1], outs, progress=False)


def test_a_checkpoint_that_cannot_be_read_is_one_error_that_says_what_to_do(hopper_file: Path, tmp_path: Path) -> None:
    outs = [tmp_path / f"seed{s}.json" for s in (0, 1)]
    train.group_checkpoint_path(outs).write_bytes(b"not a checkpoint")
    with pytest.raises(BenchError, match=r"seed0\+seed1.ckpt.pt cannot be read .*delete it to start the cell over"):
        train_group(tiny_config(hopper_file), [0, 1], outs, progress=False)


def test_run_cli_with_seeds_writes_a_folder_of_records(hopper_file: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "cell"
    argv = ["run", "--dataset", f"local:{hopper_file}", "--arch", "mlp-small", "--seeds", "2-3", "--steps", "2"]
    argv += ["--epoch-steps", "2", "--eval-every", "2", "--eval-episodes", "1", "--device", "cpu", "--no-progress"]
    argv += ["--set", "batch_size=8", "--set", "cql_n_actions=2", "--out", str(out)]
    assert main(argv) == 0
    assert sorted(p.name for p in out.iterdir()) == ["seed2.actor.pt", "seed2.json", "seed3.actor.pt", "seed3.json"]
    printed = capsys.readouterr().out
    assert "seed 2" in printed and "seed 3" in printed and "2 seeds side by side" in printed
    assert main([*argv[:5], "--seeds", "1,1", *argv[7:]]) == 2


def agent_state(agent: CQL) -> list[torch.Tensor]:
    """Every tensor an update reads and writes, in a fixed order: networks, temperatures, Adam's steps and moments."""
    tensors = [*agent.actor.state_dict().values(), *agent.critic.state_dict().values()]
    tensors += [*agent.target_critic.state_dict().values(), agent.log_alpha, agent.log_alpha_prime]
    for group in agent.optimizer.param_groups:
        for p in group["params"]:
            tensors += [agent.optimizer.state[p][key] for key in ("step", "exp_avg", "exp_avg_sq")]
    return tensors


@pytest.mark.parametrize(("arch", "steps"), [("mlp-small", 200), ("kan-kan", 30)])
@pytest.mark.parametrize("device", devices)
def test_compiled_update_agrees_with_eager_step_by_step(device: str, arch: str, steps: int) -> None:
    """Each compiled step (200 with MLPs; 30 with KAN actor and critics, to keep the test short), taken from the
    eager agent's state, does what the eager step does (on CUDA the compiled step replays CUDA graphs).

    Run apart, the two drift by chaos rather than by error: float32 reassociation (and the compiled plain Adam
    against eager's fused one) switches a hidden unit at a ReLU kink on in one run and off in the other, and
    Adam's normalized step then differs by about the learning rate; how far that goes in 200 steps depends on the
    CPU's kernels and the thread count (measured: from 1 to 6 learning rates at the worst parameter). So before
    each step the compiled agent takes the eager agent's whole state, in place (the compiled graph keeps its
    tensors), and the step must agree: the losses to float tolerance, and every tensor's change (parameters,
    target critics, temperature, Adam's moments) within 10% of the eager change on average over its elements
    (measured at most 2.3%; a missing term, learning rate or Polyak update changes it by the whole change).
    With KAN actor and critics the compiled step traces the spline features' own autograd function.
    """
    config = CQLConfig(batch_size=16, cql_n_actions=3)
    eager = CQL.from_members([single(arch, 0, config, device)], noise_seed=7)
    compiled = CQL.from_members([single(arch, 0, config, device)], noise_seed=7, compiled=True)
    g = torch.Generator().manual_seed(0)
    for step in range(steps):
        batch = Batch(*(x.to(device) for x in random_batch(1, 16, g)))
        noise = eager.draw_noise(batch.observations.shape[1])
        if step == 0:  # both fresh, and Adam's state does not exist yet; CUDA's kernels differ more from cuBLAS's
            tolerance = {"rtol": 1e-3, "atol": 1e-4} if device == "cuda" else {}
            torch.testing.assert_close(compiled.update(batch, noise), eager.update(batch, noise), **tolerance)
            continue
        with torch.no_grad():
            for target, source in zip(agent_state(compiled), agent_state(eager), strict=True):
                target.copy_(source)
        before = [t.detach().clone() for t in agent_state(eager)]
        expected, got = eager.update(batch, noise), compiled.update(batch, noise)
        torch.testing.assert_close(got, expected, rtol=1e-3, atol=1e-4)
        for index, (start, e, c) in enumerate(zip(before, agent_state(eager), agent_state(compiled), strict=True)):
            eager_change, compiled_change = (e - start).double(), (c - start).double()
            scale = eager_change.abs().mean()
            assert (compiled_change - eager_change).abs().mean() <= 0.1 * scale, (step, index)


def test_load_trained_actor_rebuilds_the_final_actor_from_the_record(tmp_path: Path, hopper_file: Path) -> None:
    out = tmp_path / "seed0.json"
    record = train.train_cell(tiny_config(hopper_file), out, progress=False)
    actor, loaded = train.load_trained_actor(out)
    assert loaded == record
    saved = torch.load(train.actor_path(out), weights_only=True)
    assert all(torch.equal(actor.state_dict()[k], v) for k, v in saved.items())
    assert not actor.training
    train.actor_path(out).unlink()
    with pytest.raises(BenchError, match=r"seed0\.actor\.pt is missing"):
        train.load_trained_actor(out)
    with pytest.raises(BenchError, match="not a finished record"):
        train.load_trained_actor(tmp_path / "seed9.json")


@pytest.mark.slow
def test_every_compiled_agent_of_a_process_compiles_past_dynamos_limit_of_eight() -> None:
    """Dynamo compiles one piece of code at most 8 times by default, and each agent's update is one more version
    (guarded on its optimizer): a process's ninth compiled agent ran eagerly, its record saying compiled."""
    from torch._dynamo.utils import counters

    config, g = CQLConfig(batch_size=16, cql_n_actions=3), torch.Generator().manual_seed(0)
    for index in range(12):
        agent = CQL.from_members([single("mlp-small", 0, config)], noise_seed=7, compiled=True)
        graphs = counters["stats"]["unique_graphs"]
        for _ in range(2):  # before and after Adam has its state
            agent.update(random_batch(1, 16, g))
        assert counters["stats"]["unique_graphs"] > graphs, f"compiled agent {index + 1} of the test ran eagerly"


def test_a_compiled_update_keeps_dynamos_optimizer_profiler_warning_out_of_the_logs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    CQL.from_members([single("mlp-small", 0, CQLConfig(batch_size=16, cql_n_actions=3))], compiled=True)
    logger = logging.getLogger("torch._dynamo.variables.ctx_manager")
    with caplog.at_level(logging.WARNING, logger=logger.name):
        logger.warning("Profiler record function %s will be ignored", "<class 'record_function'>")
        logger.warning("Graph break: something else")
    assert [r.getMessage() for r in caplog.records] == ["Graph break: something else"]


@pytest.mark.parametrize("normalize_states", [True, False])
def test_the_final_actor_replays_the_runs_last_evaluation_from_its_record_alone(
    tmp_path: Path, hopper_file: Path, normalize_states: bool
) -> None:
    out = tmp_path / "seed0.json"
    record = train.train_cell(tiny_config(hopper_file, normalize_states=normalize_states), out, progress=False)
    stats = record["evaluation"]["state_normalization"]
    if normalize_states:
        dataset = train.load_dataset(f"local:{hopper_file}")
        assert stats == {"mean": dataset.state_mean.tolist(), "std": dataset.state_std.tolist()}
    else:
        assert stats is None
    policy, loaded = train.trained_policy(out)
    assert loaded == record
    evaluation = record["evaluation"]
    result = evaluate_policy("hopper", policy, episodes=evaluation["episodes"], seed=evaluation["seed"])
    last = record["curve"][-1]
    assert [int(n) for n in result.lengths] == last["episode_lengths"]
    np.testing.assert_allclose(result.returns, last["episode_returns"], rtol=1e-6)

    del loaded["evaluation"]["state_normalization"]  # a record from before the statistics were kept
    out.write_text(json.dumps(loaded))
    with pytest.raises(BenchError, match="predates the state statistics"):
        train.trained_policy(out)

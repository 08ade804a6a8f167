"""The local D4RL-recipe suite: behaviour policies trained here, nine datasets regenerated from them.

D4RL's recipe (Fu et al., 2020), followed per environment:
- train SAC online; "expert" is the best policy reached, "medium" an earlier snapshot whose return is nearest
  one third of the expert's (both chosen by 10-episode evaluations of a shortlist of snapshots: SAC's return
  swings between snapshots, so the final one can sit in a dip);
- `<env>-medium`: one stream of the medium policy; `<env>-medium-replay`: the training stream up to the medium
  snapshot; `<env>-medium-expert`: the medium stream followed by an expert stream.

What is committed per environment (`behaviour_policies/<env>/`): the medium and expert actor weights, the
actions of the training stream up to the medium snapshot, and `policies.json` (steps, seeds, returns, and a
hash of the training stream). MuJoCo is deterministic, so stepping the environment from the same seed with
the same actions rebuilds the training stream exactly; the hash checks that it did. Rollouts of the two
policies sample actions from their own seeded generators, so regeneration gives byte-identical files.

Recipes: how the two policies' actions are computed (`RECIPES`). Recipe 2 (the default) runs the policy in
float64 and rounds each action to float32, and gives the same files on any x86 CPU. Recipe 1, the float32 forward
pass the CPU study's datasets were made with, gives byte-identical files only on a CPU that takes the same matmul
kernels as the one that made them: one flipped last bit sends a rollout elsewhere, and MKL's float32 kernels
differ between AVX2 and AVX-512 machines and between Intel and AMD ones.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.agents.sac import stochastic_policy
from bench.data.generate import collect_transitions, stream_digest
from bench.data.hdf5 import write_d4rl_hdf5
from bench.data.registry import get_env_spec, local_dataset_dir
from bench.errors import BenchError
from bench.evaluate import EvaluationResult, evaluate_policy
from bench.fileio import atomic_torch_save, atomic_write_json, atomic_write_npz
from bench.nets.heads import TanhGaussianActor
from bench.nets.kan import KANOptions
from bench.nets.spec import parse_network_spec

POLICIES_DIR = Path(__file__).resolve().parents[2] / "behaviour_policies"
LEVELS = ("medium", "medium-replay", "medium-expert")
# Rows of the medium and expert streams: a fifth of D4RL's 1,000,000, so the nine files regenerate in minutes
# on two CPU cores and CQL's epochs still sample from hundreds of episodes.
DEFAULT_DATASET_STEPS = 200_000
# Recipe -> the precision the behaviour policies' actions are computed in (module docstring).
RECIPES = {1: torch.float32, 2: torch.float64}
DEFAULT_RECIPE = 2
# Training actions per committed file: 150,000 Walker2d actions compress to about 3.3 MB (random-looking floats
# barely compress), under the 5 MB that a committed file may take.
REPLAY_ROWS_PER_FILE = 150_000
EVAL_SEED = 20_000
EVAL_EPISODES = 10
# Snapshots shortlisted by their training-time return, then evaluated on EVAL_EPISODES to pick each policy.
EXPERT_CANDIDATES = 5
MEDIUM_CANDIDATES = 5
# SAC environment steps per environment: a million, as SAC's MuJoCo results and D4RL's policies need (200,000 left
# hopper's expert at a score of 30). About 6 hours per environment on one core (45-50 updates/s with 2 x 256
# networks, plus snapshot evaluations); `make behaviour-policies` trains the three in parallel, resumably.
DEFAULT_SAC_STEPS = {"hopper": 1_000_000, "walker2d": 1_000_000, "halfcheetah": 1_000_000}


def expert_candidates(snapshots: list[dict[str, Any]], count: int = EXPERT_CANDIDATES) -> list[dict[str, Any]]:
    """The final snapshot and the `count - 1` others of highest training-time return, the first excluded (a
    medium policy must come before the expert), in step order.

    Training-time returns are means of a few episodes, too noisy to pick a policy alone: a walker that falls in
    one of five episodes moves its mean by a fifth. They only shortlist candidates for a longer evaluation.
    """
    if len(snapshots) < 2:
        raise BenchError("need at least two policy snapshots to choose the policies; train for longer")
    best = sorted(snapshots[1:-1], key=lambda s: (-s["return_mean"], s["step"]))[: count - 1]
    return sorted([*best, snapshots[-1]], key=lambda s: s["step"])


def choose_expert(candidates: list[dict[str, Any]], returns: dict[int, float]) -> dict[str, Any]:
    """The candidate of highest evaluated return (`returns[step]`), the later one on a tie."""
    return max(candidates, key=lambda s: (returns[s["step"]], s["step"]))


def medium_candidates(
    snapshots: list[dict[str, Any]], expert: dict[str, Any], count: int = MEDIUM_CANDIDATES
) -> list[dict[str, Any]]:
    """The `count` snapshots before `expert` whose training-time return is nearest a third of the expert's."""
    earlier = [s for s in snapshots if s["step"] < expert["step"]]
    if not earlier:
        raise BenchError(f"no policy snapshot before the expert's (step {expert['step']:,}) to be the medium one")
    target = expert["return_mean"] / 3.0
    return sorted(earlier, key=lambda s: (abs(s["return_mean"] - target), s["step"]))[:count]


def choose_medium(candidates: list[dict[str, Any]], returns: dict[int, float], expert_return: float) -> dict[str, Any]:
    """The candidate whose evaluated return (`returns[step]`) is nearest one third of `expert_return`."""
    target = expert_return / 3.0
    return min(candidates, key=lambda s: (abs(returns[s["step"]] - target), s["step"]))


def export_behaviour_policies(run_dir: Path, dest: Path) -> dict[str, Any]:
    """Choose the policies of a finished SAC run (`train_sac`'s folder) and copy what regeneration needs into
    `dest`: the expert is the `expert_candidates` snapshot of highest 10-episode return; the medium one is the
    `medium_candidates` snapshot whose 10-episode return is nearest a third of the expert's.
    """
    run_dir, dest = Path(run_dir), Path(dest)
    summary_path = run_dir / "summary.json"
    if not summary_path.exists():
        raise BenchError(f"{summary_path} not found: the SAC run in {run_dir} has not finished")
    summary = json.loads(summary_path.read_text())
    snapshots = summary["snapshots"]
    env, actor_spec = summary["env"], summary["config"]["sac"]["actor"]
    with single_threaded_torch():
        sampled: dict[int, EvaluationResult] = {}

        def evaluated(snaps: list[dict[str, Any]]) -> dict[int, float]:
            for snap in snaps:
                if snap["step"] not in sampled:
                    actor = load_behaviour_actor(run_dir / snap["path"], env, actor_spec)
                    sampled[snap["step"]] = _evaluate(actor, env)
            return {snap["step"]: sampled[snap["step"]].mean_return for snap in snaps}

        shortlist = expert_candidates(snapshots)
        expert = choose_expert(shortlist, evaluated(shortlist))
        candidates = medium_candidates(snapshots, expert)
        medium = choose_medium(candidates, evaluated(candidates), sampled[expert["step"]].mean_return)
        actions = np.load(run_dir / "training_actions.npy")[: medium["step"]]
        dest.mkdir(parents=True, exist_ok=True)
        return _export(run_dir, dest, summary, medium, expert, shortlist, candidates, actions, sampled)


def _export(
    run_dir: Path,
    dest: Path,
    summary: dict[str, Any],
    medium: dict,
    expert: dict,
    shortlist: list[dict],
    candidates: list[dict],
    actions: np.ndarray,
    sampled: dict[int, EvaluationResult],
) -> dict[str, Any]:
    snapshots, config = summary["snapshots"], summary["config"]
    for name, snap in (("medium", medium), ("expert", expert)):
        state = torch.load(run_dir / snap["path"], weights_only=True)
        atomic_torch_save(state, dest / f"{name}_actor.pt")
    save_replay_actions(dest, actions)
    spec = get_env_spec(summary["env"])
    actor_spec = config["sac"]["actor"]
    info = {
        "env": spec.name,
        "env_id": spec.env_id,
        "actor": actor_spec,
        "sac": config["sac"],
        "sac_steps": config["steps"],
        "sac_budgets": summary.get("budgets", [{"step": 0, "steps": config["steps"]}]),
        "sac_seed": config["seed"],
        "snapshot_episodes": config["snapshot_episodes"],
        "medium": _policy_info(medium, dest / "medium_actor.pt", spec.name, actor_spec, sampled[medium["step"]]),
        "expert": _policy_info(expert, dest / "expert_actor.pt", spec.name, actor_spec, sampled[expert["step"]]),
        "medium_to_expert_return": None,
        "replay": {"steps": medium["step"], "seed": config["seed"], "stream_sha256": medium["stream_sha256"]},
        "snapshots": [{k: s[k] for k in ("step", "return_mean", "normalized_score")} for s in snapshots],
        "expert_candidates": _candidate_info(shortlist, sampled),
        "medium_candidates": _candidate_info(candidates, sampled),
    }
    info["medium_to_expert_return"] = info["medium"]["return_mean"] / info["expert"]["return_mean"]
    atomic_write_json(dest / "policies.json", info)
    return info


def _candidate_info(snaps: list[dict], sampled: dict[int, EvaluationResult]) -> list[dict[str, Any]]:
    return [
        {"step": s["step"], "snapshot_return_mean": s["return_mean"], "return_mean": sampled[s["step"]].mean_return}
        for s in snaps
    ]


@contextlib.contextmanager
def single_threaded_torch() -> Iterator[None]:
    """One torch thread: matmul results can change in the last bit with the thread count, and a rollout
    amplifies any change, so byte-identical regeneration needs a fixed thread count."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def dataset_paths(env: str, out_dir: Path | None = None) -> dict[str, Path]:
    """Level -> the local dataset file `<out_dir>/<env>-<level>.hdf5` for the three levels."""
    folder = local_dataset_dir(out_dir)
    return {level: folder / f"{env}-{level}.hdf5" for level in LEVELS}


def regenerate_datasets(
    env: str,
    *,
    policies_dir: Path | None = None,
    out_dir: Path | None = None,
    dataset_steps: int = DEFAULT_DATASET_STEPS,
    seed: int = 0,
    progress: bool = True,
    overwrite: bool = False,
    recipe: int = DEFAULT_RECIPE,
) -> list[Path]:
    """Write `<env>-medium`, `<env>-medium-replay` and `<env>-medium-expert` from the committed policies, their
    actions computed as `recipe` says (`RECIPES`)."""
    if recipe not in RECIPES:
        raise BenchError(f"dataset recipe {recipe!r} is not one of {sorted(RECIPES)}")
    with single_threaded_torch():
        return _regenerate_datasets(env, policies_dir, out_dir, dataset_steps, seed, progress, overwrite, recipe)


def _regenerate_datasets(
    env: str,
    policies_dir: Path | None,
    out_dir: Path | None,
    dataset_steps: int,
    seed: int,
    progress: bool,
    overwrite: bool,
    recipe: int,
) -> list[Path]:
    spec = get_env_spec(env)
    policies_dir = Path(policies_dir) if policies_dir else POLICIES_DIR / spec.name
    info_path = policies_dir / "policies.json"
    if not info_path.exists():
        raise BenchError(
            f"{info_path} not found: no behaviour policies for {spec.name}; train them with "
            f"`python -m bench datasets generate --env {spec.name}`"
        )
    info = json.loads(info_path.read_text())
    paths = dataset_paths(spec.name, out_dir)
    existing = [str(p) for p in paths.values() if p.exists()]
    if existing and not overwrite:
        raise BenchError(f"{', '.join(existing)} already exist; pass --overwrite to replace them")

    medium_actor = load_behaviour_actor(policies_dir / "medium_actor.pt", spec.name, info["actor"])
    expert_actor = load_behaviour_actor(policies_dir / "expert_actor.pt", spec.name, info["actor"])
    # Distinct seeds per stream: the medium and expert rollouts must not start from the same states.
    dtype = RECIPES[recipe]
    medium = collect_transitions(
        spec.name, stochastic_policy(medium_actor, seed, dtype=dtype), steps=dataset_steps, seed=seed, progress=progress
    )
    expert = collect_transitions(
        spec.name,
        stochastic_policy(expert_actor, seed + 1, dtype=dtype),
        steps=dataset_steps,
        seed=seed + 1,
        progress=progress,
    )
    replay = replay_training_stream(spec.name, policies_dir, info, progress=progress)

    attrs = {
        "env": spec.name,
        "source": "local",
        "env_id": spec.env_id,
        "generator": "bench.suite.recipe",
        "recipe": recipe,
    }
    write_d4rl_hdf5(paths["medium"], medium, {**attrs, "policy": "sac-medium", "seed": seed, "level": "medium"})
    write_d4rl_hdf5(
        paths["medium-replay"],
        replay,
        {**attrs, "policy": "sac-training-stream", "seed": info["replay"]["seed"], "level": "medium-replay"},
    )
    both = {key: np.concatenate([medium[key], expert[key]]) for key in medium}
    write_d4rl_hdf5(
        paths["medium-expert"],
        both,
        {**attrs, "policy": "sac-medium+sac-expert", "seed": seed, "level": "medium-expert"},
    )
    return list(paths.values())


def replay_training_stream(
    env: str, policies_dir: Path, info: dict[str, Any], *, progress: bool = False
) -> dict[str, np.ndarray]:
    """Step the environment from the training seed with the recorded actions; check the stream's hash."""
    actions = load_replay_actions(Path(policies_dir))
    replay = info["replay"]
    if len(actions) != replay["steps"]:
        raise BenchError(f"{policies_dir}/replay_actions*.npz hold {len(actions)} actions, policies.json says {replay}")
    position = iter(range(len(actions)))

    def recorded(_obs: np.ndarray) -> np.ndarray:
        return actions[next(position)]

    stream = collect_transitions(env, recorded, steps=len(actions), seed=replay["seed"], progress=progress)
    if stream_digest(stream) != replay["stream_sha256"]:
        raise BenchError(
            f"replaying {policies_dir}/replay_actions*.npz did not rebuild the training stream (hash mismatch): "
            "this MuJoCo build simulates differently from the one that trained the policies"
        )
    return stream


def save_replay_actions(dest: Path, actions: np.ndarray, max_rows: int = REPLAY_ROWS_PER_FILE) -> list[Path]:
    """The training actions up to the medium snapshot as `replay_actions.npz`, or, for a stream of more than
    `max_rows` rows, as `replay_actions-000.npz`, `-001`, ... (each a few MB, so every committed file stays
    small). Files of an earlier export are removed first, so the folder never mixes two streams."""
    for old in Path(dest).glob("replay_actions*.npz"):
        old.unlink()
    if len(actions) <= max_rows:
        paths = [Path(dest) / "replay_actions.npz"]
        atomic_write_npz(paths[0], actions=actions)
        return paths
    paths = []
    for part, start in enumerate(range(0, len(actions), max_rows)):
        paths.append(Path(dest) / f"replay_actions-{part:03d}.npz")
        atomic_write_npz(paths[-1], actions=actions[start : start + max_rows])
    return paths


def load_replay_actions(policies_dir: Path) -> np.ndarray:
    """The training actions `save_replay_actions` wrote into `policies_dir`, in order."""
    single = Path(policies_dir) / "replay_actions.npz"
    parts = sorted(Path(policies_dir).glob("replay_actions-*.npz"))
    if single.exists() == bool(parts):
        found = "both replay_actions.npz and its parts" if parts else "no replay_actions*.npz"
        raise BenchError(f"{policies_dir}: {found}; export the behaviour policies again")
    files = [single] if single.exists() else parts
    return np.concatenate([np.load(path)["actions"] for path in files])


def load_behaviour_actor(path: Path, env: str, actor_spec: str) -> torch.nn.Module:
    """A SAC actor (`TanhGaussianActor`) with the weights in `path`, in evaluation mode."""
    spec = get_env_spec(env)
    actor = TanhGaussianActor(spec.obs_dim, spec.act_dim, parse_network_spec(actor_spec), KANOptions())
    actor.load_state_dict(torch.load(path, weights_only=True))
    return actor.eval()


def _evaluate(actor: torch.nn.Module, env: str) -> EvaluationResult:
    """The evaluation reported for a behaviour policy: 10 episodes with sampled actions, as in the datasets."""
    return evaluate_policy(env, stochastic_policy(actor, seed=EVAL_SEED), episodes=EVAL_EPISODES, seed=EVAL_SEED)


def _policy_info(
    snapshot: dict[str, Any], actor_path: Path, env: str, actor_spec: str, sampled: EvaluationResult
) -> dict[str, Any]:
    """Step, training-time and 10-episode evaluations (`sampled`, and one with deterministic actions)."""
    actor = load_behaviour_actor(actor_path, env, actor_spec)

    @torch.no_grad()
    def deterministic(obs: np.ndarray) -> np.ndarray:
        return actor(torch.as_tensor(obs), deterministic=True, need_log_prob=False)[0].numpy()

    # The datasets hold sampled actions; CQL is scored with deterministic ones, so both are worth knowing.
    greedy = evaluate_policy(env, deterministic, episodes=EVAL_EPISODES, seed=EVAL_SEED)
    return {
        "step": snapshot["step"],
        "snapshot_return_mean": snapshot["return_mean"],
        "return_mean": sampled.mean_return,
        "return_std": float(np.std(sampled.returns)),
        "normalized_score": sampled.mean_normalized_score,
        "deterministic_return_mean": greedy.mean_return,
        "deterministic_normalized_score": greedy.mean_normalized_score,
        "evaluation": f"{EVAL_EPISODES} episodes, seeds {EVAL_SEED}..{EVAL_SEED + EVAL_EPISODES - 1}; "
        "return_mean with sampled actions",
    }

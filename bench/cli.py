"""`python -m bench ...`: the suite's subcommands.

Each subcommand parses its flags here and calls one function of the package; a `BenchError` (bad input, a
missing file, an unreachable server) becomes one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.errors import BenchError


def _datasets_list(args: argparse.Namespace) -> int:
    from bench.data.commands import format_dataset_table

    print(format_dataset_table(cache_dir=args.cache_dir, local_dir=args.local_dir))
    return 0


def _datasets_fetch(args: argparse.Namespace) -> int:
    from bench.data.download import fetch_dataset
    from bench.data.registry import D4RL_DATASETS

    if args.all == bool(args.names):
        raise BenchError("datasets fetch: name one or more datasets, or pass --all (not both)")
    names = list(D4RL_DATASETS) if args.all else args.names
    for name in names:
        path = fetch_dataset(name, cache_dir=args.cache_dir, base_url=args.base_url, force=args.force)
        print(f"{name}: {path}")
    return 0


def _datasets_generate(args: argparse.Namespace) -> int:
    from bench.data.registry import ENVS, local_dataset_dir

    if args.env is None and (args.policy == "random" or not args.from_policies):
        raise BenchError("datasets generate: pass --env ENV (only --from-policies regenerates every env at once)")
    if args.policy == "random":
        from bench.data.generate import generate_random_dataset

        out = args.out or local_dataset_dir(args.local_dir) / f"{args.env}-random.hdf5"
        path = generate_random_dataset(
            args.env, out, steps=args.steps, seed=args.seed, progress=not args.no_progress, overwrite=args.overwrite
        )
        print(f"wrote {path} (local data, not D4RL); train on it with --dataset local:{path}")
        return 0
    from bench.data.local_suite import (
        DEFAULT_SAC_STEPS,
        POLICIES_DIR,
        dataset_paths,
        export_behaviour_policies,
        regenerate_datasets,
    )

    policies_root = args.policies_dir or POLICIES_DIR
    envs = [args.env] if args.env else list(ENVS)
    if args.from_policies:
        missing = [env for env in envs if not (policies_root / env / "policies.json").exists()]
        if missing:
            raise BenchError(
                f"no behaviour policies for {', '.join(missing)} in {policies_root} (each needs <env>/policies.json); "
                f"train them with `python -m bench datasets generate --env ENV`"
            )
    else:
        from bench.agents.sac import SACRunConfig, train_sac

        work_dir = args.work_dir or local_dataset_dir(args.local_dir) / "sac-runs" / args.env
        config = SACRunConfig(env=args.env, steps=args.sac_steps or DEFAULT_SAC_STEPS[args.env], seed=args.seed)
        if not (work_dir / "summary.json").exists():
            train_sac(config, work_dir, progress=not args.no_progress, threads=args.threads)
        info = export_behaviour_policies(work_dir, policies_root / args.env)
        ratio = info["medium_to_expert_return"]
        band = "" if 0.25 <= ratio <= 0.45 else " (outside D4RL's 25-45%: no shortlisted snapshot came nearer a third)"
        print(
            f"{args.env}: expert return {info['expert']['return_mean']:.1f}, medium return "
            f"{info['medium']['return_mean']:.1f} ({100 * ratio:.0f}% of expert{band}); "
            f"policies in {policies_root / args.env}"
        )
    if not args.overwrite:
        # Check every env first, so a refusal never leaves some envs regenerated and others not.
        paths = [path for env in envs for path in dataset_paths(env, args.local_dir).values()]
        existing = [str(path) for path in paths if path.exists()]
        if existing:
            raise BenchError(f"{', '.join(existing)} already exist; pass --overwrite to replace them")
    for env in envs:
        paths = regenerate_datasets(
            env,
            policies_dir=policies_root / env,
            out_dir=args.local_dir,
            dataset_steps=args.dataset_steps,
            seed=args.seed,
            progress=not args.no_progress,
            overwrite=args.overwrite,
        )
        for path in paths:
            print(f"wrote {path} (local data, not D4RL)")
    return 0


def _nets_describe(args: argparse.Namespace) -> int:
    from bench.nets.describe import describe_architecture

    print(describe_architecture(args.arch, env=args.env, arch_file=args.arch_file))
    return 0


def _speed_nets(args: argparse.Namespace) -> int:
    from bench.nets.speed import run_speed_benchmark

    print(run_speed_benchmark(batch_size=args.batch_size, repeats=args.repeats, threads=args.threads))
    return 0


def _run(args: argparse.Namespace) -> int:
    from bench.agents.cql import CQLConfig
    from bench.train import RunConfig, apply_overrides, train_cell

    config = RunConfig(
        dataset=args.dataset,
        arch=args.arch,
        seed=args.seed,
        steps=args.steps,
        epoch_steps=args.epoch_steps,
        eval_every=args.eval_every,
        eval_episodes=args.eval_episodes,
        checkpoint_every=args.checkpoint_every,
        device=args.device,
        normalize_reward=args.normalize_reward,
        arch_file=str(args.arch_file) if args.arch_file else None,
        cql=apply_overrides(CQLConfig(), args.set),
    )
    record = train_cell(
        config,
        args.out,
        force=args.force,
        progress=not args.no_progress,
        cache_dir=args.cache_dir,
        local_dir=args.local_dir,
    )
    seconds = record["seconds_per_epoch"]
    steps_per_second = record["epoch_steps"] * len(seconds) / sum(seconds) if seconds else float("nan")
    score = record["final_score"]
    print(
        f"{record['status']}: {config.arch} on {config.dataset} seed {config.seed}, "
        f"final score {score if score is None else f'{score:.1f}'}, "
        f"{steps_per_second:.1f} gradient steps/s on {record['device']['name']}; record: {args.out}"
    )
    return 0 if record["status"] == "done" else 3


def _grid(args: argparse.Namespace) -> int:
    from bench.grid.run import missing_datasets, plan_table, require_datasets, run_grid, status_table
    from bench.grid.spec import load_grid
    from bench.grid.store import ResultsStore

    spec = load_grid(args.file)
    if args.grid_command == "check":
        require_datasets(spec, args.cache_dir, args.local_dir)
        print(f"grid {spec.name}: all {len(spec.datasets)} datasets are here")
        return 0
    store = ResultsStore.for_grid(args.results, spec)
    if args.grid_command == "status":
        print(status_table(spec, store))
        return 0
    if args.dry_run:
        print(plan_table(spec, store, missing_datasets(spec, args.cache_dir, args.local_dir)))
        return 0
    result = run_grid(
        spec,
        results=args.results,
        launcher=args.launcher,
        workers=args.workers,
        ray_address=args.ray_address,
        force=args.force,
        cache_dir=args.cache_dir,
        local_dir=args.local_dir,
        progress=not args.no_progress,
    )
    return result.exit_code


def _report(args: argparse.Namespace) -> int:
    from bench.report.build import build_report

    grid = args.results.resolve().name
    tables = None if args.only == "figures" else args.tables or Path("tables") / grid
    figures = None if args.only == "tables" else args.figures or Path("figures") / grid
    summary = build_report(
        args.results,
        tables,
        figures,
        baseline=args.baseline,
        reps=args.reps,
        seed=args.seed,
        allow_mixed=args.allow_mixed,
    )
    print(summary.format())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    datasets = sub.add_parser("datasets", help="list, fetch and validate datasets")
    dsub = datasets.add_subparsers(dest="datasets_command", required=True)
    p = dsub.add_parser("list", help="every known dataset, its environment and whether it is cached")
    p.add_argument("--cache-dir", type=Path, help="D4RL cache (default: $D4RL_DATASET_DIR or ~/.d4rl/datasets)")
    p.add_argument("--local-dir", type=Path, help="local datasets (default: $BENCH_LOCAL_DATASET_DIR)")
    p.set_defaults(func=_datasets_list)
    p = dsub.add_parser("fetch", help="download D4RL v2 files into the cache, resuming and validating")
    p.add_argument("names", nargs="*", metavar="NAME", help="e.g. hopper-medium-v2")
    p.add_argument("--all", action="store_true", help="all nine D4RL v2 MuJoCo datasets")
    p.add_argument("--cache-dir", type=Path, help="default: $D4RL_DATASET_DIR or ~/.d4rl/datasets")
    p.add_argument(
        "--base-url",
        help="mirror URL or local folder holding the .hdf5 files (default: $D4RL_BASE_URL or the D4RL server)",
    )
    p.add_argument("--force", action="store_true", help="download again even if a valid file is cached")
    p.set_defaults(func=_datasets_fetch)

    p = dsub.add_parser(
        "generate",
        help="make local D4RL-recipe datasets with SAC behaviour policies, or a random-policy dataset",
    )
    p.add_argument(
        "--env", choices=["hopper", "walker2d", "halfcheetah"], help="required unless --from-policies (then: all)"
    )
    p.add_argument(
        "--policy", default="sac", choices=["sac", "random"], help="sac: medium, medium-replay, medium-expert"
    )
    p.add_argument(
        "--from-policies",
        action="store_true",
        help="skip training: use the committed policies (all envs without --env)",
    )
    p.add_argument(
        "--policies-dir", type=Path, help="folder of <env>/ behaviour-policy folders (default: behaviour_policies)"
    )
    p.add_argument(
        "--work-dir", type=Path, help="SAC run folder with checkpoints (default: <local dir>/sac-runs/<env>)"
    )
    p.add_argument("--sac-steps", type=int, help="SAC environment steps (default: per environment)")
    p.add_argument("--dataset-steps", type=int, default=200_000, help="rows of the medium and of the expert stream")
    p.add_argument("--threads", type=int, default=1, help="torch threads for SAC training")
    p.add_argument("--steps", type=int, default=100_000, help="random policy: environment steps (= rows)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, help="random policy: output .hdf5 (default: <local dir>/<env>-random.hdf5)")
    p.add_argument("--local-dir", type=Path, help="local datasets (default: $BENCH_LOCAL_DATASET_DIR)")
    p.add_argument("--overwrite", action="store_true", help="replace existing dataset files")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_datasets_generate)

    nets = sub.add_parser("nets", help="inspect network architectures")
    nsub = nets.add_subparsers(dest="nets_command", required=True)
    p = nsub.add_parser("describe", help="layer table and parameter counts of an architecture")
    p.add_argument("arch", help="architecture name (built-ins: bench/nets/architectures.yaml)")
    p.add_argument("--env", default="walker2d", help="hopper, walker2d or halfcheetah (sets the sizes)")
    p.add_argument("--arch-file", type=Path, help="YAML file of extra architectures")
    p.set_defaults(func=_nets_describe)

    p = sub.add_parser("run", help="train one (dataset, architecture, seed) cell and write its record")
    p.add_argument("--dataset", required=True, help="d4rl:hopper-medium-v2, local:hopper-medium, minari:...")
    p.add_argument("--arch", required=True, help="architecture name (python -m bench nets describe NAME)")
    p.add_argument("--arch-file", type=Path, help="YAML file of extra architectures")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=1_000_000, help="gradient steps (a multiple of --epoch-steps)")
    p.add_argument("--epoch-steps", type=int, default=1_000, help="gradient steps per epoch (tables use 1,000)")
    p.add_argument("--eval-every", type=int, default=5_000, help="gradient steps between evaluations")
    p.add_argument("--eval-episodes", type=int, default=10)
    p.add_argument("--checkpoint-every", type=int, default=10, help="epochs between checkpoints")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda or cuda:N")
    p.add_argument("--normalize-reward", action="store_true", help="CORL's reward range normalization")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="CQL setting, e.g. cql_alpha=5")
    p.add_argument("--out", type=Path, required=True, help="record path (JSON); checkpoints go beside it")
    p.add_argument("--force", action="store_true", help="overwrite a finished record, discard a checkpoint")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--cache-dir", type=Path, help="D4RL cache folder")
    p.add_argument("--local-dir", type=Path, help="local datasets folder")
    p.set_defaults(func=_run)

    grid = sub.add_parser("grid", help="run a grid file (configs/*.yaml) of architectures x datasets x seeds")
    gsub = grid.add_subparsers(dest="grid_command", required=True)
    p = gsub.add_parser("run", help="run every unfinished cell, skipping finished ones; records in results/<grid>/")
    p.add_argument("file", type=Path, metavar="FILE", help="grid file, e.g. configs/smoke.yaml")
    p.add_argument("--launcher", choices=["local", "ray"], default="local", help="worker processes here, or Ray")
    p.add_argument("--workers", type=int, help="cells at once (default: local 1, ray as many as the resources fit)")
    p.add_argument("--ray-address", help="existing Ray cluster (default: $RAY_ADDRESS, else a local Ray)")
    p.add_argument("--dry-run", action="store_true", help="print the cells and what would run, then exit")
    p.add_argument("--force", action="store_true", help="retrain every cell, finished ones included")
    p.add_argument("--results", type=Path, default=Path("results"), help="records go to DIR/<grid name>/")
    p.add_argument("--cache-dir", type=Path, help="D4RL cache folder")
    p.add_argument("--local-dir", type=Path, help="local datasets folder")
    p.add_argument("--no-progress", action="store_true", help="no per-cell progress bar (shown with 1 local worker)")
    p.set_defaults(func=_grid)
    p = gsub.add_parser("status", help="done / diverged / failed / running / missing per cell, and totals")
    p.add_argument("file", type=Path, metavar="FILE", help="grid file")
    p.add_argument("--results", type=Path, default=Path("results"), help="records are in DIR/<grid name>/")
    p.set_defaults(func=_grid)
    p = gsub.add_parser("check", help="fail fast, naming every dataset of the grid that is not on this machine")
    p.add_argument("file", type=Path, metavar="FILE", help="grid file")
    p.add_argument("--cache-dir", type=Path, help="D4RL cache folder")
    p.add_argument("--local-dir", type=Path, help="local datasets folder")
    p.set_defaults(func=_grid)

    speed = sub.add_parser("speed", help="speed benchmarks (ratios against a baseline in the same run)")
    ssub = speed.add_subparsers(dest="speed_command", required=True)
    p = ssub.add_parser("nets", help="forward+backward time of KAN layers and networks against MLPs")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--repeats", type=int, default=50)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.set_defaults(func=_speed_nets)

    p = sub.add_parser("report", help="Tables 1-3 (LaTeX, Markdown) and figures with rliable statistics from records")
    p.add_argument("results", type=Path, help="folder of run records, e.g. results/smoke (searched recursively)")
    p.add_argument("--tables", type=Path, help="output folder of the tables (default: tables/<results folder name>)")
    p.add_argument("--figures", type=Path, help="output folder of the figures (default: figures/<results folder name>)")
    p.add_argument("--only", choices=["tables", "figures"], help="write only the tables or only the figures")
    p.add_argument("--baseline", help="architecture the others are compared with (default: mlp)")
    p.add_argument("--reps", type=int, default=2000, help="bootstrap resamples for the 95%% CIs")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (same seed, same CIs)")
    p.add_argument(
        "--allow-mixed", action="store_true", help="report records of different configurations together anyway"
    )
    p.set_defaults(func=_report)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130

"""`python -m bench ...`: the suite's subcommands.

Each subcommand parses its flags here and calls one function of the package; a `BenchError` (bad input, a
missing file, an unreachable server) becomes one line on stderr and exit code 2, never a traceback. Output
into a pipe whose reader has gone (`... | head`) ends the command quietly with 141, as SIGPIPE would.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import os
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from bench.errors import BenchError, did_you_mean

if TYPE_CHECKING:
    from bench.report.records import NamedReport


def _datasets_list(args: argparse.Namespace) -> int:
    from bench.data.commands import format_dataset_table

    print(format_dataset_table(cache_dir=args.cache_dir, local_dir=args.local_dir))
    return 0


def _datasets_fetch(args: argparse.Namespace) -> int:
    from bench.data.download import fetch_command, fetch_dataset
    from bench.data.registry import D4RL_DATASETS

    if args.all == bool(args.names):
        raise BenchError("datasets fetch: name one or more datasets, or pass --all (not both)")
    if args.sha256 is not None and (args.all or len(args.names) != 1):
        raise BenchError("datasets fetch: --sha256 checks one file, so name exactly one dataset")
    names = list(D4RL_DATASETS) if args.all else args.names
    # Every option but --force, which would discard the partial download the command is meant to resume.
    resume = fetch_command(
        args.names, all_datasets=args.all, cache_dir=args.cache_dir, base_url=args.base_url, sha256=args.sha256
    )
    for name in names:
        path = fetch_dataset(
            name,
            cache_dir=args.cache_dir,
            base_url=args.base_url,
            force=args.force,
            sha256=args.sha256,
            resume_command=resume,
        )
        print(f"{name}: {path}")
    return 0


def _datasets_verify(args: argparse.Namespace) -> int:
    from bench.data.download import verify_datasets

    results = verify_datasets(args.names or None, cache_dir=args.cache_dir, sha256=args.sha256)
    for result in results:
        print(result.line())
    failed = [result.name for result in results if not result.ok]
    if failed:
        raise BenchError(
            f"datasets verify: {len(failed)} of {len(results)} files do not match ({', '.join(failed)}); "
            f"the lines above say why. Fetch a damaged file again with `python -m bench datasets fetch NAME --force`"
        )
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
    from bench.suite.recipe import (
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
            f"{args.env}: expert return {info['expert']['return_mean']:.1f} (step {info['expert']['step']:,}), "
            f"medium return {info['medium']['return_mean']:.1f} (step {info['medium']['step']:,}, "
            f"{100 * ratio:.0f}% of expert{band}); "
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
            recipe=args.recipe,
        )
        for path in paths:
            print(f"wrote {path} (local data, not D4RL, recipe {args.recipe})")
    return 0


def _nets_describe(args: argparse.Namespace) -> int:
    from bench.nets.describe import describe_architecture

    print(describe_architecture(args.arch, env=args.env, arch_file=args.arch_file))
    return 0


def _speed_nets(args: argparse.Namespace) -> int:
    from bench.nets.speed import run_speed_benchmark

    print(run_speed_benchmark(batch_size=args.batch_size, repeats=args.repeats, threads=args.threads))
    return 0


def _speed_cql(args: argparse.Namespace) -> int:
    from bench.speed import run_cql_speed

    print(
        run_cql_speed(
            sizes=tuple(args.sizes.split(",")),
            seeds=tuple(_parse_seeds(args.seeds)),
            modes=tuple(args.modes.split(",")),
            rounds=args.rounds,
            seconds=args.seconds,
            threads=args.threads,
            peers=not args.no_peers,
            device=args.device,
        )
    )
    return 0


def _run(args: argparse.Namespace) -> int:
    import torch

    from bench.agents.registry import get_algorithm
    from bench.train import RunConfig, apply_overrides, cpu_load_hint, train_group

    seeds = _parse_seeds(args.seeds) if args.seeds else [args.seed]
    algorithm = get_algorithm(args.algo)
    config = RunConfig(
        dataset=args.dataset,
        arch=args.arch,
        seed=seeds[0],
        steps=args.steps,
        epoch_steps=args.epoch_steps,
        eval_every=args.eval_every,
        eval_episodes=args.eval_episodes,
        checkpoint_every=args.checkpoint_every,
        device=args.device,
        normalize_reward=args.normalize_reward,
        compile=args.compile,
        arch_file=str(args.arch_file) if args.arch_file else None,
        algo=algorithm.name,
        **{algorithm.name: apply_overrides(algorithm.config(), args.set)},
    )
    # With --seeds, --out is a folder of seed<k>.json records, as a grid lays them out.
    outs = [args.out / f"seed{seed}.json" for seed in seeds] if args.seeds else [args.out]
    if args.seeds and args.out.exists() and not args.out.is_dir():
        raise BenchError(f"--out {args.out} is a file; with --seeds it names the folder of the seed<k>.json records")
    if not args.seeds and args.out.is_dir():
        example = args.out / f"seed{seeds[0]}.json"
        raise BenchError(f"--out {args.out} is a folder; name the record's file (--out {example})")
    config.validate()  # a refused configuration is one error line, without the load note below
    if args.threads is not None and args.threads < 1:
        raise BenchError(f"--threads must be at least 1, got {args.threads}")
    threads = torch.get_num_threads()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    elif args.device == "cpu" or (args.device == "auto" and not torch.cuda.is_available()):
        hint = cpu_load_hint()
        if hint:
            print(hint, file=sys.stderr)
    try:
        records = train_group(
            config,
            seeds,
            outs,
            force=args.force,
            progress=not args.no_progress,
            cache_dir=args.cache_dir,
            local_dir=args.local_dir,
            keep_final_state=args.keep_final_state,
            extend_from=args.extend_from,
        )
    finally:
        torch.set_num_threads(threads)
    for record, out in zip(records, outs, strict=True):
        # The median epoch, as Table 3: a compiled run's first epoch also holds the compilation.
        seconds = record["seconds_per_epoch"]
        steps_per_second = record["epoch_steps"] / statistics.median(seconds) if seconds else float("nan")
        score = record["final_score"]
        side_by_side = f" ({len(seeds)} seeds side by side)" if len(seeds) > 1 else ""
        print(
            f"{record['status']}: {algorithm.label} {config.arch} on {config.dataset} seed {record['cell']['seed']}, "
            f"final score {score if score is None else f'{score:.1f}'}, "
            f"{steps_per_second:.1f} gradient steps/s{side_by_side} on {record['device']['name']}; record: {out}"
        )
    return 0 if all(record["status"] == "done" for record in records) else 3


def _parse_seeds(text: str) -> list[int]:
    """'0,1,2' or '0-4' (inclusive) -> distinct seeds in the order given."""
    seeds: list[int] = []
    for part in text.split(","):
        first, dash, last = part.strip().partition("-")
        if not first.isdigit() or (dash and not last.isdigit()):
            raise BenchError(f"--seeds {text!r}: give seeds as 0,1,2 or a range 0-4")
        seeds.extend(range(int(first), int(last) + 1) if dash else [int(first)])
    if len(set(seeds)) != len(seeds) or not seeds:
        raise BenchError(f"--seeds {text!r}: each seed once")
    return seeds


def _grid(args: argparse.Namespace) -> int:
    from bench.grid.run import plan_table, require_datasets, run_grid, status_table
    from bench.grid.spec import load_grid
    from bench.grid.store import ResultsStore

    spec = load_grid(args.file)
    selection = {
        "architectures": _names(getattr(args, "architectures", None)),
        "datasets": _names(getattr(args, "datasets", None)),
        "first": _names(getattr(args, "first", None)),
    }
    if args.grid_command == "check":
        require_datasets(spec, args.cache_dir, args.local_dir)
        print(f"grid {spec.name}: all {len(spec.datasets)} datasets are here")
        return 0
    if args.grid_command == "estimate":
        from bench.grid.estimate import estimate_grid

        results = None if args.all else args.results
        print(estimate_grid(spec, results=results, workers=args.workers, seconds=args.seconds, **selection))
        return 0
    store = ResultsStore.for_grid(args.results, spec)
    if args.grid_command == "adopt":
        from bench.grid.adopt import adopt_records, adoption_summary

        store.check_grid(spec)
        if not args.dry_run:
            store.write_grid(spec)
        adoptions = adopt_records(
            spec,
            store,
            args.source,
            cache_dir=args.cache_dir,
            local_dir=args.local_dir,
            dry_run=args.dry_run,
            architectures=selection["architectures"],
            datasets=selection["datasets"],
        )
        print(adoption_summary(spec, args.source, adoptions, args.dry_run))
        return 0
    if args.grid_command == "status":
        print(status_table(spec, store, summary=args.summary))
        return 0
    if args.dry_run:
        plan = plan_table(
            spec,
            store,
            **selection,
            seeds_per_process=args.seeds_per_process,
            force=args.force,
            cache_dir=args.cache_dir,
            local_dir=args.local_dir,
        )
        print(plan)
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
        seeds_per_process=args.seeds_per_process,
        **selection,
    )
    return result.exit_code


def _names(text: str | None) -> tuple[str, ...]:
    """A comma-separated list of names from the command line; () for none."""
    return tuple(name.strip() for name in (text or "").split(",") if name.strip())


def _report(args: argparse.Namespace) -> int:
    from bench.report.build import NoRecordsSelected, build_report, named_reports, report_folder

    jobs = _report_jobs(args, named_reports(args.results))
    for name, report in jobs:
        folder = report_folder(name, args.at_step, args.last_evaluations)
        tables = None if args.only == "figures" else args.tables or Path("tables") / folder
        figures = None if args.only == "tables" else args.figures or Path("figures") / folder
        try:
            for other in report.also:
                if not other.is_dir():
                    raise NoRecordsSelected(
                        f"grid {other.name}'s records, which report {name!r} sets beside these (with: in "
                        f"{args.results}/grid.yaml), are not here ({other} does not exist): run that grid first, or "
                        "copy its records there"
                    )
            summary = build_report(
                args.results,
                tables,
                figures,
                also=[*report.also, *args.also],
                baseline=args.baseline or report.baseline,
                reps=args.reps,
                seed=args.seed,
                allow_mixed=args.allow_mixed,
                architectures=report.architectures,
                datasets=report.datasets,
                at_step=args.at_step,
                last_evaluations=args.last_evaluations,
            )
        except NoRecordsSelected as error:
            if len(jobs) == 1:
                raise
            # One of several named reports of a grid still training (or beside a grid not run here): the others
            # are written.
            print(f"report {name} skipped: {error}", file=sys.stderr)
            continue
        if len(jobs) > 1 or name != args.results.resolve().name:
            # A grid file's named reports: say which one each summary is (after it is built, so a skipped one
            # leaves no header without a summary).
            print(f"report {name} ({', '.join(report.architectures)}):")
        print(summary.format())
    return 0


def _report_jobs(args: argparse.Namespace, reports: dict[str, NamedReport]) -> list[tuple[str, NamedReport]]:
    """(output name, report) of each report to build: --architectures and/or --datasets, or --report NAME of the
    grid file's reports, or every one of them, or one report of all the records under the results folder's name."""
    from bench.report.records import NamedReport

    whole = NamedReport(_names(args.architectures), None, _names(args.datasets))
    grid = args.results.resolve().name
    for option in ("architectures", "datasets"):
        if args.report and getattr(args, option):
            raise BenchError(f"--report and --{option} both pick the {option}; pass one of them")
    if args.also:
        if args.report:
            raise BenchError(
                "--report picks one of the grid file's reports of one folder; with --with pick the "
                "architectures and datasets with --architectures and --datasets instead"
            )
        unnamed = [
            f"--{kind}" for kind in ("tables", "figures") if args.only in (None, kind) and not getattr(args, kind)
        ]
        if unnamed:
            raise BenchError(
                f"--with sets other records beside {args.results}'s: name the output with {' and '.join(unnamed)} "
                f"(e.g. {unnamed[0]} {unnamed[0][2:]}/<name>), so the report does not write over {grid}'s own"
            )
        return [(grid, whole)]
    if args.report:
        if args.report not in reports:
            known = f"its reports: {', '.join(reports)}" if reports else "it names no reports"
            raise BenchError(
                f"--report {args.report!r}: the grid file {args.results / 'grid.yaml'} has no such report; "
                f"{did_you_mean(args.report, reports)}{known}"
            )
        chosen = {args.report: reports[args.report]}
    elif args.architectures or args.datasets or not reports:
        return [(grid, whole)]
    else:
        chosen = reports
        if len(chosen) > 1 and (args.tables or args.figures):
            raise BenchError(
                f"{args.results / 'grid.yaml'} names {len(chosen)} reports ({', '.join(chosen)}), each with its "
                "own folders; pick one with --report NAME to write it to --tables/--figures"
            )
    return list(chosen.items())


def _actions(args: argparse.Namespace) -> int:
    from bench.actions import actions_grid

    summary = actions_grid(
        args.results,
        args.tables or Path("tables") / args.results.resolve().name,
        architectures=_names(args.architectures),
        datasets=_names(args.datasets),
        cache_dir=args.cache_dir,
        local_dir=args.local_dir,
        recompute=args.recompute,
    )
    print(summary.format())
    return 0


def _coverage(args: argparse.Namespace) -> int:
    from bench.coverage import coverage_grid

    summary = coverage_grid(
        args.results,
        args.tables or Path("tables") / args.results.resolve().name,
        architectures=_names(args.architectures),
        datasets=_names(args.datasets),
        figures_dir=args.figures or Path("figures") / args.results.resolve().name,
        episodes=args.episodes,
        reference_episodes=args.reference_episodes,
        cache_dir=args.cache_dir,
        local_dir=args.local_dir,
        recompute=args.recompute,
    )
    print(summary.format())
    return 0


def _critics(args: argparse.Namespace) -> int:
    from bench.critics import critics_grid

    summary = critics_grid(
        args.results,
        args.tables or Path("tables") / args.results.resolve().name,
        architectures=_names(args.architectures),
        datasets=_names(args.datasets),
        figures_dir=args.figures or Path("figures") / args.results.resolve().name,
        episodes=args.episodes,
        cache_dir=args.cache_dir,
        local_dir=args.local_dir,
        recompute=args.recompute,
    )
    print(summary.format())
    return 0


def _compare(args: argparse.Namespace) -> int:
    from bench.compare import compare_results

    summary = compare_results(args.first, args.second, at_step=args.at_step)
    print(summary.format())
    return 0 if summary.same else 1


def _deploy(args: argparse.Namespace) -> int:
    from bench.deploy import deploy_grid

    tables = args.tables or Path("tables") / args.results.resolve().name
    summary = deploy_grid(
        args.results,
        tables,
        calls=args.calls,
        warmup=args.warmup,
        onnx_dir=args.onnx_dir,
        cache_dir=args.cache_dir,
        local_dir=args.local_dir,
        recompute=args.recompute,
    )
    print(summary.format())
    return 0


def _explain(args: argparse.Namespace) -> int:
    from bench.explain import explain_record

    explanation = explain_record(
        args.record,
        out_dir=args.out,
        compare=args.compare,
        cache_dir=args.cache_dir,
        local_dir=args.local_dir,
        max_states=args.max_states,
    )
    print(explanation.format())
    return 0


class _Parser(argparse.ArgumentParser):
    """Reports an unknown argument with the usage of the subcommand it was given to, and the nearest flag."""

    def parse_known_args(
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        namespace, extras = super().parse_known_args(args, namespace)
        # Only a parser without subcommands knows every flag that may follow; parents pass extras down.
        if extras and self._subparsers is None:
            flags = [option for option in self._option_string_actions if option.startswith("--")]
            close = [
                match
                for extra in extras
                if extra.startswith("-")
                for match in difflib.get_close_matches(extra.split("=", 1)[0], flags, n=1)
            ]
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            self.error(f"unrecognized arguments: {' '.join(extras)}{hint}")
        return namespace, extras


def _architecture_list() -> str:
    """The built-in architectures for `nets describe --help`, read as YAML: importing bench.nets loads torch."""
    import yaml

    path = Path(__file__).with_name("nets") / "architectures.yaml"
    try:
        entries = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        entries = None
    if not isinstance(entries, dict):
        return f"built-in architectures: {path}"
    width = max(map(len, entries))
    lines = ["built-in architectures (actor / critic hidden layers; bench/nets/architectures.yaml):"]
    for name, entry in entries.items():
        parts = entry if isinstance(entry, dict) else {}
        lines.append(f"  {name:<{width}}  {parts.get('actor', '?')} / {parts.get('critic', '?')}")
    return "\n".join(lines)


LOCAL_DIR_HELP = "local datasets folder (default: $BENCH_LOCAL_DATASET_DIR, else .cache/local-data)"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m bench", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    datasets = sub.add_parser("datasets", help="list, fetch and validate datasets")
    dsub = datasets.add_subparsers(dest="datasets_command", required=True)
    p = dsub.add_parser("list", help="every known dataset, its environment and whether it is cached")
    p.add_argument("--cache-dir", type=Path, help="D4RL cache (default: $D4RL_DATASET_DIR or ~/.d4rl/datasets)")
    p.add_argument("--local-dir", type=Path, help=LOCAL_DIR_HELP)
    p.set_defaults(func=_datasets_list)
    p = dsub.add_parser("fetch", help="download D4RL v2 files into the cache, resuming and validating")
    p.add_argument("names", nargs="*", metavar="NAME", help="e.g. hopper-medium-v2")
    p.add_argument("--all", action="store_true", help="all nine D4RL v2 MuJoCo datasets")
    p.add_argument("--cache-dir", type=Path, help="default: $D4RL_DATASET_DIR or ~/.d4rl/datasets")
    p.add_argument(
        "--base-url",
        help="mirror URL or local folder holding the .hdf5 files (default: $D4RL_BASE_URL or the D4RL server)",
    )
    p.add_argument(
        "--force", action="store_true", help="download again even if a valid file is cached; discards a .part"
    )
    p.add_argument("--sha256", metavar="HEX", help="refuse the file unless its SHA-256 is this (one dataset)")
    p.set_defaults(func=_datasets_fetch)
    p = dsub.add_parser(
        "verify", help="recompute the SHA-256 of cached D4RL files and compare it with the one recorded at fetch"
    )
    p.add_argument("names", nargs="*", metavar="NAME", help="default: every cached D4RL file")
    p.add_argument("--cache-dir", type=Path, help="default: $D4RL_DATASET_DIR or ~/.d4rl/datasets")
    p.add_argument("--sha256", metavar="HEX", help="also compare with this value, e.g. another machine's (one NAME)")
    p.set_defaults(func=_datasets_verify)

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
    p.add_argument(
        "--sac-steps",
        type=int,
        help="SAC environment steps (default: per environment); a stopped run resumes to the new budget",
    )
    p.add_argument("--dataset-steps", type=int, default=200_000, help="rows of the medium and of the expert stream")
    p.add_argument(
        "--recipe",
        type=int,
        choices=[1, 2],
        default=2,
        help="2: the policies act in float64, the same files on any x86 CPU (default); 1: float32, as the CPU "
        "study's data, byte-identical only on CPUs with the same matmul kernels as the machine that made it",
    )
    p.add_argument("--threads", type=int, default=1, help="torch threads for SAC training")
    p.add_argument("--steps", type=int, default=100_000, help="random policy: environment steps (= rows)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, help="random policy: output .hdf5 (default: <local dir>/<env>-random.hdf5)")
    p.add_argument("--local-dir", type=Path, help=LOCAL_DIR_HELP)
    p.add_argument("--overwrite", action="store_true", help="replace existing dataset files")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_datasets_generate)

    nets = sub.add_parser("nets", help="inspect network architectures")
    nsub = nets.add_subparsers(dest="nets_command", required=True)
    p = nsub.add_parser(
        "describe",
        help="layer table and parameter counts of an architecture",
        epilog=_architecture_list(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("arch", help="architecture name: a built-in one (below) or one from --arch-file")
    p.add_argument("--env", help="hopper, walker2d or halfcheetah: sets the sizes (default: walker2d)")
    p.add_argument("--arch-file", type=Path, help="YAML file of extra architectures")
    p.set_defaults(func=_nets_describe)

    p = sub.add_parser("run", help="train one (dataset, architecture, seed) cell and write its record")
    p.add_argument("--dataset", required=True, help="d4rl:hopper-medium-v2, local:hopper-medium, minari:...")
    p.add_argument("--arch", required=True, help="architecture name (python -m bench nets describe NAME)")
    p.add_argument("--arch-file", type=Path, help="YAML file of extra architectures")
    p.add_argument("--algo", default="cql", help="offline algorithm: cql (default), td3bc, iql or bc")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--seeds",
        metavar="LIST",
        help="train several seeds side by side in one process (0,1,2 or 0-4); --out is then a folder of seed<k>.json",
    )
    p.add_argument(
        "--compile", action="store_true", help="torch.compile the whole update (CUDA: CUDA graphs); compiles first"
    )
    p.add_argument("--steps", type=int, default=1_000_000, help="gradient steps (a multiple of --epoch-steps)")
    p.add_argument("--epoch-steps", type=int, default=1_000, help="gradient steps per epoch (tables use 1,000)")
    p.add_argument("--eval-every", type=int, default=5_000, help="gradient steps between evaluations")
    p.add_argument("--eval-episodes", type=int, default=10)
    p.add_argument("--checkpoint-every", type=int, default=10, help="epochs between checkpoints")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda or cuda:N")
    p.add_argument("--normalize-reward", action="store_true", help="CORL's reward range normalization")
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="setting of --algo, e.g. cql_alpha=5"
    )
    p.add_argument(
        "--out", type=Path, required=True, help="record path (JSON), a folder with --seeds; checkpoints go beside it"
    )
    p.add_argument("--force", action="store_true", help="overwrite a finished record, discard a checkpoint")
    p.add_argument(
        "--keep-final-state",
        action="store_true",
        help="leave the final state beside the records (<seeds>.final.pt), for a longer run to extend",
    )
    p.add_argument(
        "--extend-from",
        type=Path,
        metavar="FINAL_STATE",
        help="start from a shorter run's final state (same cell and seeds, fewer --steps) instead of step 0",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--threads", type=int, help="torch CPU threads (default: torch's choice); 1 is often faster on a busy machine"
    )
    p.add_argument("--cache-dir", type=Path, help="D4RL cache folder")
    p.add_argument("--local-dir", type=Path, help=LOCAL_DIR_HELP)
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
    p.add_argument("--local-dir", type=Path, help=LOCAL_DIR_HELP)
    p.add_argument("--no-progress", action="store_true", help="no per-cell progress bar (shown with 1 local worker)")
    p.add_argument(
        "--architectures", metavar="NAMES", help="run the cells of these of the grid's architectures only (a,b,...)"
    )
    p.add_argument("--datasets", metavar="NAMES", help="run the cells of these of the grid's datasets only (a,b,...)")
    p.add_argument("--first", metavar="NAMES", help="run the cells of these architectures before the others (a,b,...)")
    p.add_argument(
        "--seeds-per-process",
        type=int,
        metavar="N",
        help="train N seeds side by side per process this run instead of the grid file's seeds_per_process (e.g. "
        "to spread a last group over idle cores); records name their group, and other groups give other numbers",
    )
    p.set_defaults(func=_grid)
    p = gsub.add_parser("status", help="done / diverged / failed / running / partial / missing per cell, and totals")
    p.add_argument("file", type=Path, metavar="FILE", help="grid file")
    p.add_argument("--results", type=Path, default=Path("results"), help="records are in DIR/<grid name>/")
    p.add_argument(
        "--summary",
        action="store_true",
        help="one row per dataset and architecture (its seeds' states, least steps, mean ± std final score)",
    )
    p.set_defaults(func=_grid)
    p = gsub.add_parser(
        "estimate", help="time each process the grid will start, here and now, and add up the wall time it needs"
    )
    p.add_argument("file", type=Path, metavar="FILE", help="grid file")
    p.add_argument("--workers", type=int, default=1, help="processes at once, as `grid run --workers` (default 1)")
    p.add_argument("--seconds", type=float, default=5.0, help="seconds of updates timed per kind of process")
    p.add_argument(
        "--results", type=Path, default=Path("results"), help="finished cells in DIR/<grid name>/ are left out"
    )
    p.add_argument("--all", action="store_true", help="estimate every cell, finished ones included")
    p.add_argument("--architectures", metavar="NAMES", help="these of the grid's architectures only (a,b,...)")
    p.add_argument("--datasets", metavar="NAMES", help="these of the grid's datasets only (a,b,...)")
    p.add_argument("--first", metavar="NAMES", help="the cells of these architectures before the others (a,b,...)")
    p.set_defaults(func=_grid)
    p = gsub.add_parser(
        "adopt",
        help="copy the finished records of another grid that are the runs this grid's unfinished cells would make",
    )
    p.add_argument("file", type=Path, metavar="FILE", help="grid file")
    p.add_argument(
        "--from",
        dest="source",
        type=Path,
        required=True,
        metavar="DIR",
        help="another grid's results folder (results/<grid>); only records of the same configuration, "
        "architecture definition, seed group and data are adopted",
    )
    p.add_argument("--results", type=Path, default=Path("results"), help="records go to DIR/<grid name>/")
    p.add_argument("--dry-run", action="store_true", help="print what would be adopted, then exit")
    p.add_argument("--architectures", metavar="NAMES", help="these of the grid's architectures only (a,b,...)")
    p.add_argument("--datasets", metavar="NAMES", help="these of the grid's datasets only (a,b,...)")
    p.add_argument("--cache-dir", type=Path, help="D4RL cache folder")
    p.add_argument("--local-dir", type=Path, help=LOCAL_DIR_HELP)
    p.set_defaults(func=_grid)
    p = gsub.add_parser("check", help="fail fast, naming every dataset of the grid that is not on this machine")
    p.add_argument("file", type=Path, metavar="FILE", help="grid file")
    p.add_argument("--cache-dir", type=Path, help="D4RL cache folder")
    p.add_argument("--local-dir", type=Path, help=LOCAL_DIR_HELP)
    p.set_defaults(func=_grid)

    speed = sub.add_parser("speed", help="speed benchmarks (ratios against a baseline in the same run)")
    ssub = speed.add_subparsers(dest="speed_command", required=True)
    p = ssub.add_parser("nets", help="forward+backward time of KAN layers and networks against MLPs")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--repeats", type=int, default=50)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.set_defaults(func=_speed_nets)
    p = ssub.add_parser(
        "cql", help="CQL steps/s: one seed and seeds side by side, eager and compiled, against d3rlpy (A/B rounds)"
    )
    p.add_argument(
        "--sizes", default="corl,small", help="corl (3x256 actor and critics) and/or small (2x64); default %(default)s"
    )
    p.add_argument("--seeds", default="1,5", help="population sizes to time (seeds side by side); default %(default)s")
    p.add_argument(
        "--modes",
        default="eager,compiled",
        help="eager and/or compiled (torch.compile of the update); default %(default)s",
    )
    p.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="alternated rounds (default %(default)s); the table gives median and range",
    )
    p.add_argument("--seconds", type=float, default=5.0, help="seconds timed per row and round (default %(default)s)")
    p.add_argument(
        "--threads", type=int, default=None, help="torch threads, for the suite and d3rlpy alike (default: torch's)"
    )
    p.add_argument("--device", default="cpu", help="cpu (default), cuda[:N] or auto (CUDA when present)")
    p.add_argument("--no-peers", action="store_true", help="leave d3rlpy out (no `make bench-peers` needed)")
    p.set_defaults(func=_speed_cql)

    p = sub.add_parser(
        "report", help="Tables 1-3 and 6-8 (LaTeX, Markdown) and figures with rliable statistics from records"
    )
    p.add_argument("results", type=Path, help="folder of run records, e.g. results/smoke (searched recursively)")
    p.add_argument("--tables", type=Path, help="output folder of the tables (default: tables/<results folder name>)")
    p.add_argument("--figures", type=Path, help="output folder of the figures (default: figures/<results folder name>)")
    p.add_argument("--only", choices=["tables", "figures"], help="write only the tables or only the figures")
    p.add_argument(
        "--with",
        dest="also",
        type=Path,
        action="append",
        default=[],
        metavar="FOLDER",
        help="also report the records of this folder (another grid's cells beside these; repeatable); then name "
        "the output folders with --tables/--figures",
    )
    p.add_argument(
        "--baseline", help="architecture the others are compared with (default: the grid file's baseline, else mlp)"
    )
    p.add_argument("--reps", type=int, default=2000, help="bootstrap resamples for the 95%% CIs")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (same seed, same CIs)")
    p.add_argument(
        "--allow-mixed", action="store_true", help="report records of different configurations together anyway"
    )
    p.add_argument("--architectures", metavar="NAMES", help="report these architectures only, in this order (a,b,...)")
    p.add_argument(
        "--datasets", metavar="NAMES", help="report these datasets only, in this order (a,b,...: local:hopper-medium)"
    )
    p.add_argument(
        "--report",
        metavar="NAME",
        help="write only this one of the grid file's named reports (default: every one, each to tables/<report>/)",
    )
    p.add_argument(
        "--at-step",
        type=int,
        metavar="N",
        help="the runs as they stood at gradient step N, an evaluation step of every finished run (default: their "
        "end); written to tables/<name>-stepN/ and figures/<name>-stepN/ unless --tables/--figures say otherwise",
    )
    p.add_argument(
        "--last-evaluations",
        type=int,
        default=1,
        metavar="K",
        help="score each run by the mean of its last K evaluations (default 1: the final one, CORL's protocol; "
        "TD3+BC's averages the final 10); written to tables/<name>-lastK/ and figures/<name>-lastK/",
    )
    p.set_defaults(func=_report)

    p = sub.add_parser(
        "deploy", help="Table 4: actor size, int8 size, CPU latency and ONNX/int8 scores of every trained actor"
    )
    p.add_argument("results", type=Path, help="folder of run records with their actors, e.g. results/demo")
    p.add_argument("--tables", type=Path, help="output folder (default: tables/<results folder name>)")
    p.add_argument("--calls", type=int, default=1000, help="timed calls at batch 1 (batch 256: a fifth as many)")
    p.add_argument("--warmup", type=int, default=50, help="untimed calls before each timing")
    p.add_argument("--onnx-dir", type=Path, help="keep the exported .onnx files here (default: a temporary folder)")
    p.add_argument("--cache-dir", type=Path, help="D4RL cache folder")
    p.add_argument("--local-dir", type=Path, help=LOCAL_DIR_HELP)
    p.add_argument(
        "--recompute",
        action="store_true",
        help="deploy and time every actor again (default, without --onnx-dir: keep rows and latencies from the "
        "output folder's deployment.json while the actors, their data and the calls and warm-up are unchanged)",
    )
    p.set_defaults(func=_deploy)

    p = sub.add_parser(
        "actions", help="Table 5: how far every trained actor's actions are from its dataset's (MSE, R^2)"
    )
    p.add_argument("results", type=Path, help="folder of run records with their actors, e.g. results/cpu-study")
    p.add_argument("--tables", type=Path, help="output folder (default: tables/<results folder name>)")
    p.add_argument(
        "--architectures",
        metavar="NAMES",
        help="these architectures only, in this order (a,b,...), in the table; actions.json keeps the others' numbers",
    )
    p.add_argument(
        "--datasets",
        metavar="NAMES",
        help="these datasets only, as the grid names them (a,b,...), in the table; actions.json keeps the others'",
    )
    p.add_argument("--cache-dir", type=Path, help="D4RL cache folder")
    p.add_argument("--local-dir", type=Path, help=LOCAL_DIR_HELP)
    p.add_argument(
        "--recompute",
        action="store_true",
        help="compute every actor again (default: keep an actor's numbers from the output folder's actions.json "
        "while its actor file and data have the digests recorded there, without loading that data)",
    )
    p.set_defaults(func=_actions)

    p = sub.add_parser(
        "coverage",
        help="Table 9: where every trained actor's own episodes go against its dataset's states (off the data, "
        "upside down)",
    )
    p.add_argument("results", type=Path, help="folder of run records with their actors, e.g. results/cpu-study")
    p.add_argument("--tables", type=Path, help="output folder (default: tables/<results folder name>)")
    p.add_argument(
        "--architectures",
        metavar="NAMES",
        help="these architectures only, in this order (a,b,...), in the table; coverage.json keeps the others'",
    )
    p.add_argument(
        "--datasets",
        metavar="NAMES",
        help="these datasets only, as the grid names them (a,b,...), in the table; coverage.json keeps the others'",
    )
    p.add_argument(
        "--figures",
        type=Path,
        help="output folder of Figure 9, score against the share off the data (default: figures/<results folder name>)",
    )
    p.add_argument(
        "--episodes",
        type=int,
        metavar="N",
        help="episodes per actor, from its record's evaluation seed (default: as many as its evaluations ran)",
    )
    p.add_argument(
        "--reference-episodes",
        type=int,
        default=20,
        metavar="N",
        help="episodes of each dataset measured against its other episodes, for the off-the-data threshold "
        "(default: 20)",
    )
    p.add_argument("--cache-dir", type=Path, help="D4RL cache folder")
    p.add_argument("--local-dir", type=Path, help=LOCAL_DIR_HELP)
    p.add_argument(
        "--recompute",
        action="store_true",
        help="run every actor again (default: keep an actor's numbers from the output folder's coverage.json "
        "while its actor file, its data and its episodes are unchanged)",
    )
    p.set_defaults(func=_coverage)

    p = sub.add_parser(
        "critics",
        help="Table 10: what the critics of every trained actor whose group kept its final state expect on the "
        "actor's own episodes and on the data, against the returns that followed",
    )
    p.add_argument("results", type=Path, help="folder of run records with their actors and final states")
    p.add_argument("--tables", type=Path, help="output folder (default: tables/<results folder name>)")
    p.add_argument(
        "--architectures",
        metavar="NAMES",
        help="these architectures only, in this order (a,b,...), in the table; critics.json keeps the others'",
    )
    p.add_argument(
        "--datasets",
        metavar="NAMES",
        help="these datasets only, as the grid names them (a,b,...), in the table; critics.json keeps the others'",
    )
    p.add_argument(
        "--figures",
        type=Path,
        help="output folder of Figure 10, Q against the return (default: figures/<results folder name>)",
    )
    p.add_argument(
        "--episodes",
        type=int,
        metavar="N",
        help="episodes per actor, from its record's evaluation seed (default: as many as its evaluations ran)",
    )
    p.add_argument("--cache-dir", type=Path, help="D4RL cache folder")
    p.add_argument("--local-dir", type=Path, help=LOCAL_DIR_HELP)
    p.add_argument(
        "--recompute",
        action="store_true",
        help="measure every actor again (default: keep an actor's numbers from the output folder's critics.json "
        "while its actor file, final state, data and episodes are unchanged)",
    )
    p.set_defaults(func=_critics)

    p = sub.add_parser(
        "compare",
        help="do two folders of records hold the same runs with the same outcomes? (exit 0 if every shared cell "
        "is identical, 1 if not)",
    )
    p.add_argument("first", type=Path, metavar="A", help="a results folder (results/<grid>) or one record file")
    p.add_argument("second", type=Path, metavar="B", help="another, e.g. the same cells trained again")
    p.add_argument(
        "--at-step",
        type=int,
        metavar="N",
        help="compare the runs as they stood at gradient step N (an evaluation step of both), whatever their budgets",
    )
    p.set_defaults(func=_compare)

    p = sub.add_parser(
        "explain",
        help="a look inside a trained actor: KAN first-layer edges, feature attribution, symbolic fits, saliency",
    )
    p.add_argument("record", type=Path, help="a finished run record; its final actor (<record>.actor.pt) beside it")
    p.add_argument("--compare", type=Path, help="a second record on the same dataset (an MLP's) for its saliency")
    p.add_argument("--out", type=Path, help="output folder (default: figures/explain/<dataset>/<arch>/seed<k>)")
    p.add_argument("--max-states", type=int, default=50_000, help="dataset states used, a seeded sample if more")
    p.add_argument("--cache-dir", type=Path, help="D4RL cache folder")
    p.add_argument("--local-dir", type=Path, help=LOCAL_DIR_HELP)
    p.set_defaults(func=_explain)
    return parser


def _discard_stdout() -> None:
    """Point stdout at the null device, so that Python's flush at exit does not meet the broken pipe again."""
    # AttributeError, ValueError: stdout was replaced by an object without a file descriptor.
    with contextlib.suppress(AttributeError, OSError, ValueError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code = args.func(args)
        sys.stdout.flush()  # here rather than at exit, so a reader that has gone is caught below
        return code
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        _discard_stdout()
        return 141  # 128 + SIGPIPE, the shell's code for a writer whose reader left

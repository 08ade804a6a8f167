"""`python -m bench datasets list`: the known datasets, where they are cached and what is there.

The listing reads no data: file sizes, HDF5 shapes and attributes, and the SHA-256 recorded at fetch time
(`python -m bench datasets verify` recomputes it).
"""

from __future__ import annotations

import os
from pathlib import Path

from tabulate import tabulate

from bench.data.download import recorded_sha256
from bench.data.hdf5 import read_attrs, read_shapes
from bench.data.registry import D4RL_DATASETS, ENVS, d4rl_cache_dir, local_dataset_dir
from bench.errors import BenchError


def _human_size(n_bytes: int) -> str:
    size = float(n_bytes)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def _where(argument: Path | None, variable: str) -> str:
    if argument is not None:
        return "from the command line"
    if os.environ.get(variable, "").strip():
        return f"from ${variable}"
    return "default"


def _recorded(path: Path) -> str:
    """The SHA-256 recorded when `path` was fetched, as the listing shows it (no hashing here)."""
    if not path.is_file():
        return ""
    try:
        digest = recorded_sha256(path)
    except BenchError:
        return "unreadable .sha256 record"
    return digest or "not recorded"


def _d4rl_rows(cache: Path) -> list[list[str]]:
    rows = []
    for spec in D4RL_DATASETS.values():
        path = cache / spec.filename
        cached = _human_size(path.stat().st_size) if path.is_file() else "no"
        if not path.is_file() and path.with_name(path.name + ".part").is_file():
            cached = "partial (.part)"
        rows.append(
            [
                spec.name,
                spec.env.env_id,
                str(spec.env.obs_dim),
                str(spec.env.act_dim),
                repr(spec.env.ref_min_score),
                repr(spec.env.ref_max_score),
                f"{spec.nominal_size:,}",
                cached,
                _recorded(path),
            ]
        )
    return rows


def _local_row(path: Path) -> list[str]:
    """One local file's row, from its attributes and dataset shapes only (no data is read)."""
    size = _human_size(path.stat().st_size)
    try:
        shapes = read_shapes(path)
        attrs = read_attrs(path)
    except BenchError:
        return [f"local:{path.stem}", "local", "?", "?", "?", "?", "unreadable: corrupt or incomplete", size]
    env_name = str(attrs.get("env") or path.stem.split("-", 1)[0])
    env = ENVS.get(env_name)
    obs = shapes.get("observations", ())
    acts = shapes.get("actions", ())
    return [
        f"local:{path.stem}",
        "local",
        str(attrs.get("policy", "?")),
        env.env_id if env else f"{env_name} (unknown env)",
        str(obs[1]) if len(obs) == 2 else "?",
        str(acts[1]) if len(acts) == 2 else "?",
        f"{obs[0]:,}" if obs else "no observations",
        size,
    ]


def format_dataset_table(cache_dir: Path | None = None, local_dir: Path | None = None) -> str:
    """The nine D4RL datasets with their constants, cache state and recorded SHA-256, then the local datasets."""
    cache = d4rl_cache_dir(cache_dir)
    local = local_dataset_dir(local_dir)
    lines = [
        f"D4RL cache: {cache} ({_where(cache_dir, 'D4RL_DATASET_DIR')})",
        f"Local datasets: {local} ({_where(local_dir, 'BENCH_LOCAL_DATASET_DIR')})",
        "",
        "D4RL v2 MuJoCo datasets (source d4rl; scores normalized with the reference returns):",
        tabulate(
            _d4rl_rows(cache),
            headers=[
                "dataset",
                "env id",
                "obs",
                "act",
                "ref min return",
                "ref max return",
                "nominal size",
                "cached",
                "sha256 (recorded at fetch)",
            ],
            disable_numparse=True,
        ),
        "",
    ]
    local_files = sorted(local.glob("*.hdf5")) if local.is_dir() else []
    if local_files:
        lines.append("Local datasets (local data, not D4RL; scores use the D4RL reference returns):")
        lines.append(
            tabulate(
                [_local_row(path) for path in local_files],
                headers=["dataset", "source", "policy", "env id", "obs", "act", "transitions", "file size"],
                disable_numparse=True,
            )
        )
    else:
        lines.append(f"No local datasets (local data, not D4RL) in {local}.")
    return "\n".join(lines)

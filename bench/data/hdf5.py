"""Reading and writing D4RL-layout HDF5 files, validating them on the way in.

The layout (SPEC 3): per-step arrays `observations` (N x obs_dim), `actions` (N x act_dim), `rewards` (N),
`terminals` (N, bool), usually `timeouts` (N, bool) and `next_observations`, plus groups such as `infos/*`
and `metadata/*`. Every problem found while reading raises a BenchError naming the file and the key.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from bench.errors import BenchError
from bench.fileio import atomic_output

REQUIRED_KEYS = ("observations", "actions", "rewards", "terminals")
OPTIONAL_STEP_KEYS = ("timeouts", "next_observations")
STEP_KEYS = REQUIRED_KEYS + OPTIONAL_STEP_KEYS

_FLOAT_KEYS = ("observations", "actions", "rewards", "next_observations")
_BOOL_KEYS = ("terminals", "timeouts")
_VECTOR_KEYS = ("rewards", "terminals", "timeouts")

# The types h5py raises HDF5 library errors as (h5py/_errors.pyx); RuntimeError is its fallback, e.g.
# "Object visitation failed (bad heap free list)" when a resumed download appended garbage.
_HDF5_ERRORS = (OSError, RuntimeError, ValueError, KeyError, TypeError)


def _as_stored(key: str, array: np.ndarray) -> np.ndarray:
    """The dtype D4RL stores a key in: float32 for float arrays, bool for flags, as given otherwise."""
    if key in _FLOAT_KEYS:
        return np.ascontiguousarray(array, dtype=np.float32)
    if key in _BOOL_KEYS:
        return np.ascontiguousarray(array).astype(bool)
    return np.ascontiguousarray(array)


def write_d4rl_hdf5(
    path: Path,
    arrays: Mapping[str, np.ndarray],
    attrs: Mapping[str, str | int | float] | None = None,
) -> None:
    """Write `arrays` in the D4RL layout to `path`, atomically and with the same bytes for the same input.

    Keys containing "/" (e.g. "infos/qpos") become groups. `attrs` become root attributes. Dataset
    timestamps are off (track_times=False) so that regenerating a file gives a byte-identical file.
    """
    with atomic_output(path) as tmp, h5py.File(tmp, "w") as f:
        for key, value in (attrs or {}).items():
            f.attrs[key] = value
        for key, array in arrays.items():
            f.create_dataset(key, data=_as_stored(key, np.asarray(array)), track_times=False)


def _corrupt(path: Path, detail: object) -> BenchError:
    one_line = " ".join(str(detail).split())
    return BenchError(
        f"{path}: cannot read the HDF5 file, it is corrupt or incomplete ({one_line}); "
        f"delete it and fetch or generate it again"
    )


@contextlib.contextmanager
def _reading(path: Path) -> Iterator[h5py.File]:
    """`path` open for reading; an HDF5 error anywhere in the block becomes a BenchError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise BenchError(f"{path}: no such dataset file")
    try:
        with h5py.File(path, "r") as f:
            yield f
    except _HDF5_ERRORS as exc:
        raise _corrupt(path, exc) from exc


def validate_d4rl_arrays(
    arrays: Mapping[str, np.ndarray],
    *,
    source: str,
    expected_obs_dim: int | None = None,
    expected_act_dim: int | None = None,
) -> dict[str, np.ndarray]:
    """Check D4RL-layout arrays and return them in D4RL dtypes; `source` (a path or id) heads every message.

    Checks: required keys present, 2-D observations/actions and 1-D rewards/flags, equal lengths along
    axis 0, finite float values, and the observation/action sizes when expected ones are given.
    """
    missing = [key for key in REQUIRED_KEYS if key not in arrays]
    if missing:
        raise BenchError(
            f"{source}: missing required key(s) {', '.join(missing)} "
            f"(found: {', '.join(sorted(arrays)) or 'none'}); a D4RL file needs {', '.join(REQUIRED_KEYS)}"
        )
    out: dict[str, np.ndarray] = {}
    for key, value in arrays.items():
        array = np.asarray(value)
        if key in _VECTOR_KEYS and array.ndim == 2 and array.shape[1] == 1:
            array = array[:, 0]
        if key in _VECTOR_KEYS and array.ndim != 1:
            raise BenchError(f"{source}: key '{key}' must be 1-D, found shape {array.shape}")
        if key in ("observations", "actions", "next_observations") and array.ndim != 2:
            raise BenchError(f"{source}: key '{key}' must be 2-D (steps x size), found shape {array.shape}")
        out[key] = _as_stored(key, array) if key in STEP_KEYS else array

    n = len(out["observations"])
    for key in STEP_KEYS:
        if key in out and len(out[key]) != n:
            raise BenchError(
                f"{source}: key '{key}' has {len(out[key])} rows but 'observations' has {n}; "
                f"the per-step arrays must have equal lengths (the file is inconsistent)"
            )
    if n == 0:
        raise BenchError(f"{source}: the dataset is empty (0 steps in 'observations')")

    for key in _FLOAT_KEYS:
        if key in out:
            _check_finite(source, key, out[key])

    for key, expected, what in (
        ("observations", expected_obs_dim, "observation"),
        ("next_observations", expected_obs_dim, "observation"),
        ("actions", expected_act_dim, "action"),
    ):
        if expected is not None and key in out and out[key].shape[1] != expected:
            raise BenchError(
                f"{source}: key '{key}' has {what} size {out[key].shape[1]}, expected {expected} for this "
                f"dataset's environment; the file belongs to another environment or is wrong"
            )
    return out


def _check_finite(source: str, key: str, array: np.ndarray) -> None:
    rows = array.reshape(len(array), -1)
    finite_rows = np.isfinite(rows).all(axis=1)
    if not finite_rows.all():
        index = int(np.argmin(finite_rows))
        column = int(np.argmin(np.isfinite(rows[index])))
        where = f"index {index}" if array.ndim == 1 else f"index {index} (column {column})"
        raise BenchError(
            f"{source}: key '{key}' has a non-finite value {rows[index, column]} at {where}; "
            f"the file is damaged or was written from a diverged run"
        )


def read_d4rl_arrays(
    path: Path,
    *,
    expected_obs_dim: int | None = None,
    expected_act_dim: int | None = None,
    include_extra: bool = False,
) -> dict[str, np.ndarray]:
    """Read and validate the per-step arrays of a D4RL-layout file (see `validate_d4rl_arrays`).

    Only the per-step keys (`STEP_KEYS`) are read unless `include_extra`, which also returns every other
    dataset (e.g. "infos/qpos", "metadata/...") as stored. Missing `timeouts` is allowed here; the
    Q-learning view warns about it.
    """
    path = Path(path)
    with _reading(path) as f:
        names: list[str] = []
        f.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
        wanted = names if include_extra else [n for n in names if n in STEP_KEYS]
        arrays: dict[str, np.ndarray] = {}
        for name in wanted:
            try:
                arrays[name] = f[name][()]
            except _HDF5_ERRORS as exc:
                raise _corrupt(path, f"key '{name}': {exc}") from exc
    return validate_d4rl_arrays(
        arrays, source=str(path), expected_obs_dim=expected_obs_dim, expected_act_dim=expected_act_dim
    )


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def read_attrs(path: Path) -> dict[str, Any]:
    """The root attributes of an HDF5 file as plain Python values (str, int, float, lists)."""
    with _reading(path) as f:
        return {key: _plain(value) for key, value in f.attrs.items()}


def read_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """The shape of every dataset in the file, without reading any data (for listings)."""
    shapes: dict[str, tuple[int, ...]] = {}
    with _reading(path) as f:
        f.visititems(
            lambda name, obj: shapes.__setitem__(name, tuple(obj.shape)) if isinstance(obj, h5py.Dataset) else None
        )
    return shapes

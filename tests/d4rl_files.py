"""Small D4RL-layout arrays and HDF5 files, broken copies of them, and a loopback HTTP server for tests."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import h5py
import numpy as np

from bench.data.hdf5 import write_d4rl_hdf5
from bench.data.registry import get_env_spec


def _terminal_flags(episode_lengths: Sequence[int], terminal_episodes: AbstractSet[int] | Sequence[bool]) -> list[bool]:
    if isinstance(terminal_episodes, AbstractSet):
        return [i in terminal_episodes for i in range(len(episode_lengths))]
    flags = [bool(t) for t in terminal_episodes]
    if len(flags) != len(episode_lengths):
        raise ValueError(f"{len(flags)} terminal flags for {len(episode_lengths)} episodes")
    return flags


def make_d4rl_arrays(
    obs_dim: int,
    act_dim: int,
    episode_lengths: Sequence[int],
    terminal_episodes: AbstractSet[int] | Sequence[bool] = frozenset(),
    seed: int = 0,
    with_timeouts: bool = True,
) -> dict[str, np.ndarray]:
    """Episodes laid end to end as in a D4RL file.

    Episode e has `episode_lengths[e]` steps and ends by a terminal (terminals[last] = True) if it is in
    `terminal_episodes` (a set of episode indices, or one bool per episode), else by a time limit
    (timeouts[last] = True). next_observations holds each step's true successor, including the final
    observation of the episode, which the next row of `observations` does not hold.
    """
    flags = _terminal_flags(episode_lengths, terminal_episodes)
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {
        k: [] for k in ("observations", "actions", "rewards", "terminals", "timeouts", "next_observations")
    }
    for length, terminal in zip(episode_lengths, flags, strict=True):
        if length < 1:
            raise ValueError(f"episode length must be at least 1, got {length}")
        states = rng.normal(size=(length + 1, obs_dim)).astype(np.float32)
        end = np.zeros(length, dtype=bool)
        end[-1] = True
        parts["observations"].append(states[:-1])
        parts["next_observations"].append(states[1:])
        parts["actions"].append(rng.uniform(-1.0, 1.0, size=(length, act_dim)).astype(np.float32))
        parts["rewards"].append(rng.normal(1.0, 0.5, size=length).astype(np.float32))
        parts["terminals"].append(end if terminal else np.zeros(length, dtype=bool))
        parts["timeouts"].append(np.zeros(length, dtype=bool) if terminal else end)
    arrays = {key: np.concatenate(values) for key, values in parts.items()}
    if not with_timeouts:
        del arrays["timeouts"]
    return arrays


def write_small_d4rl_file(
    path: Path,
    env: str = "hopper",
    episode_lengths: Sequence[int] = (60, 45, 80, 35),
    terminal_episodes: AbstractSet[int] | Sequence[bool] = frozenset({1, 3}),
    seed: int = 0,
    with_timeouts: bool = True,
    attrs: Mapping[str, str | int | float] | None = None,
    arrays: Mapping[str, np.ndarray] | None = None,
) -> Path:
    """Write a small D4RL-layout file with `env`'s observation and action sizes and return its path.

    `arrays` replaces the generated arrays (to write a deliberately broken file); `attrs` defaults to
    {"env": env, "source": "test"}.
    """
    spec = get_env_spec(env)
    if arrays is None:
        arrays = make_d4rl_arrays(
            spec.obs_dim,
            spec.act_dim,
            episode_lengths,
            terminal_episodes,
            seed=seed,
            with_timeouts=with_timeouts,
        )
    path = Path(path)
    write_d4rl_hdf5(path, arrays, {"env": spec.name, "source": "test"} if attrs is None else attrs)
    return path


def corrupt_tail(data: bytes, keep: float = 0.4, seed: int = 0) -> bytes:
    """The first `keep` of `data`, then seeded random bytes up to the full length.

    What a download that dropped and then resumed onto garbage leaves: the right size, an intact
    superblock, broken object headers and heaps further in.
    """
    cut = int(len(data) * keep)
    return data[:cut] + np.random.default_rng(seed).bytes(len(data) - cut)


def flip_bytes_in_array(data: bytes, path: Path, key: str, n_bytes: int = 4096) -> bytes:
    """`data` (the bytes of the HDF5 file at `path`) with `n_bytes` inverted inside the array `key`.

    The array must be stored contiguously and be larger than `n_bytes`; its structure is untouched, so
    the file still opens and validates. Inverting every bit keeps normal float32 values finite.
    """
    with h5py.File(path, "r") as f:
        offset, size = f[key].id.get_offset(), f[key].id.get_storage_size()
    if offset is None or size <= n_bytes:
        raise ValueError(f"{path}: '{key}' is not a contiguous array of more than {n_bytes} bytes")
    start = offset + 4 * ((size - n_bytes) // 8)  # in the middle of the array, 4-byte aligned
    flipped = bytes(b ^ 0xFF for b in data[start : start + n_bytes])
    return data[:start] + flipped + data[start + n_bytes :]


@dataclass
class ServerState:
    """What the test server serves and how it misbehaves; every request's Range header is logged."""

    files: dict[str, bytes] = field(default_factory=dict)
    ranges: list[str | None] = field(default_factory=list)
    drop_after: int | None = None  # first request: send this many bytes, then close the connection
    stall_after: int | None = None  # first request: send this many bytes, then stall until released
    ignore_range: bool = False
    status: int | None = None  # answer every request with this error status
    release: threading.Event = field(default_factory=threading.Event)


def make_handler(state: ServerState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            range_header = self.headers.get("Range")
            state.ranges.append(range_header)
            first = len(state.ranges) == 1
            if state.status is not None:
                self.send_error(state.status)
                return
            data = state.files.get(self.path.rsplit("/", 1)[-1])
            if data is None:
                self.send_error(404)
                return
            start = 0
            if range_header and not state.ignore_range:
                start = int(range_header.removeprefix("bytes=").split("-")[0])
                if start >= len(data):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                self.send_response(200)
            body = data[start:]
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if first and state.drop_after is not None:
                self.wfile.write(body[: state.drop_after])
                self.wfile.flush()
                self.close_connection = True
                return
            if first and state.stall_after is not None:
                self.wfile.write(body[: state.stall_after])
                self.wfile.flush()
                state.release.wait(5)
                self.close_connection = True
                return
            self.wfile.write(body)

    return Handler


@contextlib.contextmanager
def http_server() -> Iterator[tuple[str, ServerState]]:
    """A loopback HTTP server with Range support; yields its base URL (ending in /d4rl) and its state."""
    state = ServerState()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(state))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/d4rl", state
    finally:
        state.release.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)

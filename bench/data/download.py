"""Fetching D4RL v2 files into the cache: resumable, validated before they take their final name.

The D4RL server has been down for days at a time (D4RL issue #244: HTTP 403 in March 2025), so the base URL
can point at a mirror (http/https), a local folder or a file:// URL, and every failure message says how to
put the file in place by hand.
"""

from __future__ import annotations

import contextlib
import fcntl
import http.client
import os
import shutil
import sys
import urllib.error
import urllib.parse
import urllib.request
import warnings
from collections.abc import Iterator
from pathlib import Path

from tqdm import tqdm

from bench.data.hdf5 import read_d4rl_arrays
from bench.data.registry import DEFAULT_D4RL_BASE_URL, DatasetSpec, d4rl_cache_dir, get_dataset_spec
from bench.errors import BenchError

DEFAULT_TIMEOUT = 60.0
_CHUNK = 1 << 20


def resolve_base_url(base_url: str | None = None) -> str:
    """The base URL to fetch from: the argument, else $D4RL_BASE_URL, else the D4RL server."""
    if base_url:
        return base_url
    return os.environ.get("D4RL_BASE_URL", "").strip() or DEFAULT_D4RL_BASE_URL


def _validate(path: Path, spec: DatasetSpec) -> None:
    read_d4rl_arrays(path, expected_obs_dim=spec.env.obs_dim, expected_act_dim=spec.env.act_dim)


def _by_hand(spec: DatasetSpec, url: str, target: Path) -> str:
    return (
        f"To put the file in place by hand, download {url} elsewhere and copy it to {target}, "
        f"or point --base-url / $D4RL_BASE_URL at a mirror URL or a folder holding {spec.filename}"
    )


def fetch_dataset(
    name: str,
    *,
    cache_dir: Path | None = None,
    base_url: str | None = None,
    force: bool = False,
    progress: bool = True,
    timeout: float = DEFAULT_TIMEOUT,
) -> Path:
    """Put the D4RL file `name` in the cache and return its path.

    A cached file that validates is returned as is unless `force`; one that does not is moved aside to
    `<file>.invalid` and fetched again. The base URL is `base_url`, else $D4RL_BASE_URL, else the D4RL
    server; a local folder or file:// URL is copied from, http(s) is downloaded to `<file>.part` (resumed
    with a Range request on the next call after an interruption). The result is validated against the
    registry's sizes before it takes its final name; a file that fails is kept as `<file>.invalid`.
    """
    spec = get_dataset_spec(name)
    cache = d4rl_cache_dir(cache_dir)
    target = cache / spec.filename
    cache.mkdir(parents=True, exist_ok=True)
    with _exclusive(target.with_name(target.name + ".lock"), spec):
        return _fetch_locked(spec, target, base_url=base_url, force=force, progress=progress, timeout=timeout)


@contextlib.contextmanager
def _exclusive(lock_path: Path, spec: DatasetSpec) -> Iterator[None]:
    """One fetch per file at a time: two processes appending to one `.part` would corrupt it."""
    with open(lock_path, "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BenchError(
                f"another process is fetching {spec.name} into {lock_path.parent} (lock {lock_path} is held); "
                "wait for it to finish, then run the command again"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _fetch_locked(
    spec: DatasetSpec, target: Path, *, base_url: str | None, force: bool, progress: bool, timeout: float
) -> Path:
    if target.exists() and not force:
        try:
            _validate(target, spec)
            return target
        except BenchError as exc:
            aside = target.with_name(target.name + ".invalid")
            os.replace(target, aside)
            warnings.warn(f"cached file failed validation, moved to {aside}, fetching again: {exc}", stacklevel=2)

    base = resolve_base_url(base_url)
    part = target.with_name(target.name + ".part")
    scheme = urllib.parse.urlparse(base).scheme.lower()
    if scheme in ("http", "https"):
        url = spec.url(base)
        _download(url, part, spec, target, progress=progress, timeout=timeout)
    elif scheme == "file":
        url = spec.url(base)
        folder = Path(urllib.request.url2pathname(urllib.parse.urlparse(base).path))
        _copy_local(folder / spec.filename, part)
    elif len(scheme) <= 1:  # no scheme, or a Windows drive letter: a folder path
        url = str(Path(base).expanduser() / spec.filename)
        _copy_local(Path(base).expanduser() / spec.filename, part)
    else:
        raise BenchError(
            f"base URL {base!r} has scheme '{scheme}': use http(s)://, file:// or a local folder path "
            f"(--base-url or $D4RL_BASE_URL)"
        )

    try:
        _validate(part, spec)
    except BenchError as exc:
        invalid = target.with_name(target.name + ".invalid")
        os.replace(part, invalid)
        raise BenchError(
            f"the file fetched from {url} is not a valid {spec.name} file, so it was not placed in the "
            f"cache; it is kept as {invalid} for inspection (delete it when done). Reason: {exc}. "
            f"{_by_hand(spec, url, target)}"
        ) from exc
    os.replace(part, target)
    return target


def _copy_local(source: Path, part: Path) -> None:
    if not source.is_file():
        raise BenchError(
            f"{source} does not exist: the base folder must hold the D4RL file under its server name "
            f"({source.name}); check --base-url / $D4RL_BASE_URL"
        )
    shutil.copyfile(source, part)


def _content_range_total(header: str | None) -> int | None:
    """The total size from a Content-Range header such as "bytes 100-199/200" or "bytes */200"."""
    if not header or "/" not in header:
        return None
    total = header.rsplit("/", 1)[1].strip()
    return int(total) if total.isdigit() else None


def _content_range_start(header: str | None) -> int | None:
    if not header:
        return None
    spec = header.strip().removeprefix("bytes").strip()
    start = spec.split("-", 1)[0]
    return int(start) if start.isdigit() else None


def _network_error(url: str, reason: object, part: Path, spec: DatasetSpec, target: Path) -> BenchError:
    have = part.stat().st_size if part.exists() else 0
    kept = (
        f"The partial download ({have} bytes) is kept at {part}; run the same command again to resume it "
        f"(python -m bench datasets fetch {spec.name}). "
        if have
        else "Run the same command again to retry. "
    )
    outage = (
        " (the D4RL server has been down for days at a time: D4RL issue #244)"
        if url.startswith(DEFAULT_D4RL_BASE_URL)
        else ""
    )
    return BenchError(f"could not download {url}: {reason}{outage}. {kept}{_by_hand(spec, url, target)}")


def _download(url: str, part: Path, spec: DatasetSpec, target: Path, *, progress: bool, timeout: float) -> None:
    """Download `url` into `part`, resuming from its current size; raise BenchError on any failure."""
    for _attempt in range(2):
        offset = part.stat().st_size if part.exists() else 0
        request = urllib.request.Request(url, headers={"User-Agent": "bench-d4rl-fetch/0.1"})
        if offset:
            request.add_header("Range", f"bytes={offset}-")
        try:
            response = urllib.request.urlopen(request, timeout=timeout)
        except urllib.error.HTTPError as exc:
            exc.close()
            if exc.code == 416 and offset:
                total = _content_range_total(exc.headers.get("Content-Range"))
                if total == offset:
                    return  # the .part already holds the whole file
                part.unlink()  # the .part is longer than the file on the server: start over
                continue
            raise _network_error(url, f"HTTP {exc.code} {exc.reason}", part, spec, target) from exc
        except (OSError, http.client.HTTPException) as exc:
            reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            raise _network_error(url, reason or type(exc).__name__, part, spec, target) from exc

        with response:
            status = response.status
            if status == 206 and _content_range_start(response.headers.get("Content-Range")) != offset:
                part.unlink(missing_ok=True)  # the server sent another range than asked: start over
                continue
            if status == 206:
                mode = "ab"
                length = response.headers.get("Content-Length")
                total = _content_range_total(response.headers.get("Content-Range"))
                expected = total if total is not None else (offset + int(length) if length else None)
            elif status == 200:
                # The server ignored the Range header (or there was none): the body is the whole file.
                offset, mode = 0, "wb"
                length = response.headers.get("Content-Length")
                expected = int(length) if length else None
            else:
                raise _network_error(url, f"unexpected HTTP status {status} for a download", part, spec, target)
            _transfer(response, part, mode, offset, expected, url, spec, target, progress=progress)
        return
    raise _network_error(url, "the server keeps refusing the byte range of the partial download", part, spec, target)


def _transfer(
    response: http.client.HTTPResponse,
    part: Path,
    mode: str,
    offset: int,
    expected: int | None,
    url: str,
    spec: DatasetSpec,
    target: Path,
    *,
    progress: bool,
) -> None:
    received = offset
    bar = tqdm(
        total=expected,
        initial=offset,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc=spec.filename,
        file=sys.stderr,
        disable=not (progress and sys.stderr.isatty()),
    )
    try:
        with bar, open(part, mode) as out:
            while True:
                chunk = response.read1(_CHUNK)
                if not chunk:
                    break
                out.write(chunk)
                # Flushed per chunk so that an interruption leaves every received byte for the resume.
                out.flush()
                received += len(chunk)
                bar.update(len(chunk))
    except (OSError, http.client.HTTPException) as exc:
        raise _network_error(url, f"the transfer broke off ({exc or type(exc).__name__})", part, spec, target) from exc
    if expected is not None and received < expected:
        raise _network_error(url, f"the connection closed after {received} of {expected} bytes", part, spec, target)

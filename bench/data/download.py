"""Fetching D4RL v2 files into the cache: resumable, validated before they take their final name.

The D4RL server has been down for days at a time (D4RL issue #244: HTTP 403 in March 2025), so the base URL
can point at a mirror (http/https), a local folder or a file:// URL, and every failure message says how to
put the file in place by hand. D4RL publishes no checksums, and bytes damaged inside an array pass every
structure check, so each fetched file's SHA-256 is recorded beside it: `--sha256` checks a fetch against a
known value and `verify_datasets` recomputes it (two machines compare before a grid starts).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import http.client
import os
import re
import shlex
import shutil
import sys
import urllib.error
import urllib.parse
import urllib.request
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from bench.data.hdf5 import read_d4rl_arrays
from bench.data.registry import (
    D4RL_DATASETS,
    DEFAULT_D4RL_BASE_URL,
    DatasetSpec,
    d4rl_cache_dir,
    get_dataset_spec,
)
from bench.errors import BenchError
from bench.fileio import atomic_write_text

DEFAULT_TIMEOUT = 60.0
_CHUNK = 1 << 20
_SHA256 = re.compile(r"[0-9a-f]{64}")


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


def checksum_path(path: Path) -> Path:
    """Where the SHA-256 of a cached file is recorded: `<file>.sha256`, in `sha256sum` format."""
    return path.with_name(path.name + ".sha256")


def file_sha256(path: Path) -> str:
    """The SHA-256 of the bytes of `path`, as 64 lowercase hexadecimal digits."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def parse_sha256(text: str) -> str:
    """A --sha256 value in lowercase hex; a BenchError if it is not 64 hexadecimal digits."""
    digest = text.strip().lower()
    if not _SHA256.fullmatch(digest):
        raise BenchError(f"--sha256 {text!r} is not a SHA-256: it needs 64 hexadecimal digits")
    return digest


def recorded_sha256(path: Path) -> str | None:
    """The SHA-256 recorded beside `path` when it was fetched, None if there is no record.

    A record that is not `<64 hex digits>  <file name>` raises a BenchError naming it.
    """
    record = checksum_path(path)
    try:
        words = record.read_text(encoding="utf-8").split()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise BenchError(f"{record}: cannot read the SHA-256 record ({exc}); delete it and fetch again") from exc
    # sha256sum writes "<hex>  <name>", or "<hex> *<name>" in binary mode.
    if len(words) != 2 or not _SHA256.fullmatch(words[0].lower()) or words[1].lstrip("*") != path.name:
        raise BenchError(
            f"{record}: not a SHA-256 record for {path.name} (expected '<64 hex digits>  {path.name}'); "
            f"delete it and run `python -m bench datasets fetch` to write it again"
        )
    return words[0].lower()


def _record_sha256(path: Path, digest: str) -> None:
    atomic_write_text(checksum_path(path), f"{digest}  {path.name}\n")


def fetch_command(
    names: Sequence[str],
    *,
    all_datasets: bool = False,
    cache_dir: Path | None = None,
    base_url: str | None = None,
    sha256: str | None = None,
) -> str:
    """The `python -m bench datasets fetch` command line for `names` (or --all) with these options.

    The base URL and the cache folder are spelled out whenever they are not the defaults, also when they
    come from $D4RL_BASE_URL / $D4RL_DATASET_DIR, so that the command resumes a partial download from the
    server that began it and into the same folder. Quoted for a POSIX shell.
    """
    words = ["python", "-m", "bench", "datasets", "fetch", *(["--all"] if all_datasets else names)]
    if cache_dir is not None or os.environ.get("D4RL_DATASET_DIR", "").strip():
        words += ["--cache-dir", str(d4rl_cache_dir(cache_dir))]
    base = resolve_base_url(base_url)
    if base != DEFAULT_D4RL_BASE_URL:
        words += ["--base-url", base]
    if sha256:
        words += ["--sha256", sha256]
    return shlex.join(words)


def fetch_dataset(
    name: str,
    *,
    cache_dir: Path | None = None,
    base_url: str | None = None,
    force: bool = False,
    sha256: str | None = None,
    progress: bool = True,
    timeout: float = DEFAULT_TIMEOUT,
    resume_command: str | None = None,
) -> Path:
    """Put the D4RL file `name` in the cache, record its SHA-256 beside it, and return its path.

    A cached file that validates (and has the SHA-256 `sha256`, when given) is returned as is unless
    `force`; one that does not is moved aside to `<file>.invalid` and fetched again. The base URL is
    `base_url`, else $D4RL_BASE_URL, else the D4RL server; a local folder or file:// URL is copied from,
    http(s) is downloaded to `<file>.part` (resumed with a Range request on the next call after an
    interruption; `force` discards it). The result is validated against the registry's sizes and checked
    against `sha256` before it takes its final name; a file that fails is kept as `<file>.invalid`, so the
    next call starts clean. Its SHA-256 goes to `<file>.sha256` (`sha256sum` format). `resume_command` is
    the command that error messages tell the user to run again (default: `fetch_command` for `name`).
    """
    spec = get_dataset_spec(name)
    expected = parse_sha256(sha256) if sha256 is not None else None
    cache = d4rl_cache_dir(cache_dir)
    target = cache / spec.filename
    if resume_command is None:
        resume_command = fetch_command([spec.name], cache_dir=cache_dir, base_url=base_url, sha256=expected)
    cache.mkdir(parents=True, exist_ok=True)
    with _exclusive(target.with_name(target.name + ".lock"), spec):
        return _fetch_locked(
            spec,
            target,
            base_url=base_url,
            force=force,
            expected_sha256=expected,
            progress=progress,
            timeout=timeout,
            resume_command=resume_command,
        )


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


@dataclass(frozen=True)
class _Fetch:
    """One file being fetched: where from, where to, and the command that resumes it."""

    spec: DatasetSpec
    url: str
    part: Path
    target: Path
    resume_command: str


def _cached_problem(target: Path, spec: DatasetSpec, expected_sha256: str | None) -> str | None:
    """Why the cached `target` cannot be used, or None when it can (its SHA-256 is then recorded)."""
    try:
        _validate(target, spec)
    except BenchError as exc:
        return f"failed validation: {exc}"
    if expected_sha256 is None:
        try:
            if recorded_sha256(target) is not None:
                return None
        except BenchError:
            pass  # a malformed record is written again below
        _record_sha256(target, file_sha256(target))
        return None
    digest = file_sha256(target)
    if digest != expected_sha256:
        return f"has SHA-256 {digest}, not the expected {expected_sha256}"
    _record_sha256(target, digest)
    return None


def _fetch_locked(
    spec: DatasetSpec,
    target: Path,
    *,
    base_url: str | None,
    force: bool,
    expected_sha256: str | None,
    progress: bool,
    timeout: float,
    resume_command: str,
) -> Path:
    part = target.with_name(target.name + ".part")
    invalid = target.with_name(target.name + ".invalid")
    if force:
        # A .part may hold bytes from another server or broken ones; --force starts from nothing.
        part.unlink(missing_ok=True)
    elif target.exists():
        problem = _cached_problem(target, spec, expected_sha256)
        if problem is None:
            return target
        checksum_path(target).unlink(missing_ok=True)
        os.replace(target, invalid)
        warnings.warn(f"cached file {problem}; moved to {invalid}, fetching again", stacklevel=3)

    base = resolve_base_url(base_url)
    scheme = urllib.parse.urlparse(base).scheme.lower()
    if scheme in ("http", "https"):
        url = spec.url(base)
        _download(_Fetch(spec, url, part, target, resume_command), progress=progress, timeout=timeout)
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
        os.replace(part, invalid)
        raise BenchError(
            f"the file fetched from {url} is not a valid {spec.name} file, so it was not placed in the "
            f"cache; it is kept as {invalid} for inspection (delete it when done) and the next fetch starts "
            f"from scratch. Reason: {exc}. {_by_hand(spec, url, target)}"
        ) from exc
    digest = file_sha256(part)
    if expected_sha256 is not None and digest != expected_sha256:
        os.replace(part, invalid)
        raise BenchError(
            f"the file fetched from {url} has SHA-256 {digest}, not the expected {expected_sha256} (--sha256), "
            f"so it was not placed in the cache; it is kept as {invalid} for inspection (delete it when done). "
            f"Check the expected value (`python -m bench datasets list` on the machine it came from shows it) "
            f"or fetch from another mirror. {_by_hand(spec, url, target)}"
        )
    # No record while the file is replaced: a stale one must never describe the new bytes.
    checksum_path(target).unlink(missing_ok=True)
    os.replace(part, target)
    _record_sha256(target, digest)
    return target


@dataclass(frozen=True)
class Verification:
    """One cached file's SHA-256, recomputed, and the reference values it was compared with."""

    name: str
    path: Path
    sha256: str
    problem: str = ""  # empty when the file matches every reference

    @property
    def ok(self) -> bool:
        return not self.problem

    def line(self) -> str:
        if self.ok:
            return f"{self.name}: OK {self.sha256} ({self.path})"
        return f"{self.name}: FAILED {self.sha256} ({self.path}): {self.problem}"


def verify_datasets(
    names: Sequence[str] | None, *, cache_dir: Path | None = None, sha256: str | None = None
) -> list[Verification]:
    """Recompute the SHA-256 of cached D4RL files and compare it with the recorded one and with `sha256`.

    `names` None means every D4RL file in the cache; `sha256` (for example another machine's value) needs
    exactly one name. A named file that is not cached, or an empty cache, raises a BenchError.
    """
    cache = d4rl_cache_dir(cache_dir)
    if sha256 is not None and (names is None or len(names) != 1):
        raise BenchError("datasets verify: --sha256 compares one file, so name exactly one dataset")
    expected = parse_sha256(sha256) if sha256 is not None else None
    if names is None:
        specs = [spec for spec in D4RL_DATASETS.values() if (cache / spec.filename).is_file()]
        if not specs:
            raise BenchError(
                f"no D4RL files in {cache} to verify; fetch them with `python -m bench datasets fetch` "
                f"(or pass --cache-dir / $D4RL_DATASET_DIR for another folder)"
            )
    else:
        specs = [get_dataset_spec(name) for name in names]
        missing = [spec for spec in specs if not (cache / spec.filename).is_file()]
        if missing:
            raise BenchError(
                f"{', '.join(spec.name for spec in missing)} not in the cache {cache} "
                f"(looked for {', '.join(spec.filename for spec in missing)}); fetch with "
                f"`{fetch_command([spec.name for spec in missing], cache_dir=cache_dir)}`"
            )
    return [_verify(spec, cache / spec.filename, expected) for spec in specs]


def _verify(spec: DatasetSpec, path: Path, expected: str | None) -> Verification:
    digest = file_sha256(path)
    problems = []
    if expected is not None and digest != expected:
        problems.append(f"differs from the expected {expected} (--sha256)")
    try:
        recorded = recorded_sha256(path)
    except BenchError as exc:
        problems.append(str(exc))
    else:
        if recorded is None and expected is None:
            problems.append(
                f"no recorded SHA-256 to compare with ({checksum_path(path).name} is missing); "
                f"`python -m bench datasets fetch {spec.name}` validates the file and records it"
            )
        elif recorded is not None and digest != recorded:
            problems.append(
                f"differs from the {recorded} recorded when it was fetched: the file changed since; "
                f"fetch it again with --force"
            )
    return Verification(spec.name, path, digest, "; ".join(problems))


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


def _network_error(job: _Fetch, reason: object) -> BenchError:
    have = job.part.stat().st_size if job.part.exists() else 0
    kept = (
        f"The partial download ({have} bytes) is kept at {job.part}; run `{job.resume_command}` to resume it. "
        if have
        else f"Run `{job.resume_command}` to retry. "
    )
    outage = (
        " (the D4RL server has been down for days at a time: D4RL issue #244)"
        if job.url.startswith(DEFAULT_D4RL_BASE_URL)
        else ""
    )
    return BenchError(
        f"could not download {job.url}: {reason}{outage}. {kept}{_by_hand(job.spec, job.url, job.target)}"
    )


def _download(job: _Fetch, *, progress: bool, timeout: float) -> None:
    """Download `job.url` into `job.part`, resuming from its current size; raise BenchError on any failure."""
    part = job.part
    for _attempt in range(2):
        offset = part.stat().st_size if part.exists() else 0
        request = urllib.request.Request(job.url, headers={"User-Agent": "bench-d4rl-fetch/0.1"})
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
            raise _network_error(job, f"HTTP {exc.code} {exc.reason}") from exc
        except (OSError, http.client.HTTPException) as exc:
            reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            raise _network_error(job, reason or type(exc).__name__) from exc

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
                raise _network_error(job, f"unexpected HTTP status {status} for a download")
            _transfer(response, job, mode, offset, expected, progress=progress)
        return
    raise _network_error(job, "the server keeps refusing the byte range of the partial download")


def _transfer(
    response: http.client.HTTPResponse,
    job: _Fetch,
    mode: str,
    offset: int,
    expected: int | None,
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
        desc=job.spec.filename,
        file=sys.stderr,
        disable=not (progress and sys.stderr.isatty()),
    )
    try:
        with bar, open(job.part, mode) as out:
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
        raise _network_error(job, f"the transfer broke off ({exc or type(exc).__name__})") from exc
    if expected is not None and received < expected:
        raise _network_error(job, f"the connection closed after {received} of {expected} bytes")

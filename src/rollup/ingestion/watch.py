"""Watch a directory: one long-lived process ingests trade files as they land (issue #16).

Every poll lists the regular files directly in the directory, leaving out names that start
with `.` or `_` and temporary names (`TEMP_SUFFIXES`: `.tmp`, `.part`, ...). A file is
**complete** when its size and modification time are the same at two polls at least
`poll_seconds` apart, so a writer that pauses longer than that inside a file is taken too
early; writing under a temporary name and renaming it in (an atomic rename) is always safe:
the file appears complete and stays so. Complete files are ingested in name order, each with
`ingest_file` (its own validation, quarantine and trades commit, exactly as `rollup ingest
FILE`), then moved: to `.done/` when it was ingested, to `.failed/` with `<name>.error.txt`
(the one-line reason) when the file as a whole cannot be used. A file that changed or vanished
while it was read stays where it is and is taken again once it is complete.

Exactly once across restarts, without a manifest: ingest is idempotent per file. Re-ingesting
a file from the same path stores nothing new (every trade is an exact duplicate of the stored
one: same key, same content) and quarantines no row twice (quarantine skips rows already
recorded for the same file, row and text). A crash after the commit and before the move
therefore costs one more read of the file on restart and no second copy of any trade.

A stop request (an Event or a callable; SIGTERM and SIGINT in the CLI) is honoured between
files: the file being ingested finishes its commit and its move.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from time import monotonic

import attrs
from pyspark.errors import AnalysisException

from rollup.errors import ConcurrentRunError, InputError, RollupError, one_line
from rollup.incremental.follow import Stop, stop_requested, wait_unless_stopped
from rollup.ingestion.batch import IngestReport, ingest_file
from rollup.storage.tables import Tables

__all__ = ["Landing", "WatchSummary", "complete", "landed", "watch"]

TEMP_SUFFIXES = (".tmp", ".temp", ".part", ".partial", ".inprogress", ".crdownload",
                 ".download", ".swp", "~")
"""Names ending so are files still being written: never taken."""
DONE, FAILED = ".done", ".failed"
LOCK_NAME = ".rollup-watch.lock"
ERROR_SUFFIX = ".error.txt"

Signature = tuple[int, int]
"""A file's (size in bytes, modification time in ns) at one poll."""


def _signature(path: Path) -> Signature | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def landed(directory: Path) -> dict[str, Signature]:
    """The candidate files directly in `directory` (name -> signature): regular files, not
    hidden, not starting with `_`, not ending in a temporary suffix."""
    out: dict[str, Signature] = {}
    with os.scandir(directory) as entries:
        for entry in entries:
            name = entry.name
            if name.startswith((".", "_")) or name.lower().endswith(TEMP_SUFFIXES):
                continue
            try:
                if not entry.is_file(follow_symlinks=False):
                    continue
                st = entry.stat(follow_symlinks=False)
            except OSError:  # gone between the listing and the stat
                continue
            out[name] = (st.st_size, st.st_mtime_ns)
    return out


def complete(previous: Mapping[str, Signature], current: Mapping[str, Signature]) -> list[str]:
    """The files of `current` unchanged since `previous` (the poll before), in name order."""
    return sorted(name for name, sig in current.items() if previous.get(name) == sig)


@attrs.frozen
class Landing:
    """What became of one complete file."""

    name: str
    seconds: float
    report: IngestReport | None = None
    """The ingest's counts (None: the file failed, or lost every race)."""
    error: str | None = None
    """Why the file failed as a whole, or why it was left in place."""
    moved_to: Path | None = None
    """Where the file went (None: left in the directory, taken again later)."""

    @property
    def failed(self) -> bool:
        return self.report is None and self.moved_to is not None

    def describe(self) -> str:
        """One line: the ingest's counts, or the failure, and where the file went."""
        if self.moved_to is None:
            return f"{self.name}: left in place: {self.error}"
        where = f" -> {self.moved_to.parent.name}/"
        if self.report is not None:
            text = attrs.evolve(self.report, file=self.name).describe()
            return f"{text} in {self.seconds:.1f}s{where}"
        return f"{self.name}: failed in {self.seconds:.1f}s: {self.error}{where}"


@attrs.frozen
class WatchSummary:
    """How a watch loop ended."""

    polls: int
    files: int
    """Files ingested (moved to the done folder)."""
    failed: int
    stored: int
    quarantined: int
    stopped: bool
    """A stop request ended the loop (False: `max_polls` polls were made)."""

    def describe(self, reason: str = "") -> str:
        why = "stopped" + (f" on {reason}" if reason else "") if self.stopped else "done"
        return (f"watch: {why} after {self.polls} polls: {self.files} files ingested "
                f"({self.stored} rows stored, {self.quarantined} quarantined), "
                f"{self.failed} failed")


@contextlib.contextmanager
def _watching(directory: Path) -> Iterator[None]:
    """Hold `directory` for this watcher: a second watcher of it fails at once."""
    try:
        handle = (directory / LOCK_NAME).open("a")
    except OSError as exc:
        raise InputError(f"{directory}: cannot write in the watched directory "
                         f"({exc.strerror or exc}): the watcher moves files out of it") from None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConcurrentRunError(
                f"{directory} is already watched by another process: one watcher per "
                "directory (stop the other one first)") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _free_name(folder: Path, name: str) -> Path:
    """`folder/name`, or `folder/<stem>-<n><suffix>` when a file (or its error note) of that
    name is already there (a file delivered twice)."""
    stem, suffix = os.path.splitext(name)
    candidate, n = name, 0
    while (folder / candidate).exists() or (folder / f"{candidate}{ERROR_SUFFIX}").exists():
        n += 1
        candidate = f"{stem}-{n}{suffix}"
    return folder / candidate


def _move(file: Path, folder: Path, error: str | None = None) -> Path:
    """Move `file` into `folder` under a free name, after writing its error note if any."""
    folder.mkdir(parents=True, exist_ok=True)
    target = _free_name(folder, file.name)
    if error is not None:
        target.with_name(target.name + ERROR_SUFFIX).write_text(error + "\n", encoding="utf-8")
    shutil.move(file, target)  # a rename on the same file system
    return target


def _take(tables: Tables, file: Path, signature: Signature, *, done: Path, failed: Path,
          options: Mapping[str, object]) -> Landing:
    """Ingest one complete file and move it; leave it in place if it changed meanwhile."""
    started = monotonic()
    report: IngestReport | None = None
    error: str | None = None
    try:
        report = ingest_file(tables, file, **options)  # type: ignore[arg-type]
    except InputError as exc:
        error = str(exc)
    except AnalysisException as exc:
        error = f"{file}: {one_line(exc)}"
    except ConcurrentRunError as exc:  # other writers kept winning: try again next poll
        return Landing(file.name, monotonic() - started, error=str(exc))
    except RollupError:
        raise
    except Exception as exc:  # noqa: BLE001 - Spark failed writing: one line, file stays
        raise RollupError(f"{file}: ingest failed ({one_line(exc)}); the file stays in its "
                          "directory and is read again on restart") from exc
    if _signature(file) != signature:
        return Landing(file.name, monotonic() - started, report, error=(
            "changed or vanished while it was read; taken again once complete (what was "
            "stored is recognised as duplicates)"))
    folder = done if report is not None else failed
    try:
        moved = _move(file, folder, None if report is not None else error)
    except OSError as exc:
        raise RollupError(f"{file}: {'ingested' if report is not None else 'failed'}, but "
                          f"cannot be moved to {folder} ({exc.strerror or exc})") from None
    return Landing(file.name, monotonic() - started, report, error, moved)


def watch(
    tables: Tables,
    directory: str | os.PathLike[str],
    *,
    done: str | os.PathLike[str] | None = None,
    failed: str | os.PathLike[str] | None = None,
    poll_seconds: float = 2.0,
    max_polls: int | None = None,
    stop: Stop = None,
    on_file: Callable[[Landing], None] | None = None,
    after_ingest: Callable[[], None] | None = None,
    progress: Callable[[str], None] | None = None,
    ingest_progress: Callable[[str], None] | None = None,
    **options: object,
) -> WatchSummary:
    """Ingest the trade files that land in `directory` until stopped (see the module doc).

    Args:
        done: where ingested files go (default `<directory>/.done`).
        failed: where unusable files go, each with `<name>.error.txt` (default
            `<directory>/.failed`).
        poll_seconds: time between two looks at the directory; a file is complete when
            unchanged over one such interval.
        max_polls: stop after this many polls (None: until `stop`).
        stop: checked between files and while waiting; the current file commits first.
        on_file: called with each file taken (ingested, failed or left in place).
        after_ingest: called after a poll that stored trades (e.g. to run the cascade); a
            ConcurrentRunError from it is reported and the call repeated after the next poll.
        progress: the watcher's own messages (a cascade that must wait); None is quiet.
        ingest_progress: each ingest's phase lines (`ingest_file`'s progress).
        options: passed to `ingest_file` (fmt, time_unit, bounds, trade_ids).

    Raises:
        InputError: `directory` is not a directory, or an argument is out of range.
        ConcurrentRunError: another process watches `directory`.
        RollupError: Spark failed to store a file (the file stays; a restart reads it again).
    """
    if not poll_seconds > 0:
        raise InputError(f"invalid poll interval {poll_seconds}: expected seconds > 0")
    if max_polls is not None and max_polls < 1:
        raise InputError(f"invalid max polls {max_polls}: expected a number >= 1")
    root = Path(directory).expanduser().resolve()
    if not root.is_dir():
        raise InputError(f"{root}: not a directory: --watch expects the directory files "
                         "land in")
    done_dir = Path(done).expanduser().resolve() if done is not None else root / DONE
    failed_dir = Path(failed).expanduser().resolve() if failed is not None else root / FAILED
    for label, folder in (("done", done_dir), ("failed", failed_dir)):
        if folder == root:
            raise InputError(f"invalid {label} folder {folder}: expected a folder other than "
                             "the watched one")
    say = progress or (lambda _message: None)
    polls = files = bad = stored = quarantined = 0
    seen: dict[str, Signature] = {}
    pending = False  # trades stored and `after_ingest` not yet done
    with _watching(root):
        while max_polls is None or polls < max_polls:
            if stop_requested(stop):
                break
            polls += 1
            began = monotonic()
            try:
                current = landed(root)
            except OSError as exc:
                raise InputError(f"{root}: cannot be listed ({exc.strerror or exc})") from None
            for name in complete(seen, current):
                if stop_requested(stop):
                    break
                landing = _take(tables, root / name, current[name], done=done_dir,
                                failed=failed_dir, options={**options, "progress": ingest_progress})
                if landing.report is not None:  # rows stored, even if the file stays
                    files += landing.moved_to is not None
                    stored += landing.report.ingested
                    quarantined += landing.report.quarantined
                    pending = pending or landing.report.ingested > 0
                bad += landing.failed
                if on_file is not None:
                    on_file(landing)
            seen = current
            if pending and after_ingest is not None and not stop_requested(stop):
                try:
                    after_ingest()
                    pending = False
                except ConcurrentRunError as exc:
                    say(str(exc))
            if max_polls is None or polls < max_polls:
                wait_unless_stopped(stop, max(0.0, poll_seconds - (monotonic() - began)))
    return WatchSummary(polls, files, bad, stored, quarantined, stop_requested(stop))

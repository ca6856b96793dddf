"""Readers that report bad lines instead of crashing, and writers that never leave half files.

Readers yield one `Line` per input line or row, carrying either the parsed value or the
reason it could not be parsed, with the file and the 1-based line number, so the caller
can quarantine it. Writers go through a temporary file in the same directory followed by
`os.replace`, which is atomic on POSIX: a reader sees the old file or the new one, never
a torn one. Temporary files and directories are created private (0600 / 0700); they are
given the modes an ordinary `open` / `mkdir` would (0666 / 0777 minus the umask) before
they take their final name, so a team on a shared filesystem can read the outputs.

A staged path is named `.<final>.<pid>@<host>.<random>.partial`: when a command is killed
(out of memory, a signal, a native crash) its staging is left behind, and the next command
that stages beside it removes every staged path whose process on this host has gone.
Staging of live processes, and of other hosts on a shared filesystem, is never touched.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
import socket
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from tunewright.core.errors import DataError, UserError


@dataclass
class Line:
    path: str
    lineno: int
    value: Any = None
    error: str | None = None
    raw: str | None = None


def iter_jsonl(path: Path, start: int = 0, end: int | None = None, first_line: int = 1) -> Iterator[Line]:
    """Parse a JSONL file line by line; malformed, empty or non-UTF-8 lines carry an error.

    `start` / `end` read only the lines that begin in that byte range (a shard of a large
    file: `start` is a line start, line `first_line`).
    """
    if not path.is_file():
        raise DataError(f"input file not found: {path}")
    with path.open("rb") as fh:
        fh.seek(start)
        pos = start
        for lineno, raw in enumerate(fh, start=first_line):
            if end is not None and pos >= end:
                return
            pos += len(raw)
            yield _jsonl_line(str(path), lineno, raw)


def _jsonl_line(path: str, lineno: int, raw: bytes) -> Line:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Line(
            path, lineno, error=f"invalid UTF-8 at byte {exc.start}", raw=raw.decode("utf-8", "replace").rstrip("\n")
        )
    text = text.rstrip("\r\n")
    if not text.strip():
        return Line(path, lineno, error="empty line", raw=text)
    try:
        return Line(path, lineno, value=json.loads(text))
    except json.JSONDecodeError as exc:
        where = f"{exc.msg.removesuffix(' at')} at column {exc.colno}"
        return Line(path, lineno, error=f"malformed JSON: {where}", raw=text)


def iter_parquet(path: Path) -> Iterator[Line]:
    """Read a Parquet file row by row (row numbers are 1-based); a corrupt file is a DataError."""
    import pyarrow.parquet as pq

    if not path.is_file():
        raise DataError(f"input file not found: {path}")
    try:
        pf = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several unrelated types for a bad file
        raise DataError(f"{path}: not a readable Parquet file: {exc}") from None
    lineno = 0
    for batch in pf.iter_batches():
        for row in batch.to_pylist():
            lineno += 1
            yield Line(str(path), lineno, value=row)


def iter_csv(path: Path) -> Iterator[Line]:
    """Read a CSV file with a header row; line numbers are the file's (the header is line 1)."""
    import csv

    if not path.is_file():
        raise DataError(f"input file not found: {path}")
    with path.open(newline="", encoding="utf-8", errors="strict") as fh:
        reader = csv.DictReader(fh)
        try:
            for row in reader:
                if None in row:
                    yield Line(str(path), reader.line_num, error="more fields than the header", raw=str(row))
                else:
                    yield Line(str(path), reader.line_num, value=row)
        except (UnicodeDecodeError, csv.Error) as exc:
            raise DataError(f"{path}:{reader.line_num + 1}: unreadable CSV: {exc}") from None


def columns_of(path: Path, fmt: str) -> list[str] | None:
    """The column names of a CSV header or Parquet schema (None for JSONL, which has none)."""
    if fmt == "csv":
        import csv

        with path.open(newline="", encoding="utf-8") as fh:
            return next(csv.reader(fh), [])
    if fmt == "parquet":
        import pyarrow.parquet as pq

        try:
            return list(pq.ParquetFile(path).schema_arrow.names)
        except Exception as exc:  # pyarrow raises several unrelated types for a bad file
            raise DataError(f"{path}: not a readable Parquet file: {exc}") from None
    return None


def iter_records_file(path: Path, fmt: str | None = None) -> Iterator[Line]:
    """Dispatch on format (or the file suffix): jsonl, parquet or csv."""
    fmt = fmt or {".parquet": "parquet", ".csv": "csv"}.get(path.suffix, "jsonl")
    if fmt == "parquet":
        return iter_parquet(path)
    if fmt == "csv":
        return iter_csv(path)
    if fmt == "jsonl":
        return iter_jsonl(path)
    raise DataError(f"unsupported input format {fmt!r} for {path} (expected jsonl, parquet or csv)")


def read_jsonl_strict(path: Path) -> list[Any]:
    """Read a JSONL file our own tools wrote; any bad line is a DataError naming it."""
    out = []
    for line in iter_jsonl(path):
        if line.error:
            raise DataError(f"{line.path}:{line.lineno}: {line.error}")
        out.append(line.value)
    return out


def current_umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux /proc)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def usual_mode(path: Path, recursive: bool = False) -> None:
    """Give what `tempfile` (or a library writing through it) made the mode `open` / `mkdir` would give.

    Directories and executables get 0777, other files 0666, minus the umask; with
    `recursive`, everything under a directory too (safetensors, for one, writes 0600).
    """
    mask = current_umask()
    for p in [path, *(path.rglob("*") if recursive and path.is_dir() else [])]:
        executable = p.is_dir() or os.stat(p).st_mode & 0o111
        os.chmod(p, (0o777 if executable else 0o666) & ~mask)


@contextmanager
def atomic_write(path: Path, mode: str = "w") -> Iterator[IO[Any]]:
    """Write `path` through a temp file that replaces it only if the block succeeds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, mode, encoding=None if "b" in mode else "utf-8") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: Path, text: str) -> None:
    """Atomically write a text file."""
    with atomic_write(path) as fh:
        fh.write(text)


def write_json(path: Path, data: Any) -> None:
    """Atomically write pretty JSON."""
    write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def write_jsonl(path: Path, rows: Iterable[Any]) -> int:
    """Atomically write one JSON object per line; returns the number of rows."""
    n = 0
    with atomic_write(path) as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    return n


def _owner() -> str:
    host = "".join(c if c.isalnum() or c in "-_" else "_" for c in socket.gethostname())
    return f"{os.getpid()}@{host}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale(directory: Path) -> list[Path]:
    """Remove the staged paths in `directory` left by processes of this host that no longer run."""
    host = _owner().split("@", 1)[1]
    removed = []
    for path in directory.glob(".*@*.partial") if directory.is_dir() else []:
        parts = path.name.split(".")
        owner = next((p for p in reversed(parts) if "@" in p), "")
        pid, _, where = owner.partition("@")
        if where == host and pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            _remove(path)
            removed.append(path)
    return removed


def staging_path(final: Path) -> Path:
    """A fresh staging name beside `final`, after sweeping the staging of dead processes there."""
    sweep_stale(final.parent)
    return final.with_name(f".{final.name}.{_owner()}.{secrets.token_hex(4)}.partial")


def make_staging_dir(final: Path) -> Path:
    """A fresh hidden directory beside `final` (same filesystem, so it can be renamed into place)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale(final.parent)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.{_owner()}.", suffix=".partial", dir=final.parent))
    usual_mode(tmp)
    return tmp


@contextmanager
def atomic_dir(path: Path) -> Iterator[Path]:
    """Build a directory in a temp sibling; it replaces `path` only if the block succeeds."""
    tmp = make_staging_dir(path)
    try:
        yield tmp
        usual_mode(tmp, recursive=True)
        replace_dir(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def replace_dir(src: Path, path: Path) -> None:
    """Put the finished directory `src` at `path` (same filesystem), replacing what was there."""
    if path.exists():
        old = path.with_name(f".{path.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        path.rename(old)
        src.rename(path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        src.rename(path)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


class OutputSet:
    """The outputs of one command, built aside and swapped in together, or not at all.

    `file(final)` / `dir(final)` return a staging path beside the final one; the command
    writes there. `commit()` checks every target first (a directory is never replaced by
    a file or the reverse), then renames each staged path into place, moving what was
    there aside; if any rename fails, every output already moved is put back, so the
    workspace holds all the old outputs or all the new ones. `discard()` drops the staged
    paths. The OS error of a failed rename propagates, naming its path. `new_dir` stages a
    directory that must not exist when the set is committed (an immutable version), and
    `link` a symbolic link that replaces the previous one (a `latest` pointer).
    """

    def __init__(self) -> None:
        self.staged: dict[Path, Path] = {}
        self.create_only: set[Path] = set()
        self.links: set[Path] = set()
        self.made: list[Path] = []  # parent directories this set created, removed again if left empty

    def _parent(self, final: Path) -> None:
        missing = [p for p in final.parents if not p.exists()]
        final.parent.mkdir(parents=True, exist_ok=True)
        self.made.extend(missing)

    def file(self, final: Path) -> Path:
        """Where to write the new content of file `final`."""
        self._check_target(final, is_dir=False)
        self._parent(final)
        tmp = staging_path(final)
        self.staged[final] = tmp
        return tmp

    def dir(self, final: Path) -> Path:
        """A fresh directory to build the new content of directory `final` in."""
        self._check_target(final, is_dir=True)
        self._parent(final)
        self.staged[final] = make_staging_dir(final)
        return self.staged[final]

    def new_dir(self, final: Path) -> Path:
        """Like `dir`, for a directory that must not exist yet (an immutable version): never replaced."""
        if final.exists() or final.is_symlink():
            raise UserError(f"{final} already exists and is never replaced")
        self.create_only.add(final)
        return self.dir(final)

    def link(self, final: Path, target: str) -> None:
        """Make `final` a symbolic link to `target` (relative to its directory), replacing a previous link."""
        if final.exists() and not final.is_symlink():
            raise UserError(f"{final} exists and is not a link; move it away")
        self._parent(final)
        tmp = staging_path(final)
        os.symlink(target, tmp)
        self.staged[final] = tmp
        self.links.add(final)

    @staticmethod
    def _check_target(final: Path, is_dir: bool) -> None:
        if final.exists() and final.is_dir() != is_dir:
            have, want = ("a directory", "a file") if final.is_dir() else ("a file", "a directory")
            raise UserError(f"{final} is {have}, but this output is {want}; move it away or choose another path")

    def commit(self) -> None:
        """Move every staged output into place; all or nothing."""
        for final, tmp in self.staged.items():
            if final in self.create_only and (final.exists() or final.is_symlink()):
                raise UserError(f"{final} was created by another command meanwhile; run this one again")
            if final in self.links:
                continue
            self._check_target(final, is_dir=tmp.is_dir())
            usual_mode(tmp, recursive=True)
        moved: list[tuple[Path, Path | None, bool]] = []
        try:
            for final, tmp in self.staged.items():
                backup = None
                if final.exists() or final.is_symlink():
                    backup = final.with_name(f".{final.name}.{secrets.token_hex(4)}.old")
                    os.rename(final, backup)
                moved.append((final, backup, False))
                os.rename(tmp, final)
                moved[-1] = (final, backup, True)
        except BaseException:
            for final, backup, placed in reversed(moved):
                if placed:
                    _remove(final)
                if backup is not None:
                    os.rename(backup, final)
            self.discard()
            raise
        for _, backup, _ in moved:
            if backup is not None:
                _remove(backup)
        self.staged.clear()
        self.create_only.clear()
        self.links.clear()
        self.made.clear()

    def discard(self) -> None:
        """Remove whatever was staged, and the directories made for it; the workspace keeps its old outputs."""
        for tmp in self.staged.values():
            _remove(tmp)
        for made in sorted(set(self.made), key=lambda p: len(p.parts), reverse=True):
            with contextlib.suppress(OSError):
                made.rmdir()  # only if empty: another command may have put something there meanwhile
        self.staged.clear()
        self.create_only.clear()
        self.links.clear()
        self.made.clear()


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes, read in chunks."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256_tree(root: Path) -> str:
    """One content hash for a directory: sha256 over every file's relative path and sha256."""
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")):
        h.update(f"{path.relative_to(root).as_posix()}\0{sha256_file(path)}\n".encode())
    return h.hexdigest()

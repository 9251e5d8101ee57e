"""Streaming readers for JSONL, CSV, Parquet and plain text over fsspec.

Every problem becomes a ``RawRow`` with a reason a person understands; nothing raises out
of ``read_source`` for bad input, and no line is held in memory beyond ``max_line_bytes``.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import IO, Any

import fsspec
from fsspec.spec import AbstractBufferedFile

from services.ingestion.domain.pipeline import RawRow
from services.ingestion.policy import SourcePolicy
from shared.events.ingest import SourceSpec

BOM = b"\xef\xbb\xbf"
PEEK = 8192
_FORMATS = {
    "jsonl": "jsonl",
    "ndjson": "jsonl",
    "json": "jsonl",
    "csv": "csv",
    "parquet": "parquet",
    "pq": "parquet",
}
_COMPRESSED = ("gz", "bz2", "xz", "zst", "zip")


def detect_format(path: str) -> str:
    parts = path.lower().rsplit("/", 1)[-1].split(".")
    if len(parts) > 2 and parts[-1] in _COMPRESSED:
        parts = parts[:-1]
    return _FORMATS.get(parts[-1], "text") if len(parts) > 1 else "text"


def expand(uri: str) -> tuple[Any, list[str], str | None]:
    """(filesystem, sorted paths, error) for a path, directory, glob or fsspec URL."""
    try:
        fs, path = fsspec.core.url_to_fs(uri)
        if any(ch in path for ch in "*?["):
            paths = sorted(p for p in fs.glob(path) if fs.isfile(p))
            return fs, paths, None if paths else "no file matches this pattern"
        if not fs.exists(path):
            return fs, [], "path does not exist"
        if fs.isdir(path):
            paths = sorted(fs.find(path))
            return fs, paths, None if paths else "directory is empty"
        return fs, [path], None
    except Exception as exc:
        return None, [], f"cannot open: {type(exc).__name__}: {exc}"


def _protocol(fs: Any) -> str:
    return fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]  # type: ignore[no-any-return]


def _is_local(fs: Any) -> bool:
    return _protocol(fs) in ("file", "local")


def _label(fs: Any, path: str) -> str:
    return path if _is_local(fs) else f"{_protocol(fs)}://{path}"


def read_source(
    spec: SourceSpec, *, max_line_bytes: int, policy: SourcePolicy | None = None
) -> Iterator[RawRow]:
    """The rows of one source. With a ``policy``, the source is checked before anything is
    looked at, and every local file it expands to (resolved) right before it is opened."""
    if policy is not None:
        policy.check(spec.uri)
    fs, paths, error = expand(spec.uri)
    if error is not None:
        yield RawRow(spec.uri, None, error=error, file_level=True)
        return
    for path in paths:
        label = _label(fs, path)
        if policy is not None and _is_local(fs):
            policy.check_local(path)  # a symlink or a glob leading out: SourceDeniedError
        fmt = spec.format if spec.format != "auto" else detect_format(path)
        try:
            with fs.open(path, "rb", compression="infer") as handle:
                head = handle.read(PEEK)
            if not head:
                yield RawRow(label, None, error="empty file", file_level=True)
                continue
            if fmt != "parquet" and b"\0" in head:
                reason = "binary file (it contains NUL bytes), not text: skipped"
                yield RawRow(label, None, error=reason, file_level=True)
                continue
            with fs.open(path, "rb", compression="infer") as handle:
                if fmt == "parquet":
                    yield from _parquet(handle, label)
                elif fmt == "csv":
                    yield from _csv(handle, label, max_line_bytes)
                elif fmt == "jsonl":
                    yield from _jsonl(handle, label, max_line_bytes)
                elif spec.text_mode == "file":
                    yield from _text_file(handle, label, max_line_bytes)
                else:
                    yield from _text_lines(handle, label, max_line_bytes)
        except OSError as exc:
            yield RawRow(label, None, error=f"read failed: {exc}", file_level=True)


def _sized_lines(handle: IO[bytes]) -> IO[bytes]:
    """A handle whose ``readline`` takes a size: fsspec's remote files (s3, http, ...) have a
    ``readline()`` without one, so they read through a standard buffer instead."""
    if isinstance(handle, AbstractBufferedFile):
        return io.BufferedReader(handle, buffer_size=1 << 20)  # type: ignore[arg-type]
    return handle


def iter_lines(handle: IO[bytes], max_bytes: int) -> Iterator[tuple[int, bytes | None, int]]:
    """(line number, bytes without EOL or None when too long, size in bytes)."""
    handle = _sized_lines(handle)
    number = 0
    while True:
        line = handle.readline(max_bytes + 1)
        if not line:
            return
        number += 1
        if len(line) > max_bytes and not line.endswith(b"\n"):
            size = len(line)
            while more := handle.readline(1 << 20):  # skip the rest, memory stays bounded
                size += len(more)
                if more.endswith(b"\n"):
                    break
            yield number, None, size
            continue
        yield number, line.rstrip(b"\r\n"), len(line)


def _decoded(
    handle: IO[bytes], label: str, max_bytes: int
) -> Iterator[tuple[int, str | None, RawRow | None]]:
    """(line number, text, problem row): text is None when the line is unusable."""
    for number, raw, size in iter_lines(handle, max_bytes):
        notice = None
        if raw is None:
            reason = f"line of {size:,} bytes is over the {max_bytes:,}-byte limit: skipped"
            yield number, None, RawRow(label, number, error=reason)
            continue
        if number == 1 and raw.startswith(BOM):
            raw = raw[len(BOM) :]  # noqa: PLW2901
            notice = "UTF-8 byte order mark at the start of the file removed (row kept)"
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            reason = f"not valid UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1})"
            yield number, None, RawRow(label, number, error=reason)
            continue
        yield number, text, RawRow(label, number, notice=notice) if notice else None


def _jsonl(handle: IO[bytes], label: str, max_bytes: int) -> Iterator[RawRow]:
    for number, text, problem in _decoded(handle, label, max_bytes):
        if text is None:
            assert problem is not None
            yield problem
            continue
        if not text.strip():
            continue
        try:
            fields = json.loads(text)
        except json.JSONDecodeError as exc:
            yield RawRow(label, number, error=f"malformed JSON: {exc.msg} (column {exc.colno})")
            continue
        yield RawRow(label, number, fields=fields, notice=problem.notice if problem else None)


def _text_lines(handle: IO[bytes], label: str, max_bytes: int) -> Iterator[RawRow]:
    for number, text, problem in _decoded(handle, label, max_bytes):
        if text is None:
            assert problem is not None
            yield problem
        elif text.strip():
            yield RawRow(label, number, text=text, notice=problem.notice if problem else None)


def _text_file(handle: IO[bytes], label: str, max_bytes: int) -> Iterator[RawRow]:
    data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:
        yield RawRow(label, 1, error=f"file is over the {max_bytes:,}-byte document limit")
        return
    notice = None
    if data.startswith(BOM):
        data, notice = data[len(BOM) :], "UTF-8 byte order mark removed (document kept)"
    try:
        yield RawRow(label, 1, text=data.decode("utf-8"), notice=notice)
    except UnicodeDecodeError as exc:
        yield RawRow(label, 1, error=f"not valid UTF-8 (byte offset {exc.start})")


def _csv(handle: IO[bytes], label: str, max_bytes: int) -> Iterator[RawRow]:
    problems: list[RawRow] = []
    current = [0]
    notice: list[str] = []

    def lines() -> Iterator[str]:
        for number, text, problem in _decoded(handle, label, max_bytes):
            current[0] = number
            if text is None:
                assert problem is not None
                problems.append(problem)
                continue
            if problem is not None and problem.notice:
                notice.append(problem.notice)
            yield text + "\n"

    csv.field_size_limit(max_bytes)
    reader = csv.reader(lines())
    header: list[str] | None = None
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            problems.append(RawRow(label, current[0], error=f"CSV error: {exc}"))
            row = None
        yield from problems
        problems.clear()
        if notice:
            yield RawRow(label, 1, error=notice.pop(), file_level=True)
        if not row:
            continue
        if header is None:
            header = [name.strip() for name in row]
            continue
        if len(row) != len(header):
            fields = "1 field" if len(row) == 1 else f"{len(row)} fields"
            reason = f"row has {fields}, the header has {len(header)}"
            yield RawRow(label, current[0], error=reason)
            continue
        yield RawRow(label, current[0], fields=dict(zip(header, row, strict=True)))
    yield from problems


def _parquet(handle: IO[bytes], label: str) -> Iterator[RawRow]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    number = 0
    try:
        parquet = pq.ParquetFile(handle)
        for batch in parquet.iter_batches(batch_size=1024):
            for fields in batch.to_pylist():
                number += 1
                yield RawRow(label, number, fields=fields)
    except (pa.ArrowException, OSError, ValueError) as exc:
        where = f" after row {number}" if number else ""
        yield RawRow(
            label, None, error=f"not a readable Parquet file{where}: {exc}", file_level=True
        )

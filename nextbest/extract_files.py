"""The files of a warehouse extract, read as a stream of row batches: CSV, or Parquet if present.

``profiles.parquet`` is read instead of ``profiles.csv`` when both exist. Either way the loader
sees the same thing: batches of ``(line, values)``, the wanted columns as stripped text in the
order asked for, so one set of row checks serves both formats. Nothing holds a whole file: CSV
is read line by line, Parquet one record batch at a time (pyarrow), so memory stays flat with
the size of the extract.

Where a problem is reported: for CSV the physical line (the header is line 1); for Parquet the
row number counted from 1 (a Parquet file has no header line).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from operator import itemgetter
from pathlib import Path
from typing import Any

__all__ = [
    "BATCH_ROWS",
    "ExtractFileError",
    "Reject",
    "RowBatch",
    "RowSource",
    "find_file",
    "open_source",
]

# Rows handed to the loader at a time: large enough to amortise per-batch work (one database
# round trip to check affinities' subscribers), small enough to keep memory flat.
BATCH_ROWS = 10_000
FORMATS = (".parquet", ".csv")

RowBatch = list[tuple[int, tuple[str, ...]]]
# Called for a row the file itself cannot give (wrong number of fields): file, line, reason.
Reject = Callable[[str, int, str], None]


class ExtractFileError(ValueError):
    """The file cannot be read at all (missing columns, not UTF-8, not Parquet...): the load
    is refused whatever the reject threshold."""

    def __init__(self, file: str, line: int, reason: str) -> None:
        super().__init__(f"{file}:{line}: {reason}")
        self.file = file
        self.line = line
        self.reason = reason


def find_file(directory: Path, stem: str) -> Path | None:
    """``stem.parquet`` if present, else ``stem.csv``; None if neither is."""
    for suffix in FORMATS:
        path = directory / f"{stem}{suffix}"
        if path.is_file():
            return path
    return None


class RowSource:
    """One open extract file. Iterate ``batches()`` once; ``fraction()`` says how far it got."""

    name: str
    ignored: list[str]

    def batches(self) -> Iterator[RowBatch]:  # pragma: no cover - interface
        raise NotImplementedError

    def fraction(self) -> float | None:  # pragma: no cover - interface
        raise NotImplementedError

    def close(self) -> None:  # pragma: no cover - interface
        raise NotImplementedError


def open_source(path: Path, columns: tuple[str, ...], reject: Reject) -> RowSource:
    if path.suffix == ".parquet":
        return _ParquetSource(path, columns)
    return _CsvSource(path, columns, reject)


class _CsvSource(RowSource):
    def __init__(self, path: Path, columns: tuple[str, ...], reject: Reject) -> None:
        self.name = path.name
        self.ignored = []
        self._columns = columns
        self._reject = reject
        self._size = max(path.stat().st_size, 1)
        self._raw = path.open("rb", buffering=0)
        self._text = io.TextIOWrapper(
            io.BufferedReader(self._raw, 1 << 20), encoding="utf-8", newline=""
        )

    def fraction(self) -> float | None:
        try:
            return min(self._raw.tell() / self._size, 1.0)
        except (OSError, ValueError):
            return None

    def close(self) -> None:
        self._text.close()

    def batches(self) -> Iterator[RowBatch]:
        file = self.name
        reader = csv.reader(self._text)
        try:
            header = next(reader)
        except StopIteration:
            raise ExtractFileError(file, 1, "empty file: expected a header row") from None
        except UnicodeDecodeError as exc:
            raise _not_utf8(file, exc) from None
        except csv.Error as exc:
            raise ExtractFileError(file, 1, f"malformed CSV: {exc}") from None
        header = [h.strip().lstrip("\ufeff") for h in header]
        missing = [c for c in self._columns if c not in header]
        if missing:
            raise ExtractFileError(file, 1, f"header lacks column(s) {', '.join(missing)}")
        self.ignored = [f"{file}:{h}" for h in header if h not in self._columns]
        width = len(header)
        positions = [header.index(c) for c in self._columns]
        # Columns exactly as asked for (the usual case): no re-ordering per row.
        same = positions == list(range(width))
        pick: Callable[[list[str]], Any] = itemgetter(*positions)
        single = len(positions) == 1
        reject = self._reject
        strip = str.strip
        batch: RowBatch = []
        append = batch.append
        try:
            for values in reader:
                if len(values) != width:
                    if not values or (len(values) == 1 and not values[0].strip()):
                        continue  # blank line
                    reject(file, reader.line_num, f"expected {width} fields, found {len(values)}")
                    continue
                chosen = values if same else ([pick(values)] if single else pick(values))
                append((reader.line_num, tuple(map(strip, chosen))))
                if len(batch) >= BATCH_ROWS:
                    yield batch
                    batch = []
                    append = batch.append
        except UnicodeDecodeError as exc:
            raise _not_utf8(file, exc) from None
        except csv.Error as exc:
            raise ExtractFileError(file, reader.line_num, f"malformed CSV: {exc}") from None
        if batch:
            yield batch


def _not_utf8(file: str, exc: UnicodeDecodeError) -> ExtractFileError:
    return ExtractFileError(file, 0, f"not UTF-8 text ({exc.reason} at byte {exc.start})")


class _ParquetSource(RowSource):
    def __init__(self, path: Path, columns: tuple[str, ...]) -> None:
        import pyarrow.parquet as pq

        self.name = path.name
        self.ignored = []
        self._columns = columns
        self._done = 0
        try:
            self._file = pq.ParquetFile(path)
        except Exception as exc:  # pyarrow raises ArrowInvalid, OSError... for a bad file
            raise ExtractFileError(self.name, 0, f"not a readable Parquet file: {exc}") from None
        self._total = max(int(self._file.metadata.num_rows), 1)

    def fraction(self) -> float | None:
        return min(self._done / self._total, 1.0)

    def close(self) -> None:
        self._file.close()

    def batches(self) -> Iterator[RowBatch]:
        import pyarrow as pa
        import pyarrow.compute as pc

        names = self._file.schema_arrow.names
        missing = [c for c in self._columns if c not in names]
        if missing:
            raise ExtractFileError(self.name, 0, f"lacks column(s) {', '.join(missing)}")
        self.ignored = [f"{self.name}:{n}" for n in names if n not in self._columns]
        row = 0
        try:
            for record_batch in self._file.iter_batches(
                batch_size=BATCH_ROWS, columns=list(self._columns)
            ):
                texts = []
                for name in self._columns:
                    array = record_batch.column(name)
                    if pa.types.is_list(array.type) or pa.types.is_large_list(array.type):
                        # A list column stands for the CSV's ';'-separated form.
                        array = pc.binary_join(pc.cast(array, pa.list_(pa.string())), ";")
                    elif not pa.types.is_string(array.type):
                        array = pc.cast(array, pa.string())
                    array = pc.utf8_trim_whitespace(array.fill_null(""))
                    texts.append(array.to_pylist())
                count = record_batch.num_rows
                lines = range(row + 1, row + count + 1)
                yield list(zip(lines, zip(*texts, strict=True), strict=True))
                row += count
                self._done = row
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as exc:
            raise ExtractFileError(self.name, row + 1, f"cannot read: {exc}") from None

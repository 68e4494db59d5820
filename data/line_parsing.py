"""What every MovieLens parser shares: collecting bad records, and small field checks.

A bad field raises `BadValue`; a parser catches it and adds the record to its file's
`Problems`, which either raises the earliest one as a MovieLensFormatError (strict) or keeps
them all as BadRows (``skip_bad_rows``), so nothing is dropped silently. `write_quarantine`
writes the kept rows for the user to fix.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Sequence

from common import fileio
from data.movielens_types import ENCODING, RECORD_FIELD, BadRow, MovieLensFormatError

_TITLE_YEAR = re.compile(r"^(?P<name>.*?)\s*\((?P<released>\d{4})\)\s*$", re.DOTALL)


# ---------------------------------------------------------------------------------------
# error collection
# ---------------------------------------------------------------------------------------
class BadValue(Exception):
    """Internal: one field of one record is wrong (turned into a BadRow or an error)."""

    def __init__(self, field: str, reason: str, value: object) -> None:
        super().__init__(field, reason, value)
        self.field, self.reason, self.value = field, reason, value


class Problems:
    """Collects the bad records of one file.

    Checks run column by column (vectorised), not line by line, so in strict mode the error
    raised is the one on the *earliest line*, whatever check found it: the user sees the first
    problem of the file, as a line-by-line parser would report it.
    """

    def __init__(self, path: Path, strict: bool) -> None:
        self.path = str(path)
        self.strict = strict
        self._rows: list[tuple[BadRow, object]] = []

    def add(self, line_no: int, field_: str, reason: str, value: object, raw: str) -> None:
        self._rows.append((BadRow(self.path, line_no, field_, reason, raw), value))

    def finish(self, sink: list[BadRow]) -> None:
        if not self._rows:
            return
        self._rows.sort(key=lambda item: item[0].line_no)  # stable: first check wins on ties
        if self.strict:
            row, value = self._rows[0]
            raise MovieLensFormatError(row.path, row.line_no, row.field, row.reason, value)
        sink.extend(row for row, _ in self._rows)


def write_quarantine(path: Path | str, rows: Sequence[BadRow]) -> None:
    """Write rejected rows as TSV; tabs/newlines in values are escaped to keep one row per line.

    Written to a temp name and renamed, so a reader never sees a half-written file (on an
    object store the rename is a copy + delete, still never a partial file)."""

    def esc(text: object) -> str:
        return (str(text).replace("\\", "\\\\").replace("\t", "\\t")
                .replace("\n", "\\n").replace("\r", "\\r"))

    lines = ["path\tline\tfield\treason\traw"]
    lines += ["\t".join(esc(v) for v in (r.path, r.line_no, r.field, r.reason, r.raw)) for r in rows]
    tmp = f"{os.fspath(path)}.tmp"
    fileio.write_text(tmp, "\n".join(lines) + "\n")
    fileio.rename(tmp, path, overwrite=True)


# ---------------------------------------------------------------------------------------
# small parsing helpers
# ---------------------------------------------------------------------------------------
def normalise_bytes(data: bytes) -> bytes:
    """CRLF -> LF and drop trailing blank lines (a final newline or editor padding is fine)."""
    if b"\r" in data:
        data = data.replace(b"\r\n", b"\n")
    content = data.rstrip()
    if not content:
        return b""
    end = data.find(b"\n", len(content))
    return data if end < 0 else data[:end]


def text_lines(path: Path | str) -> list[str]:
    data = normalise_bytes(fileio.read_bytes(path))
    return data.decode(ENCODING).split("\n") if data else []


def parse_int(value: str, field_: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise BadValue(field_, "not an integer", value) from None


def split_fields(line: str, sep: str, n: int) -> list[str]:
    parts = line.split(sep)
    if len(parts) != n:
        raise BadValue(RECORD_FIELD, f"expected {n} fields separated by {sep!r}, found {len(parts)}", line)
    return parts


def split_title(raw_title: str) -> tuple[str, int]:
    """"Toy Story (1995)" -> ("Toy Story", 1995); no trailing year -> (title, 0)."""
    m = _TITLE_YEAR.match(raw_title)
    if m is None:
        return raw_title.strip(), 0
    return m.group("name"), int(m.group("released"))


class IdRegistry:
    """Detects duplicate ids; the second occurrence is the bad one (the first one wins)."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.first_line: dict[int, int] = {}

    def claim(self, id_: int, line_no: int, field_: str, raw_value: str) -> None:
        first = self.first_line.setdefault(id_, line_no)
        if first != line_no:
            raise BadValue(field_, f"duplicate {self.what} id (first on line {first})", raw_value)

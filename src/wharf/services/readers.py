"""Readers of the table formats wharf takes: CSV, JSON, JSON lines, Excel .xlsx and Parquet.

Each takes a file already matched to its format (:func:`wharf.services.tables.detect_format`) and
gives a DataFrame whose column names are checked (:func:`check_columns`), or refuses with an
:class:`~wharf.errors.InvalidDataset` naming the line, cell, row or column at fault. A reader may
let its library's own exception through on input it cannot parse:
:func:`wharf.services.tables.read_table` turns those into ``InvalidDataset``.
"""

from __future__ import annotations

import codecs
import re
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal, NoReturn

import orjson
import pandas as pd

from wharf.errors import ContentTooLarge, InvalidDataset
from wharf.services.decoding import show

MAX_COLUMNS = 10_000
MAX_NAME_LENGTH = 1_000
"""Longest column name, in characters."""
XLSX_EXPANSION = 8
"""An .xlsx workbook may unzip to at most this many times the upload limit (zip bombs stop here)."""
DELIMITERS = (",", ";", "\t")
BOM = codecs.BOM_UTF8
HEAD_BYTES = 1 << 20
CHUNK_BYTES = 1 << 20
SUPPORTED = (
    "CSV (.csv, .tsv), JSON (.json), JSON lines (.jsonl, .ndjson), Excel (.xlsx) or Parquet (.parquet)"
)


# -- checks shared by every format -------------------------------------------------------------


def check_columns(names: Sequence[Any], filename: str, where: str = "header") -> list[str]:
    """``names`` as strings; :raises: when there are none, too many, or empty or duplicate ones."""
    if not names:
        raise InvalidDataset(
            f"{filename!r} has no columns; expected a table with a {where} naming its columns.",
            field="file",
        )
    if len(names) > MAX_COLUMNS:
        raise ContentTooLarge(
            f"{filename!r} has {len(names)} columns; wharf takes at most {MAX_COLUMNS}. Drop the "
            "columns you do not need, or reshape the table to long form.",
            field="file",
        )
    seen: dict[str, int] = {}
    out = []
    for index, raw in enumerate(names):
        name = "" if raw is None else str(raw)
        if not name.strip():
            raise InvalidDataset(
                f"Column {index + 1} of {filename!r} has no name; every column needs a name in the "
                f"{where} (a spreadsheet's index column or a trailing delimiter leaves one empty).",
                field="file",
                column=name,
            )
        if len(name) > MAX_NAME_LENGTH:
            raise InvalidDataset(
                f"Column {index + 1} of {filename!r} has a name of {len(name)} characters; names "
                f"may have at most {MAX_NAME_LENGTH}. Is the first line really a header?",
                field="file",
                column=name[:100],
            )
        if name in seen:
            raise InvalidDataset(
                f"{filename!r} has two columns named {name!r} (columns {seen[name] + 1} and "
                f"{index + 1}); column names must be unique. Rename one of them.",
                field="file",
                column=name,
            )
        seen[name] = index
        out.append(name)
    return out


# -- text -------------------------------------------------------------------------------------


def check_text(path: Path, filename: str) -> None:
    """:raises InvalidDataset: ``path`` is not UTF-8 text, naming the line and byte at fault."""
    lines = 0
    carry = b""
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK_BYTES), b""):
            data = carry + chunk
            carry = b""
            try:
                data.decode("utf-8")
            except UnicodeDecodeError as exc:
                if exc.reason == "unexpected end of data" and exc.start >= len(data) - 3:
                    carry, data = data[exc.start :], data[: exc.start]  # a character split by the chunk
                else:
                    _not_utf8(filename, data, exc.start, lines)
            if b"\x00" in data:
                _not_utf8(filename, data, data.index(b"\x00"), lines)
            lines += data.count(b"\n")
    if carry:
        _not_utf8(filename, carry, 0, lines)


def _not_utf8(filename: str, data: bytes, at: int, lines: int) -> NoReturn:
    line = lines + data.count(b"\n", 0, at) + 1
    column = at - (data.rfind(b"\n", 0, at) + 1) + 1
    raise InvalidDataset(
        f"{filename!r} is not UTF-8 text: byte {data[at]:#04x} at line {line}, byte {column} of the "
        "line. Save the file as UTF-8 (in Excel: CSV UTF-8; UTF-16 files hold zero bytes).",
        field="file",
        line=line,
    )


def _first_line(path: Path) -> str:
    with path.open("rb") as fh:
        head = fh.readline(HEAD_BYTES)
    return head.removeprefix(BOM).decode("utf-8", errors="ignore")


def sniff_delimiter(path: Path, filename: str) -> str:
    """Tab for .tsv; else the most frequent of comma, semicolon and tab in the header, outside quotes."""
    if Path(filename).suffix.lower() == ".tsv":
        return "\t"
    header = re.sub(r'"[^"]*"', "", _first_line(path))
    counts = [header.count(d) for d in DELIMITERS]
    return DELIMITERS[counts.index(max(counts))]  # a tie (no delimiter: one column) is a comma


CSV_LINE = re.compile(r"line (\d+)")
CSV_ROW = re.compile(r"starting at row (\d+)")


def read_csv(path: Path, filename: str) -> pd.DataFrame:
    check_text(path, filename)
    sep = sniff_delimiter(path, filename)
    options: dict[str, Any] = {"sep": sep, "encoding": "utf-8-sig", "engine": "c"}
    try:
        # The header as written: pandas renames duplicates ('a', 'a.1') and fills empty names.
        raw = pd.read_csv(
            path, header=None, nrows=1, dtype=str, keep_default_na=False, na_filter=False, **options
        )
        check_columns(list(raw.iloc[0]), filename)
        return pd.read_csv(path, header=0, low_memory=False, **options)
    except pd.errors.EmptyDataError as exc:
        raise InvalidDataset(
            f"{filename!r} is empty; expected CSV with a header row naming the columns, then rows.",
            field="file",
        ) from exc
    except pd.errors.ParserError as exc:
        raise _csv_error(filename, sep, exc) from exc


def _csv_error(filename: str, sep: str, exc: pd.errors.ParserError) -> InvalidDataset:
    message = str(exc).replace("Error tokenizing data. C error: ", "").strip()
    found = CSV_LINE.search(message)
    line = int(found[1]) if found else None
    started = CSV_ROW.search(message)  # counts the header as row 0
    if started:
        line = int(started[1]) + 1
    where = f" at line {line}" if line else ""
    extra: dict[str, Any] = {"line": line} if line else {}
    return InvalidDataset(
        f"{filename!r} is not valid CSV{where}: {message}. Expected {sep!r}-separated fields, "
        "as many in each line as in the header, with quotes closed.",
        field="file",
        **extra,
    )


# -- JSON ---------------------------------------------------------------------------------------

SPLIT_KEYS = ({"columns", "data"}, {"columns", "data", "index"})
JSON_SHAPES = (
    'records [{"col": value, ...}, ...], {"columns": [...], "data": [[...], ...]}, '
    '{"col": [values], ...}, or one object per line (JSON lines)'
)


def _json_error(filename: str, exc: orjson.JSONDecodeError, line: int | None = None) -> InvalidDataset:
    line = exc.lineno if line is None else line
    return InvalidDataset(
        f"{filename!r} is not valid JSON at line {line}, column {exc.colno}: {exc.msg}.",
        field="file",
        line=line,
    )


def read_json(path: Path, filename: str, lines: bool) -> pd.DataFrame:
    check_text(path, filename)
    data = path.read_bytes().removeprefix(BOM)
    if not lines:
        first, _, rest = data.lstrip().partition(b"\n")
        lines = first.strip().startswith(b"{") and bool(rest.strip()) and _is_object(first)
    if lines:
        return _records(list(_json_lines(data, filename)), filename, "line")
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise _json_error(filename, exc) from exc
    if isinstance(value, list):
        return _records(value, filename, "item")
    if isinstance(value, dict):
        if set(value) in SPLIT_KEYS:
            return _split(value, filename)
        if value and all(isinstance(v, list) for v in value.values()):
            return _columns(value, filename)
        if not any(isinstance(v, list) for v in value.values()):
            return _records([value], filename, "item")
    raise InvalidDataset(
        f"{filename!r} holds JSON {type(value).__name__} {show(value)}, not a table; expected {JSON_SHAPES}.",
        field="file",
    )


def _is_object(line: bytes) -> bool:
    try:
        return isinstance(orjson.loads(line), dict)
    except orjson.JSONDecodeError:
        return False


def _json_lines(data: bytes, filename: str) -> Iterator[tuple[int, Any]]:
    for number, line in enumerate(data.split(b"\n"), start=1):
        if line.strip():
            try:
                yield number, orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise _json_error(filename, exc, line=number) from exc


def _records(items: list[Any], filename: str, unit: Literal["item", "line"]) -> pd.DataFrame:
    """Records from a JSON array (``unit="item"``) or from JSON lines (``(line, value)`` pairs)."""
    keys: dict[str, None] = {}
    records = []
    for index, item in enumerate(items):
        line, record = item if unit == "line" else (None, item)
        if not isinstance(record, dict):
            where = f"line {line}" if line else f"item {index}"
            raise InvalidDataset(
                f"{where.capitalize()} of {filename!r} is JSON {type(record).__name__} {show(record)}; "
                f"expected an object of column values, as in {JSON_SHAPES}.",
                field="file",
                row=index,
                **({"line": line} if line else {}),
            )
        keys.update(dict.fromkeys(record))
        if len(keys) > MAX_COLUMNS:
            check_columns(list(keys), filename, where="records")
        records.append(record)
    names = check_columns(list(keys), filename, where="records")
    return pd.DataFrame.from_records(records, columns=names) if records else pd.DataFrame(columns=names)


def _split(value: dict[str, Any], filename: str) -> pd.DataFrame:
    columns, data = value["columns"], value["data"]
    if not isinstance(columns, list) or not isinstance(data, list):
        raise InvalidDataset(
            f'In {filename!r}, "columns" and "data" must be arrays; got {type(columns).__name__} '
            f"and {type(data).__name__}.",
            field="file",
        )
    names = check_columns(columns, filename, where='"columns" array')
    for row, values in enumerate(data):
        if not isinstance(values, list) or len(values) != len(names):
            got = f"{len(values)} values" if isinstance(values, list) else f"{type(values).__name__}"
            raise InvalidDataset(
                f'Row {row} of "data" in {filename!r} has {got}; expected an array of '
                f"{len(names)} values, one per column.",
                field="file",
                row=row,
            )
    return pd.DataFrame(data, columns=names)


def _columns(value: dict[str, list[Any]], filename: str) -> pd.DataFrame:
    names = check_columns(list(value), filename, where="object")
    lengths = {len(v) for v in value.values()}
    if len(lengths) > 1:
        sizes = ", ".join(f"{name!r}: {len(v)}" for name, v in list(value.items())[:6])
        raise InvalidDataset(
            f"The columns of {filename!r} have different lengths ({sizes}); each array must hold "
            "one value per row.",
            field="file",
        )
    return pd.DataFrame(dict(zip(names, value.values(), strict=True)))


# -- binary formats ---------------------------------------------------------------------------


def read_xlsx(path: Path, filename: str, max_unzipped: int) -> pd.DataFrame:
    import openpyxl

    with zipfile.ZipFile(path) as archive:
        members = archive.infolist()
    inside = {member.filename for member in members}
    if "xl/workbook.xml" not in inside:
        what = "a binary .xlsb workbook" if "xl/workbook.bin" in inside else "a zip archive"
        raise InvalidDataset(
            f"{filename!r} is {what}, not an .xlsx workbook; save it from Excel as .xlsx, or upload "
            f"{SUPPORTED}.",
            field="file",
        )
    unzipped = sum(member.file_size for member in members)
    if unzipped > max_unzipped:
        raise ContentTooLarge(
            f"{filename!r} unzips to {unzipped} bytes; wharf reads workbooks of at most "
            f"{max_unzipped} bytes unzipped. Export the sheet as CSV or Parquet.",
            field="file",
        )
    with path.open("rb") as fh:  # a file, not a path: openpyxl refuses names without .xlsx
        workbook = openpyxl.load_workbook(fh, read_only=True, data_only=True)
        try:
            names, data = _sheet_rows(workbook, filename)
        finally:
            workbook.close()
    return pd.DataFrame.from_records(data, columns=names) if data else pd.DataFrame(columns=names)


def _sheet_rows(workbook: Any, filename: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    """The first sheet's column names (its first row) and its rows that hold a value."""
    from openpyxl.utils import get_column_letter

    if not workbook.worksheets:
        raise InvalidDataset(f"{filename!r} has no worksheet.", field="file")
    sheet = workbook.worksheets[0]
    sheet.reset_dimensions()  # trust the cells, not the size the file declares
    rows = sheet.iter_rows(values_only=True)
    header = list(next(rows, ()))
    while header and header[-1] is None:
        header.pop()
    names = check_columns(header, filename, where=f"first row of sheet {sheet.title!r}")
    width = len(names)
    data = []
    for number, values in enumerate(rows, start=2):
        beyond = [i for i, v in enumerate(values[width:], start=width) if v is not None]
        if beyond:
            cell = f"{get_column_letter(beyond[0] + 1)}{number}"
            raise InvalidDataset(
                f"Cell {cell} of sheet {sheet.title!r} in {filename!r} holds a value, but its "
                "column has no name in the first row; name the column or clear the cell.",
                field="file",
                cell=cell,
            )
        if any(v is not None for v in values):
            data.append(tuple(values[:width]) + (None,) * (width - len(values)))
    return names, data


def read_parquet(path: Path, filename: str) -> pd.DataFrame:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pq.read_schema(path)
    check_columns(schema.names, filename, where="schema")
    for field in schema:
        if pa.types.is_nested(field.type):
            raise InvalidDataset(
                f"Column {field.name!r} of {filename!r} has the nested type {field.type}; a dataset "
                "is a flat table of numbers, text, booleans and dates.",
                field="file",
                column=field.name,
            )
    frame = pq.read_table(path).to_pandas()
    if any(name is not None for name in frame.index.names):
        frame = frame.reset_index()  # a named index is data (an id, a date)
    return frame

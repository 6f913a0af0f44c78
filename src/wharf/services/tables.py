"""Reading uploaded files into tables: which format a file is, and what a table must be.

The format comes from the file name's extension, checked against the content (an ``.xlsx`` that is
really CSV text is refused, not guessed at), or from the content alone when the extension says
nothing; :mod:`wharf.services.readers` reads each format. Every refusal is an
:class:`~wharf.errors.InvalidDataset` (or a :class:`~wharf.errors.ContentTooLarge` for a limit)
naming the file and, where a parser can say, the line, cell, row or column at fault. The readers'
own exceptions stop here.

A table that comes out has string column names that are non-empty, unique and at most
:data:`~wharf.services.readers.MAX_COLUMNS` in number, at least one row, and columns of one type
each that Parquet can store: mixed columns become strings, and nested values (JSON objects or
arrays) are refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pandas as pd

from wharf.errors import InvalidDataset, WharfError
from wharf.services import readers
from wharf.services.decoding import show
from wharf.services.readers import BOM, HEAD_BYTES, SUPPORTED, XLSX_EXPANSION, check_columns

Format = Literal["csv", "json", "jsonl", "xlsx", "parquet"]
FORMATS: tuple[Format, ...] = ("csv", "json", "jsonl", "xlsx", "parquet")
EXTENSIONS: dict[str, Format] = {
    ".csv": "csv",
    ".tsv": "csv",
    ".txt": "csv",
    ".json": "json",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".xlsx": "xlsx",
    ".xlsm": "xlsx",
    ".parquet": "parquet",
    ".pq": "parquet",
}
EXCEL_EXTENSIONS = frozenset({".xlsx", ".xlsm", ".xls", ".xlsb"})
"""Names that claim an Excel workbook: the content must be an .xlsx one."""

MAGIC = {
    b"PAR1": "parquet",
    b"PK\x03\x04": "zip",
    b"\xd0\xcf\x11\xe0": "ole2",
    b"\x1f\x8b": "gzip",
    b"\xff\xfe": "utf16",
    b"\xfe\xff": "utf16",
}
DESCRIBED = {
    "parquet": "a Parquet file",
    "zip": "a zip archive (an .xlsx workbook is one)",
    "ole2": "an Excel 97-2003 (.xls) workbook",
    "gzip": "a gzip-compressed file",
    "utf16": "UTF-16 text (save it as UTF-8)",
    "binary": "binary data",
    "text": "text (CSV or JSON?)",
}


def _content(head: bytes) -> str:
    for magic, kind in MAGIC.items():
        if head.startswith(magic):
            return kind
    return "binary" if b"\x00" in head else "text"


def detect_format(path: Path, filename: str) -> Format:
    """The format of ``path``, uploaded as ``filename``.

    :raises InvalidDataset: the name and the content disagree, or neither is a supported format.
    """
    with path.open("rb") as fh:
        head = fh.read(HEAD_BYTES)
    content = _content(head)
    suffix = Path(filename).suffix.lower()
    named = EXTENSIONS.get(suffix)
    if suffix in EXCEL_EXTENSIONS and content != "zip":
        hint = "rename it to .csv" if content == "text" else "open it in Excel and save it as .xlsx"
        raise InvalidDataset(
            f"{filename!r} is named as an Excel workbook but is {DESCRIBED[content]}, not an .xlsx "
            f"workbook (a zip archive); {hint}, or upload it as {SUPPORTED}.",
            field="file",
        )
    if named == "parquet" and content != "parquet":
        raise InvalidDataset(
            f"{filename!r} is named as Parquet but is {DESCRIBED[content]}: a Parquet file starts "
            f"with the bytes 'PAR1'. Upload it under the name of its real format: {SUPPORTED}.",
            field="file",
        )
    if named in ("csv", "json", "jsonl") and content != "text":
        raise InvalidDataset(
            f"{filename!r} is named as {named.upper()} text but is {DESCRIBED[content]}; upload it "
            f"under the name of its real format ({SUPPORTED}).",
            field="file",
        )
    if named is not None:
        return named
    if content == "parquet":
        return "parquet"
    if content == "zip" or suffix in EXCEL_EXTENSIONS:
        return "xlsx"
    if content == "text":
        first = head.removeprefix(BOM).lstrip()[:1]
        return "json" if first in (b"[", b"{") else "csv"
    hint = " Decompress it first." if content == "gzip" else ""
    raise InvalidDataset(
        f"{filename!r} is {DESCRIBED[content]}, which is not a table format wharf reads; upload "
        f"{SUPPORTED}.{hint}",
        field="file",
    )


def read_table(path: Path, filename: str, fmt: Format, max_bytes: int) -> pd.DataFrame:
    """The table in ``path`` (a file of ``fmt``, uploaded as ``filename``), checked and normalized.

    :param max_bytes: the upload limit; an .xlsx workbook may unzip to :data:`XLSX_EXPANSION` times it.
    :raises InvalidDataset: the file does not parse, has no columns or rows, empty or duplicate
        column names, or values Parquet cannot store.
    :raises ContentTooLarge: over :data:`MAX_COLUMNS` columns, or an .xlsx that unzips too large.
    """
    try:
        if fmt == "csv":
            frame = readers.read_csv(path, filename)
        elif fmt in ("json", "jsonl"):
            frame = readers.read_json(path, filename, lines=fmt == "jsonl")
        elif fmt == "xlsx":
            frame = readers.read_xlsx(path, filename, max_bytes * XLSX_EXPANSION)
        else:
            frame = readers.read_parquet(path, filename)
    except (WharfError, MemoryError):
        raise
    except Exception as exc:
        # The readers (pandas, openpyxl, pyarrow, zipfile) raise many types on malformed input;
        # each is a fault of the file, said in the reader's words without this server's paths.
        message = str(exc).replace(str(path), filename).strip() or type(exc).__name__
        raise InvalidDataset(
            f"{filename!r} could not be read as {fmt}: {message[:300]}. Check that it is a "
            f"valid {fmt} file, or upload it as {SUPPORTED}.",
            field="file",
        ) from exc
    return normalize(frame, filename)


def normalize(frame: pd.DataFrame, filename: str) -> pd.DataFrame:
    """``frame`` with checked string column names, rows, and one Parquet-storable type per column."""
    frame.columns = pd.Index(check_columns(list(frame.columns), filename), dtype=object)
    if frame.empty:
        raise InvalidDataset(
            f"{filename!r} has columns ({show(list(frame.columns))}) but no rows; a dataset needs "
            "at least one row of data.",
            field="file",
        )
    frame = frame.reset_index(drop=True)
    for name in frame.columns:
        series = frame[name]
        if isinstance(series.dtype, pd.StringDtype):  # one representation of text: object, None
            frame[name] = series.astype(object).where(series.notna(), None)
            continue
        if series.dtype != object:
            continue
        kind = pd.api.types.infer_dtype(series, skipna=True)
        if kind in ("string", "empty", "boolean", "datetime", "date", "time", "floating"):
            continue
        if kind == "bytes":
            frame[name] = _decoded(series, name, filename)
        elif kind in ("decimal", "mixed-integer-float"):
            frame[name] = series.astype(float)
        elif kind == "integer":
            frame[name] = _integers(series, name, filename)
        else:  # mixed types: numbers next to text, say; kept exactly, as text
            _refuse_nested(series, name, filename)
            frame[name] = series.map(lambda v: v if v is None or v != v else str(v)).astype(object)
    return frame


def _refuse_nested(series: pd.Series, name: str, filename: str) -> None:
    nested = series.map(lambda v: isinstance(v, dict | list | tuple | set))
    if nested.any():
        row = int(nested.to_numpy().argmax())
        value = series.iloc[row]
        raise InvalidDataset(
            f"Column {name!r} of {filename!r} holds {type(value).__name__} {show(value)} in row "
            f"{row}; a dataset is a flat table of numbers, text, booleans and dates. Flatten the "
            "nested values into columns of their own.",
            field="file",
            row=row,
            column=name,
        )


def _integers(series: pd.Series, name: str, filename: str) -> pd.Series:
    try:
        return series.astype("Int64")
    except (OverflowError, TypeError, ValueError) as exc:
        raise InvalidDataset(
            f"Column {name!r} of {filename!r} holds integers outside the 64-bit range; store "
            "them as text (quoted) or as decimals.",
            field="file",
            column=name,
        ) from exc


def _decoded(series: pd.Series, name: str, filename: str) -> pd.Series:
    try:
        return series.map(lambda v: v.decode("utf-8") if isinstance(v, bytes) else v)
    except UnicodeDecodeError as exc:
        raise InvalidDataset(
            f"Column {name!r} of {filename!r} holds binary values that are not UTF-8 text; "
            "a dataset's columns hold numbers, text, booleans and dates.",
            field="file",
            column=name,
        ) from exc

"""Request bodies to :class:`~wharf.batch.Batch`, checked against a signature.

A :class:`Decoder` is compiled once per version. It accepts the request formats users already send:

- wharf / TF-Serving rows: ``{"instances": [{"col": v, ...}, ...]}`` or ``[[v, ...], ...]``;
- columns (Open Inference-style): ``{"inputs": {"col": [v, ...], ...}}``;
- MLflow: ``{"dataframe_split": {"columns": [...], "data": [[...]]}}`` and ``{"dataframe_records": [...]}``;
- ``text/csv`` with a header row.

Every column numeric and rows as lists: :meth:`Decoder.decode_plain` parses such a body straight
from its bytes into one float array (:mod:`wharf.services.numericrows`); parsed, such rows are one
``numpy.asarray`` call. The slow per-cell scans run only to say precisely which row and column is
wrong.
"""

from __future__ import annotations

import csv
import io
import math
import reprlib
from collections.abc import Sequence
from operator import itemgetter
from typing import Any, NoReturn

import numpy as np
import orjson

from wharf.batch import Batch
from wharf.errors import ContentTooLarge, InvalidInput, MalformedBody, suggest
from wharf.services.numericrows import plain_rows
from wharf.signature import Column, Signature

ROW_KEYS = ("instances", "dataframe_records")
ENVELOPE_KEYS = frozenset({"instances", "inputs", "dataframe_split", "dataframe_records"})
OPTION_KEYS = frozenset({"return", "parameters", "params", "id"})
RETURNABLE = ("predictions", "probabilities")
TEXT_MISSING = frozenset({"", "nan", "na", "null"})
INT64_BOUND = 2.0**63
"""Floats at or beyond this magnitude do not fit an int64 column and stay floats."""

# Client values are echoed in messages through this, never through repr(): a bounded depth and
# length, so a hostile value (a list nested a thousand deep, a megabyte string) cannot blow up.
_REPR = reprlib.Repr()
_REPR.maxlevel = 3
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = 6
_REPR.maxstring = _REPR.maxother = 60


def parse_json(data: bytes, field: str = "body") -> Any:
    """The parsed JSON of ``data``; :raises MalformedBody: naming ``field`` when it does not parse."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        what = "The body" if field == "body" else f"{field!r}"
        raise MalformedBody(
            f"{what} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}.",
            field=field,
        ) from exc


def show(value: Any) -> str:
    """A short, depth-bounded ``repr`` of a client value, for messages."""
    return _REPR.repr(value)


def _preview(names: Sequence[str], limit: int = 8) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


class Decoder:
    """Turns parsed request bodies into batches for one signature.

    :param signature: the version's signature.
    :param max_rows: most rows accepted in one request.
    """

    def __init__(self, signature: Signature, max_rows: int) -> None:
        self.signature = signature
        self.max_rows = max_rows
        self.columns = signature.inputs
        self.names = signature.names
        self.name_set = frozenset(self.names)
        self._getter = itemgetter(*self.names)
        self.numeric = signature.numeric
        self.nullable = any(c.nullable for c in self.columns)
        self.bool_index = [j for j, c in enumerate(self.columns) if c.dtype == "bool"]

    # -- envelopes ---------------------------------------------------------------------------

    def decode_plain(self, data: bytes) -> Batch | None:
        """The rows of a body that holds nothing but numeric rows in signature order,
        ``{"instances": [[...], ...]}`` or ``{"inputs": [[...], ...]}``, parsed straight into one
        float array (:mod:`wharf.services.numericrows`).

        :returns: the batch :meth:`decode` would return for the parsed body, or ``None`` when the
            body is anything else (another shape, another key, a value that is not a number, a row
            of another length, invalid JSON): :meth:`decode` then takes it and says what is wrong.
        """
        if not self.numeric:
            return None
        array = plain_rows(data, len(self.names), self.max_rows)
        if array is None or not self._fits(array):
            return None
        return Batch(self.names, array=array)

    def decode(self, body: Any) -> Batch:
        """Decode a parsed JSON body.

        :raises MalformedBody: the envelope is not one of the accepted shapes.
        :raises InvalidInput: a row or value does not fit the signature.
        :raises ContentTooLarge: more rows than ``max_rows``.
        """
        if not isinstance(body, dict):
            raise MalformedBody(
                f"Expected a JSON object with one of 'instances', 'inputs' or 'dataframe_split', "
                f"got a JSON {type(body).__name__}.",
                field="body",
            )
        present = [key for key in body if key in ENVELOPE_KEYS]
        unknown = [key for key in body if key not in ENVELOPE_KEYS and key not in OPTION_KEYS]
        if unknown:
            key = unknown[0]
            raise MalformedBody(
                f"Unknown field {show(key)} in the request body; expected one of 'instances', "
                f"'inputs', 'dataframe_split', 'dataframe_records' and optionally 'return'."
                + suggest(key, sorted(ENVELOPE_KEYS | OPTION_KEYS)),
                field=key,
            )
        if len(present) != 1:
            got = "none" if not present else " and ".join(repr(k) for k in present)
            raise MalformedBody(
                "The body must carry exactly one of 'instances', 'inputs', 'dataframe_split' "
                f"or 'dataframe_records'; got {got}.",
                field="body",
            )
        _check_return(body.get("return"))
        key = present[0]
        value = body[key]
        if key in ROW_KEYS:
            return self.decode_rows(value, field=key)
        if key == "inputs":
            if isinstance(value, list):
                return self.decode_rows(value, field=key)
            return self.decode_columns(value, field=key)
        return self.decode_split(value)

    def decode_split(self, value: Any) -> Batch:
        if not isinstance(value, dict) or not isinstance(value.get("columns"), list):
            raise MalformedBody(
                "'dataframe_split' must be an object with 'columns' (a list of names) and 'data' "
                "(a list of rows).",
                field="dataframe_split",
            )
        columns, data = value["columns"], value.get("data")
        for j, name in enumerate(columns):
            if not isinstance(name, str):
                raise InvalidInput(
                    f"Column names must be strings; 'dataframe_split.columns' item {j} is a "
                    f"{type(name).__name__} {show(name)}.",
                    field=f"dataframe_split.columns[{j}]",
                )
        if not isinstance(data, list):
            raise MalformedBody(
                f"'dataframe_split.data' must be a list of rows, got {type(data).__name__}.",
                field="dataframe_split.data",
            )
        self._check_names(columns, field="dataframe_split.columns", row=None)
        if columns == self.names:
            return self.decode_rows(data, field="dataframe_split.data")
        order = [columns.index(name) for name in self.names]
        self._check_count(len(data), "dataframe_split.data")
        for i, row in enumerate(data):
            self._check_list_row(row, i, "dataframe_split.data", width=len(columns))
        rows = [[row[j] for j in order] for row in data]
        return self.decode_rows(rows, field="dataframe_split.data")

    # -- rows --------------------------------------------------------------------------------

    def decode_rows(self, rows: Any, field: str) -> Batch:
        """Rows as lists in signature order, or as objects keyed by column."""
        if not isinstance(rows, list):
            raise MalformedBody(f"{field!r} must be a list of rows, got {type(rows).__name__}.", field=field)
        self._check_count(len(rows), field)
        if isinstance(rows[0], dict):
            rows = self._dict_rows_to_lists(rows, field)
        if self.numeric:
            return self._numeric_rows(rows, field)
        for i, row in enumerate(rows):
            self._check_list_row(row, i, field)
        columns = [list(values) for values in zip(*rows, strict=True)]
        return self._typed_columns(columns, field, rows_field=True)

    def _dict_rows_to_lists(self, rows: list[Any], field: str) -> list[list[Any]]:
        names = self.names
        # Fast path, C loops only: every row has exactly the columns (a row with n keys holding
        # all n names has no other key). Anything else takes the checks below.
        try:
            if set(map(len, rows)) == {len(names)}:
                values = list(map(self._getter, rows))
                return values if len(names) > 1 else [[v] for v in values]
        except (KeyError, TypeError):
            pass
        out = []
        for i, row in enumerate(rows):
            if not isinstance(row, dict):
                raise InvalidInput(
                    f"Row {i} is a {type(row).__name__}, but row 0 is an object; send every row "
                    "as an object keyed by column, or every row as a list in signature order.",
                    field=f"{field}[{i}]",
                    row=i,
                )
            self._check_names(list(row), field=f"{field}[{i}]", row=i, allow_missing_nullable=True)
            out.append([row.get(name) for name in names])
        return out

    def _check_list_row(self, row: Any, i: int, field: str, width: int | None = None) -> None:
        width = len(self.names) if width is None else width
        if not isinstance(row, list | tuple):  # tuples: object rows after the fast key lookup
            raise InvalidInput(
                f"Row {i} must be a list of {width} values or an object keyed by column, "
                f"got {type(row).__name__} {show(row)}.",
                field=f"{field}[{i}]",
                row=i,
            )
        if len(row) != width:
            raise InvalidInput(
                f"Row {i} has {len(row)} values, expected {width} (columns {_preview(self.names)}).",
                field=f"{field}[{i}]",
                row=i,
            )

    def _numeric_rows(self, rows: list[Any], field: str) -> Batch:
        try:
            array = np.asarray(rows)
        except (ValueError, TypeError):
            array = None
        if array is not None and array.ndim == 2 and array.shape[1] == len(self.names):
            if array.dtype.kind in "fiub":
                array = array.astype(np.float64, copy=False)
                if self._fits(array):
                    return Batch(self.names, array=array)
        # The slow path: per-cell checks that name the row and column at fault.
        for i, row in enumerate(rows):
            self._check_list_row(row, i, field)
        columns = [list(values) for values in zip(*rows, strict=True)]
        return self._typed_columns(columns, field, rows_field=True)

    def _fits(self, array: np.ndarray) -> bool:
        """Whether a float array of rows holds only values the columns take (no NaN where not
        nullable, only 0 and 1 in bool columns), so the per-cell checks can be skipped."""
        if not self.nullable and np.isnan(array).any():
            return False
        return not self.bool_index or bool(np.isin(array[:, self.bool_index], (0.0, 1.0)).all())

    # -- columns -----------------------------------------------------------------------------

    def decode_columns(self, value: Any, field: str) -> Batch:
        """Columns: ``{"col": [v, ...], ...}``, every list the same length."""
        if not isinstance(value, dict):
            raise MalformedBody(
                f"{field!r} must be an object mapping each column to a list of values, "
                f"got {type(value).__name__}.",
                field=field,
            )
        self._check_names(list(value), field=field, row=None, allow_missing_nullable=True)
        lengths = {name: len(v) for name, v in value.items() if isinstance(v, list)}
        for name, values in value.items():
            if not isinstance(values, list):
                raise InvalidInput(
                    f"Column {name!r} must be a list of values, got {type(values).__name__}.",
                    field=f"{field}.{name}",
                    column=name,
                )
        n_rows = max(lengths.values(), default=0)
        self._check_count(n_rows, field)
        for name, length in lengths.items():
            if length != n_rows:
                raise InvalidInput(
                    f"Column {name!r} has {length} values but other columns have {n_rows}; "
                    "every column must have one value per row.",
                    field=f"{field}.{name}",
                    column=name,
                )
        columns = [value.get(name, [None] * n_rows) for name in self.names]
        return self._typed_columns(columns, field, rows_field=False)

    def decode_csv(self, data: bytes) -> Batch:
        """A CSV document whose header names the columns."""
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise MalformedBody(
                f"The CSV body is not UTF-8: byte {exc.start} cannot be decoded.", field="body"
            ) from exc
        try:
            records = list(csv.reader(io.StringIO(text)))
        except csv.Error as exc:
            raise MalformedBody(f"The CSV body does not parse: {exc}.", field="body") from exc
        records = [r for r in records if r]
        if not records:
            raise InvalidInput("The CSV body is empty; send a header row and at least one row.", field="body")
        header, rows = records[0], records[1:]
        self._check_names(header, field="header", row=None, allow_missing_nullable=True)
        self._check_count(len(rows), "body")
        for i, row in enumerate(rows):
            if len(row) != len(header):
                raise InvalidInput(
                    f"CSV row {i} has {len(row)} cells, the header has {len(header)}.",
                    field=f"body[{i}]",
                    row=i,
                )
        index = {name: j for j, name in enumerate(header)}
        columns: list[list[Any]] = []
        for name in self.names:
            j = index.get(name)
            columns.append([None] * len(rows) if j is None else [row[j] for row in rows])
        return self._typed_columns(columns, "body", rows_field=True, from_text=True)

    # -- checks and conversion ----------------------------------------------------------------

    def _check_count(self, n_rows: int, field: str) -> None:
        if n_rows == 0:
            raise InvalidInput(f"{field!r} holds no rows; send at least one.", field=field)
        if n_rows > self.max_rows:
            raise ContentTooLarge(
                f"{n_rows} rows in one request; the limit is {self.max_rows}. Split the request "
                "or raise WHARF_MAX_ROWS.",
                field=field,
            )

    def _check_names(
        self, names: list[Any], field: str, row: int | None, allow_missing_nullable: bool = False
    ) -> None:
        given = set(names)
        for name in names:
            if name not in self.name_set:
                raise InvalidInput(
                    f"Unknown column {show(name)}; the model takes {_preview(self.names)}."
                    + suggest(str(name), self.names),
                    field=field if row is None else f"{field}.{name}",
                    row=row,
                    column=str(name),
                )
        if len(given) != len(names):
            dup = next(n for n in names if names.count(n) > 1)
            raise InvalidInput(f"Column {dup!r} is given twice.", field=field, row=row, column=str(dup))
        for column in self.columns:
            if column.name not in given and not (allow_missing_nullable and column.nullable):
                raise InvalidInput(
                    f"Missing column {column.name!r} ({column.dtype}); the model takes "
                    f"{_preview(self.names)}.",
                    field=field,
                    row=row,
                    column=column.name,
                )

    def _typed_columns(
        self, columns: list[list[Any]], field: str, rows_field: bool, from_text: bool = False
    ) -> Batch:
        arrays = [
            _convert(values, column, field, rows_field, from_text)
            for values, column in zip(columns, self.columns, strict=True)
        ]
        if self.numeric:
            return Batch(self.names, array=np.column_stack(arrays).astype(np.float64, copy=False))
        return Batch(self.names, columns=arrays)


def _where(field: str, column: Column, i: int, rows_field: bool) -> str:
    return f"{field}[{i}].{column.name}" if rows_field else f"{field}.{column.name}[{i}]"


def _check_return(wanted: Any) -> None:
    """:raises MalformedBody: ``wanted`` (the body's ``"return"``) is not a list drawn from RETURNABLE."""
    if wanted is None:
        return
    expected = f"'return' must be a list drawn from {list(RETURNABLE)}"
    items = [wanted] if isinstance(wanted, str) else wanted
    if not isinstance(items, list):
        raise MalformedBody(f"{expected}, got {type(wanted).__name__} {show(wanted)}.", field="return")
    for item in items:
        if not isinstance(item, str) or item not in RETURNABLE:
            hint = suggest(item, RETURNABLE) if isinstance(item, str) else ""
            raise MalformedBody(f"{expected}, got {show(item)} in it." + hint, field="return")


def _missing(value: Any, from_text: bool) -> bool:
    if value is None:
        return True
    if from_text:
        return value.strip().lower() in TEXT_MISSING
    return isinstance(value, float) and math.isnan(value)


def _missing_error(column: Column, field: str, i: int, rows_field: bool) -> InvalidInput:
    return InvalidInput(
        f"Missing value (null or NaN) in column {column.name!r} at row {i}; this model "
        "cannot take missing values there. Fill it before sending.",
        field=_where(field, column, i, rows_field),
        row=i,
        column=column.name,
    )


def _convert(values: list[Any], column: Column, field: str, rows_field: bool, from_text: bool) -> np.ndarray:
    """One column's values as a typed 1-D array; raises :class:`InvalidInput` naming the cell."""
    for i, value in enumerate(values):
        if _missing(value, from_text):
            if not column.nullable:
                raise _missing_error(column, field, i, rows_field)
            values[i] = None
    if column.dtype == "string":
        for i, value in enumerate(values):
            if value is not None and not isinstance(value, str):
                if isinstance(value, bool | int | float):
                    values[i] = str(value)
                else:
                    _bad(value, column, field, i, rows_field, "a string")
        return np.asarray(values, dtype=object)
    if column.dtype == "bool":
        out = []
        for i, value in enumerate(values):
            if isinstance(value, bool) or value is None:
                out.append(value)
            elif from_text and value.lower() in {"true", "false", "1", "0"}:
                out.append(value.lower() in {"true", "1"})
            elif isinstance(value, int) and value in (0, 1):
                out.append(bool(value))
            else:
                _bad(value, column, field, i, rows_field, "true or false")
        return np.asarray(out, dtype=object if None in out else bool)
    floats = []
    for i, value in enumerate(values):
        if value is None:
            floats.append(math.nan)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            floats.append(value)
        elif isinstance(value, bool):
            floats.append(float(value))
        elif from_text:
            # JSON cannot carry NaN or infinity; text gets no more than JSON does ("+nan" is
            # missing like "nan", "inf" and "1e999" are refused as JSON refuses them).
            try:
                number = float(value)
            except ValueError:
                _bad(value, column, field, i, rows_field, "a number")
            if math.isnan(number):
                if not column.nullable:
                    raise _missing_error(column, field, i, rows_field)
            elif math.isinf(number):
                _bad(value, column, field, i, rows_field, "a finite number")
            floats.append(number)
        else:
            _bad(value, column, field, i, rows_field, "a number")
    array = np.asarray(floats, dtype=np.float64)
    if column.dtype.startswith("int") and not column.nullable and (np.abs(array) < INT64_BOUND).all():
        integral = array.astype(np.int64)
        if np.array_equal(integral, array):
            return integral
    return array


def _bad(value: Any, column: Column, field: str, i: int, rows_field: bool, expected: str) -> NoReturn:
    raise InvalidInput(
        f"Column {column.name!r} takes {expected} ({column.dtype}), got {show(value)} at row {i}.",
        field=_where(field, column, i, rows_field),
        row=i,
        column=column.name,
    )

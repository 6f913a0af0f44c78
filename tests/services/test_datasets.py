"""Datasets: every format read into the same table, stored once, profiled; every refusal clear and
leaving nothing behind."""

from __future__ import annotations

import gzip
import io
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from openpyxl import Workbook

from wharf.errors import ContentTooLarge, DatasetNotFound, InvalidDataset, InvalidInput, WharfError
from wharf.services import tables
from wharf.services.datasets import MAX_PROFILE_STRING, Datasets
from wharf.services.profiling import profile_frame
from wharf.services.readers import MAX_COLUMNS
from wharf.storage import MetadataStore
from wharf.storage.artifacts import LocalArtifactStore

TABLE = pd.DataFrame(
    {
        "area": [50.5, 80.0, None, 120.25],
        "rooms": [1, 2, 3, 4],
        "city": ["paris", "lyon", None, "paris"],
        "garden": [True, False, True, False],
        "review": ["a nice flat indeed", "too small for us", "very bright and calm", "near the station"],
        "listed": ["2024-01-02", "2024-02-03", "2024-03-04", None],
    }
)
MAX_BYTES = 2 << 20


def excel(rows: list[list[Any]], sheets: int = 1) -> bytes:
    workbook = Workbook()
    for row in rows:
        workbook.active.append(row)
    for n in range(1, sheets):
        workbook.create_sheet(f"more{n}").append(["other", "sheet"])
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def parquet(table: pa.Table) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


def as_bytes(write: Callable[[io.BytesIO], Any]) -> bytes:
    buffer = io.BytesIO()
    write(buffer)
    return buffer.getvalue()


def jsonl(frame: pd.DataFrame) -> bytes:
    return frame.to_json(orient="records", lines=True).encode()


def columns_json(frame: pd.DataFrame) -> bytes:
    return orjson.dumps(frame.astype(object).where(frame.notna(), None).to_dict(orient="list"))


def xlsx_of(frame: pd.DataFrame) -> bytes:
    return as_bytes(lambda buffer: frame.to_excel(buffer, index=False))


FORMATS = {
    "csv": ("houses.csv", "csv", lambda: TABLE.to_csv(index=False).encode()),
    "csv-semicolon": ("houses.csv", "csv", lambda: TABLE.to_csv(index=False, sep=";").encode()),
    "csv-bom": ("houses.csv", "csv", lambda: b"\xef\xbb\xbf" + TABLE.to_csv(index=False).encode()),
    "tsv": ("houses.tsv", "csv", lambda: TABLE.to_csv(index=False, sep="\t").encode()),
    "csv-no-extension": ("houses", "csv", lambda: TABLE.to_csv(index=False).encode()),
    "json-records": ("houses.json", "json", lambda: TABLE.to_json(orient="records").encode()),
    "json-split": ("houses.json", "json", lambda: TABLE.to_json(orient="split", index=False).encode()),
    "json-columns": ("houses.json", "json", lambda: columns_json(TABLE)),
    "jsonl": ("houses.jsonl", "jsonl", lambda: jsonl(TABLE)),
    "ndjson": ("houses.ndjson", "jsonl", lambda: jsonl(TABLE)),
    "json-lines-named-json": ("houses.json", "json", lambda: jsonl(TABLE)),
    "xlsx": ("houses.xlsx", "xlsx", lambda: xlsx_of(TABLE)),
    "xlsx-no-extension": ("houses", "xlsx", lambda: xlsx_of(TABLE)),
    "parquet": ("houses.parquet", "parquet", lambda: TABLE.to_parquet(index=False)),
    "parquet-other-extension": ("houses.bin", "parquet", lambda: TABLE.to_parquet(index=False)),
}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[MetadataStore]:
    metadata = MetadataStore(f"sqlite:///{tmp_path / 'wharf.db'}")
    yield metadata
    metadata.close()


@pytest.fixture
def datasets(store: MetadataStore, tmp_path: Path) -> Datasets:
    (tmp_path / "scratch").mkdir()
    return Datasets(
        store, LocalArtifactStore(tmp_path / "artifacts"), MAX_BYTES, scratch=tmp_path / "scratch"
    )


@pytest.fixture
def upload(tmp_path: Path) -> Callable[[bytes], Path]:
    def write(data: bytes) -> Path:
        path = tmp_path / "upload"
        path.write_bytes(data)
        return path

    return write


def files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def assert_nothing_stored(datasets: Datasets, tmp_path: Path) -> None:
    assert datasets.list() == []
    assert files(tmp_path / "artifacts") == []
    assert list((tmp_path / "scratch").iterdir()) == []


@pytest.mark.parametrize("case", list(FORMATS))
def test_every_format_gives_the_same_table(
    datasets: Datasets, upload: Callable[[bytes], Path], case: str, tmp_path: Path
) -> None:
    filename, fmt, make = FORMATS[case]
    record = datasets.add(upload(make()), filename)
    assert record.created
    assert (record.name, record.filename, record.format) == ("houses", filename, fmt)
    assert (record.rows, record.columns) == (4, 6)

    stored = datasets.frame(record.id)
    pd.testing.assert_frame_equal(stored, TABLE, check_dtype=False)
    assert record.profile == profile_frame(stored)
    assert record.profile["columns"][0]["stats"]["mean"] == pytest.approx(TABLE["area"].mean())
    assert [c["kind"] for c in record.profile["columns"]] == [
        "numeric",
        "numeric",
        "categorical",
        "boolean",
        "text",
        "datetime",
    ]
    path = datasets.path(record.id)
    assert files(tmp_path / "artifacts") == [path]
    assert pq.read_table(path).num_rows == 4
    assert record.size == path.stat().st_size
    assert list((tmp_path / "scratch").iterdir()) == []


def zipped(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def split_json(columns: list[str], data: list[list[Any]]) -> bytes:
    return orjson.dumps({"columns": columns, "data": data})


NESTED = pa.table({"a": [1, 2], "tags": [["x"], ["y", "z"]]})
TWINS = pa.Table.from_arrays([pa.array([1, 2]), pa.array([3, 4])], names=["x", "x"])
EMPTY_PARQUET = pa.table({"a": pa.array([], pa.int64())})

REFUSALS: dict[str, tuple[str, Callable[[], bytes], str, dict[str, Any]]] = {
    # name: (filename, content, fragment of the detail, where the problem places the fault)
    "csv-duplicate": ("d.csv", lambda: b"a,b,a\n1,2,3\n", "two columns named 'a'", {"column": "a"}),
    "csv-empty-name": ("d.csv", lambda: b"a,,c\n1,2,3\n", "Column 2", {"column": ""}),
    "csv-index-column": ("d.csv", lambda: b",a\n0,1\n", "Column 1 of 'd.csv' has no name", {}),
    "csv-empty": ("d.csv", lambda: b"", "is empty", {}),
    "csv-blank-lines": ("d.csv", lambda: b"\n\n\n", "is empty", {}),
    "csv-header-only": ("d.csv", lambda: b"a,b\n", "but no rows", {}),
    "csv-ragged": ("d.csv", lambda: b"a,b\n1,2\n3,4,5\n", "at line 3", {"line": 3}),
    "csv-open-quote": ("d.csv", lambda: b'a,b\n1,2\n3,"4\n5,6\n', "at line 3", {"line": 3}),
    "csv-open-quote-in-header": ("d.csv", lambda: b'a,"b\n1,2\n', "at line 1", {"line": 1}),
    "csv-latin-1": ("d.csv", lambda: "a,b\n1,2\ncafé,3\n".encode("latin-1"), "not UTF-8", {"line": 3}),
    "csv-utf-16": ("d.csv", lambda: "a,b\n1,2\n".encode("utf-16"), "UTF-16 text", {}),
    "csv-nul-early": ("d.csv", lambda: b"a,b\n1,\x002\n", "is binary data", {}),
    "csv-nul-late": (
        "d.csv",
        lambda: b"a,b\n" + b"1,2\n" * 300_000 + b"3,\x00\n",
        "byte 0x00 at line 300002",
        {"line": 300_002},
    ),
    "csv-long-name": ("d.csv", lambda: b"a," + b"b" * 2000 + b"\n1,2\n", "2000 characters", {}),
    "xlsx-renamed-csv": ("d.xlsx", lambda: b"a,b\n1,2\n", "rename it to .csv", {}),
    "xls-97": ("d.xls", lambda: b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504), "Excel 97-2003", {}),
    "xlsx-other-zip": ("d.xlsx", lambda: zipped({"notes.txt": b"hello"}), "a zip archive, not an", {}),
    "xlsx-broken-zip": ("d.xlsx", lambda: b"PK\x03\x04" + b"x" * 100, "could not be read as xlsx", {}),
    "xlsx-broken-workbook": (
        "d.xlsx",
        lambda: zipped({"xl/workbook.xml": b"<nope"}),
        "could not be read",
        {},
    ),
    "xlsx-header-only": ("d.xlsx", lambda: excel([["a", "b"]]), "but no rows", {}),
    "xlsx-empty-sheet": ("d.xlsx", lambda: excel([], sheets=2), "no columns", {}),
    "xlsx-unnamed-cell": (
        "d.xlsx",
        lambda: excel([["a", "b"], [1, 2], [3, 4, None, 5]]),
        "D3",
        {"cell": "D3"},
    ),
    "xlsx-empty-name": ("d.xlsx", lambda: excel([["a", None, "c"], [1, 2, 3]]), "Column 2", {}),
    "xlsx-duplicate": (
        "d.xlsx",
        lambda: excel([["a", "a"], [1, 2]]),
        "two columns named 'a'",
        {"column": "a"},
    ),
    "parquet-renamed-csv": ("d.parquet", lambda: b"a,b\n1,2\n", "named as Parquet", {}),
    "parquet-broken": ("d.parquet", lambda: b"PAR1" + b"x" * 100, "could not be read as parquet", {}),
    "parquet-nested": ("d.parquet", lambda: parquet(NESTED), "nested type", {"column": "tags"}),
    "parquet-duplicate": ("d.parquet", lambda: parquet(TWINS), "two columns named 'x'", {"column": "x"}),
    "parquet-no-rows": ("d.parquet", lambda: parquet(EMPTY_PARQUET), "but no rows", {}),
    "json-syntax": ("d.json", lambda: b'[\n{"a": 1},\n{"a": }\n]', "line 3", {"line": 3}),
    "json-lists": ("d.json", lambda: b"[[1, 2], [3, 4]]", "Item 0", {"row": 0}),
    "json-scalar": ("d.json", lambda: b"42", "not a table", {}),
    "json-empty-array": ("d.json", lambda: b"[]", "no columns", {}),
    "json-empty-object": ("d.json", lambda: b"{}", "no columns", {}),
    "json-nested": ("d.json", lambda: b'[{"a": 1}, {"a": [1, 2]}]', "Flatten", {"row": 1, "column": "a"}),
    "json-nested-object": ("d.json", lambda: b'[{"a": {"b": 1}}]', "dict", {"row": 0, "column": "a"}),
    "json-huge-integers": ("d.json", lambda: b'[{"a": 18446744073709551615}, {"a": -1}]', "64-bit", {}),
    "json-empty-key": ("d.json", lambda: b'[{"": 1}]', "no name", {}),
    "json-split-duplicate": ("d.json", lambda: split_json(["a", "a"], [[1, 2]]), "two columns", {}),
    "json-split-short-row": ("d.json", lambda: split_json(["a", "b"], [[1, 2], [3]]), "Row 1", {"row": 1}),
    "json-split-not-arrays": ("d.json", lambda: b'{"columns": "a", "data": 1}', "must be arrays", {}),
    "json-column-lengths": ("d.json", lambda: b'{"a": [1, 2], "b": [1]}', "different lengths", {}),
    "json-mixed-object": ("d.json", lambda: b'{"a": [1, 2], "b": 1}', "not a table", {}),
    "jsonl-syntax": ("d.jsonl", lambda: b'{"a": 1}\n{"a": 2\n', "line 2", {"line": 2}),
    "jsonl-not-object": ("d.jsonl", lambda: b'{"a": 1}\n[1]\n', "Line 2", {"line": 2, "row": 1}),
    "jsonl-empty": ("d.jsonl", lambda: b"\n\n", "no columns", {}),
    "gzip": ("d.csv.gz", lambda: gzip.compress(b"a,b\n1,2\n"), "Decompress it first", {}),
    "binary": ("d.bin", lambda: bytes(range(256)), "binary data", {}),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_refusals_name_the_fault_and_store_nothing(
    datasets: Datasets, upload: Callable[[bytes], Path], tmp_path: Path, case: str
) -> None:
    filename, make, fragment, where = REFUSALS[case]
    with pytest.raises(InvalidDataset) as caught:
        datasets.add(upload(make()), filename)
    error = caught.value
    assert fragment in error.detail
    assert filename in error.detail
    assert str(tmp_path) not in error.detail  # no path of this server's
    assert error.field == "file"
    problem = error.to_problem()
    assert problem["status"] == 422
    assert {key: problem.get(key) for key in where} == where
    assert_nothing_stored(datasets, tmp_path)


@pytest.mark.parametrize(
    ("filename", "make", "fragment"),
    [
        (
            "wide.csv",
            lambda: ",".join(f"c{i}" for i in range(MAX_COLUMNS + 1)).encode() + b"\n",
            "10001 columns",
        ),
        ("wide.json", lambda: orjson.dumps([{f"c{i}": i} for i in range(MAX_COLUMNS + 1)]), "10001 columns"),
        ("big.csv", lambda: b"a\n" + b"1" * MAX_BYTES, "datasets may have at most"),
    ],
)
def test_limits_are_413(
    datasets: Datasets,
    upload: Callable[[bytes], Path],
    tmp_path: Path,
    filename: str,
    make: Any,
    fragment: str,
) -> None:
    with pytest.raises(ContentTooLarge, match=fragment) as caught:
        datasets.add(upload(make()), filename)
    assert caught.value.field == "file"
    assert_nothing_stored(datasets, tmp_path)


def test_a_workbook_that_unzips_too_large_is_refused(
    datasets: Datasets, upload: Callable[[bytes], Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = excel([["a"], ["x" * 50_000]])
    monkeypatch.setattr(tables, "XLSX_EXPANSION", 1)
    small = Datasets(datasets.metadata, datasets.artifacts, len(data) + 10, scratch=tmp_path / "scratch")
    with pytest.raises(ContentTooLarge, match="unzips to"):
        small.add(upload(data), "d.xlsx")
    assert_nothing_stored(datasets, tmp_path)


def test_the_same_table_is_stored_once(
    datasets: Datasets, upload: Callable[[bytes], Path], tmp_path: Path
) -> None:
    first = datasets.add(upload(TABLE.to_csv(index=False).encode()), "houses.csv")
    again = datasets.add(upload(TABLE.to_csv(index=False).encode()), "copy.csv", name="copy")
    assert (again.id, again.name, again.created) == (first.id, "houses", False)
    assert len(datasets.list()) == 1
    assert len(files(tmp_path / "artifacts")) == 1
    other = datasets.add(upload(TABLE.head(2).to_csv(index=False).encode()), "head.csv")
    assert other.created and other.id != first.id
    assert [r.id for r in datasets.list()] == [first.id, other.id]


def test_delete(datasets: Datasets, upload: Callable[[bytes], Path], tmp_path: Path) -> None:
    record = datasets.add(upload(TABLE.to_csv(index=False).encode()), "houses.csv")
    assert datasets.delete(record.id).id == record.id
    assert_nothing_stored(datasets, tmp_path)
    with pytest.raises(DatasetNotFound, match=f"No dataset with id {record.id}"):
        datasets.get(record.id)
    with pytest.raises(DatasetNotFound):
        datasets.delete(record.id)
    with pytest.raises(DatasetNotFound):
        datasets.frame(record.id)
    assert datasets.add(upload(TABLE.to_csv(index=False).encode()), "houses.csv").created  # stored again


@pytest.mark.parametrize("dataset_id", [0, -1, 7, 2**63 - 1, 2**63, 10**30])
def test_unknown_ids(datasets: Datasets, dataset_id: int) -> None:
    with pytest.raises(DatasetNotFound) as caught:
        datasets.get(dataset_id)
    assert caught.value.status == 404
    assert caught.value.slug == "dataset-not-found"


def test_a_failure_at_the_database_removes_the_artifact(
    datasets: Datasets, upload: Callable[[bytes], Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(**fields: Any) -> None:
        assert files(tmp_path / "artifacts")  # the artifact was written before the row
        raise RuntimeError("database gone")

    monkeypatch.setattr(datasets.table, "add", fail)
    with pytest.raises(RuntimeError, match="database gone"):
        datasets.add(upload(TABLE.to_csv(index=False).encode()), "houses.csv")
    assert_nothing_stored(datasets, tmp_path)


def test_a_missing_stored_table_is_a_clear_error(datasets: Datasets, upload: Callable[[bytes], Path]) -> None:
    record = datasets.add(upload(TABLE.to_csv(index=False).encode()), "houses.csv")
    datasets.path(record.id).unlink()
    with pytest.raises(WharfError, match="missing from the artifact store"):
        datasets.frame(record.id)


@pytest.mark.parametrize(
    ("filename", "name", "expected"),
    [
        ("houses.csv", None, ("houses", "houses.csv")),
        ("C:\\Users\\ana\\houses.csv", None, ("houses", "houses.csv")),
        ("../../etc/houses.csv", "  My houses  ", ("My houses", "houses.csv")),
        (".csv", None, (".csv", ".csv")),
        ("", None, ("upload", "upload")),
    ],
)
def test_names(
    datasets: Datasets,
    upload: Callable[[bytes], Path],
    filename: str,
    name: str | None,
    expected: tuple[str, str],
) -> None:
    record = datasets.add(upload(b"a,b\n1,2\n"), filename, name)
    assert (record.name, record.filename) == expected


@pytest.mark.parametrize("name", ["   ", "a\x00b", "tab\there", "x" * 257])
def test_bad_names(datasets: Datasets, upload: Callable[[bytes], Path], tmp_path: Path, name: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        datasets.add(upload(b"a,b\n1,2\n"), "d.csv", name)
    assert caught.value.field == "name"
    assert_nothing_stored(datasets, tmp_path)


def test_what_is_kept_and_what_is_changed(datasets: Datasets, upload: Callable[[bytes], Path]) -> None:
    """Mixed JSON columns become text, blank rows and trailing empty header cells of a sheet go,
    a quoted delimiter stays in its name, a named Parquet index becomes a column."""
    mixed = datasets.frame(datasets.add(upload(b'[{"a": 1, "b": 1}, {"a": "x", "b": true}]'), "m.json").id)
    assert mixed.to_dict(orient="list") == {"a": ["1", "x"], "b": ["1", "True"]}

    sheet = excel([["a", "b", None, None], [1, "x"], [None, None], [2, "y", None]])
    assert datasets.frame(datasets.add(upload(sheet), "s.xlsx").id).to_dict(orient="list") == {
        "a": [1, 2],
        "b": ["x", "y"],
    }

    quoted = datasets.frame(datasets.add(upload(b'"a;b",c\n1,2\n'), "q.csv").id)
    assert list(quoted.columns) == ["a;b", "c"]

    indexed = TABLE.set_index("rooms").to_parquet()
    assert "rooms" in datasets.frame(datasets.add(upload(indexed), "i.parquet").id).columns


def test_a_huge_cell_makes_a_small_profile(datasets: Datasets, upload: Callable[[bytes], Path]) -> None:
    cell = "x" * 2_000_000
    record = datasets.add(upload(f"id,blob\n1,{cell}\n2,short\n".encode()), "blob.csv")
    assert datasets.frame(record.id)["blob"].iloc[0] == cell
    blob = record.profile["columns"][1]
    assert blob["kind"] == "categorical"
    assert max(len(top["value"]) for top in blob["stats"]["top"]) == MAX_PROFILE_STRING
    assert len(orjson.dumps(record.profile)) < 10_000

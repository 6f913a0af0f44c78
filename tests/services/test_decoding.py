"""The decoder: every request format to the same batch, and every bad input to an error that
names its place. No Flask here: the decoder is a plain object."""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import hypothesis
import numpy as np
import orjson
import pytest
from hypothesis import strategies as st

from wharf.batch import Batch
from wharf.errors import ContentTooLarge, InvalidInput, MalformedBody, WharfError, suggest
from wharf.services.decoding import Decoder, show
from wharf.services.numericrows import Parsers
from wharf.signature import Column, Signature

NUMERIC = Signature(
    inputs=[
        Column(name="x", dtype="float64"),
        Column(name="n", dtype="int64"),
        Column(name="flag", dtype="bool"),
    ]
)
MIXED = Signature(
    inputs=[
        Column(name="x", dtype="float64"),
        Column(name="n", dtype="int64"),
        Column(name="city", dtype="string"),
        Column(name="flag", dtype="bool"),
        Column(name="opt", dtype="float64", nullable=True),
    ]
)
NULLABLE_TEXT = Signature(inputs=[Column(name="x"), Column(name="note", dtype="string", nullable=True)])

NUMERIC_ROWS = [
    {"x": 1.5, "n": 2, "flag": True},
    {"x": -3.0, "n": 0, "flag": False},
    {"x": 0.25, "n": 7, "flag": True},
]
MIXED_ROWS = [
    {"x": 1.5, "n": 2, "city": "paris", "flag": True, "opt": 0.5},
    {"x": -3.0, "n": 0, "city": "nice", "flag": False, "opt": None},
]


def formats(signature: Signature, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """``rows`` in every JSON envelope, columns of the split in reverse order."""
    names = signature.names
    shuffled = names[::-1]
    return {
        "instances-objects": {"instances": rows},
        "instances-lists": {"instances": [[row[c] for c in names] for row in rows]},
        "inputs-columns": {"inputs": {c: [row[c] for row in rows] for c in names}},
        "inputs-rows": {"inputs": [[row[c] for c in names] for row in rows]},
        "dataframe_split": {
            "dataframe_split": {"columns": shuffled, "data": [[row[c] for c in shuffled] for row in rows]}
        },
        "dataframe_records": {"dataframe_records": rows},
    }


def csv_text(signature: Signature, rows: list[dict[str, Any]]) -> bytes:
    names = signature.names[::-1]

    def cell(value: Any) -> str:
        return "" if value is None else str(value).lower() if isinstance(value, bool) else str(value)

    lines = [",".join(names)] + [",".join(cell(row[c]) for c in names) for row in rows]
    return ("\n".join(lines) + "\n").encode()


def columns_of(batch: Batch) -> list[list[Any]]:
    return [batch.column(i).tolist() for i in range(len(batch.names))]


def same(a: list[list[Any]], b: list[list[Any]]) -> bool:
    """Equal, with NaN equal to NaN and to None."""

    def norm(v: Any) -> Any:
        return None if v is None or (isinstance(v, float) and math.isnan(v)) else v

    return [[norm(v) for v in col] for col in a] == [[norm(v) for v in col] for col in b]


# -- formats -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "signature,rows", [(NUMERIC, NUMERIC_ROWS), (MIXED, MIXED_ROWS)], ids=["numeric", "mixed"]
)
def test_every_format_decodes_to_the_same_batch(signature: Signature, rows: list[dict[str, Any]]) -> None:
    decoder = Decoder(signature, max_rows=100)
    expected = [[row[c] for row in rows] for c in signature.names]
    batches = {name: decoder.decode(body) for name, body in formats(signature, rows).items()}
    batches["csv"] = decoder.decode_csv(csv_text(signature, rows))
    for name, batch in batches.items():
        assert batch.names == signature.names, name
        assert batch.n_rows == len(rows), name
        assert same(columns_of(batch), expected), name


def test_numeric_rows_become_one_float_array() -> None:
    batch = Decoder(NUMERIC, max_rows=10).decode({"instances": [[1, 2, True], [3.5, 4, False]]})
    array = batch.as_array()
    assert array.dtype == np.float64
    assert array.tolist() == [[1.0, 2.0, 1.0], [3.5, 4.0, 0.0]]


def test_mixed_columns_keep_their_types() -> None:
    batch = Decoder(MIXED, max_rows=10).decode({"instances": MIXED_ROWS})
    x, n, city, flag, opt = (batch.column(i) for i in range(5))
    assert x.dtype == np.float64
    assert n.dtype == np.int64
    assert city.dtype == object and city.tolist() == ["paris", "nice"]
    assert flag.dtype == np.bool_ and flag.tolist() == [True, False]
    assert opt.dtype == np.float64 and opt[0] == 0.5 and math.isnan(opt[1])
    frame = batch.as_frame()
    assert list(frame.columns) == MIXED.names
    assert frame["city"].tolist() == ["paris", "nice"]


@pytest.mark.parametrize(
    ("values", "dtype"),
    [([1, 2.0, -3], np.int64), ([1.5, 2], np.float64), ([1e30, 2], np.float64), ([2.0**63, 1], np.float64)],
)
def test_int_column_is_int64_only_when_every_value_is_integral_and_fits(
    values: list[Any], dtype: Any
) -> None:
    rows = [{**MIXED_ROWS[0], "n": v} for v in values]
    column = Decoder(MIXED, max_rows=10).decode({"instances": rows}).column(1)
    assert column.dtype == dtype
    assert column.tolist() == [float(v) if dtype == np.float64 else int(v) for v in values]


@pytest.mark.parametrize(("value", "expected"), [(1, "1"), (2.5, "2.5"), (True, "True")])
def test_string_column_takes_scalars_as_text(value: Any, expected: str) -> None:
    rows = [{**MIXED_ROWS[0], "city": value}]
    assert Decoder(MIXED, max_rows=10).decode({"instances": rows}).column(2).tolist() == [expected]


@pytest.mark.parametrize(("value", "expected"), [(True, True), (False, False), (1, True), (0, False)])
def test_bool_column_takes_booleans_and_0_1(value: Any, expected: bool) -> None:
    rows = [{**MIXED_ROWS[0], "flag": value}]
    assert Decoder(MIXED, max_rows=10).decode({"instances": rows}).column(3).tolist() == [expected]


@pytest.mark.parametrize(("text", "expected"), [("true", True), ("FALSE", False), ("1", True), ("0", False)])
def test_bool_column_from_csv(text: str, expected: bool) -> None:
    data = f"x,n,city,flag,opt\n1,2,paris,{text},\n".encode()
    assert Decoder(MIXED, max_rows=10).decode_csv(data).column(3).tolist() == [expected]


# -- missing values ----------------------------------------------------------------------------


def test_nullable_column_may_be_null_absent_or_left_out() -> None:
    decoder = Decoder(NULLABLE_TEXT, max_rows=10)
    batches = [
        decoder.decode({"instances": [{"x": 1.0, "note": None}]}),
        decoder.decode({"instances": [{"x": 1.0}]}),
        decoder.decode({"inputs": {"x": [1.0]}}),
        decoder.decode_csv(b"x\n1\n"),
        decoder.decode_csv(b"x,note\n1,\n"),
    ]
    for batch in batches:
        assert batch.column(1).tolist() == [None]
        assert batch.column(0).tolist() == [1.0]


@pytest.mark.parametrize("token", ["", "NA", "null", "nan", " NaN ", "-nan", "+nan"])
def test_csv_missing_tokens_are_nan_in_a_nullable_column(token: str) -> None:
    batch = Decoder(MIXED, max_rows=10).decode_csv(f"x,n,city,flag,opt\n1,2,paris,true,{token}\n".encode())
    assert math.isnan(batch.column(4)[0])


@pytest.mark.parametrize("token", ["", "NA", "null", "nan", " NaN ", "-nan"])
def test_csv_missing_tokens_are_refused_in_a_non_nullable_column(token: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        Decoder(MIXED, max_rows=10).decode_csv(
            f"x,n,city,flag,opt\n1,2,paris,true,1\n{token},2,nice,true,1\n".encode()
        )
    assert (caught.value.field, caught.value.row, caught.value.column) == ("body[1].x", 1, "x")


@pytest.mark.parametrize("token", ["inf", "-inf", "Infinity", "1e999", "-1E400"])
def test_csv_infinity_is_refused(token: str) -> None:
    with pytest.raises(InvalidInput, match="finite") as caught:
        Decoder(MIXED, max_rows=10).decode_csv(f"x,n,city,flag,opt\n1,2,paris,true,{token}\n".encode())
    assert (caught.value.row, caught.value.column) == (0, "opt")


# -- errors ------------------------------------------------------------------------------------

GOOD = [1.0, 2, True]
ERRORS = [
    # body, error type, field, row, column
    ([GOOD], MalformedBody, "body", None, None),
    ("text", MalformedBody, "body", None, None),
    ({}, MalformedBody, "body", None, None),
    ({"instances": [GOOD], "inputs": {}}, MalformedBody, "body", None, None),
    ({"instanses": [GOOD]}, MalformedBody, "instanses", None, None),
    ({"instances": [GOOD], "return": 1}, MalformedBody, "return", None, None),
    ({"instances": [GOOD], "return": [["probabilities"]]}, MalformedBody, "return", None, None),
    ({"instances": [GOOD], "return": [{}]}, MalformedBody, "return", None, None),
    ({"instances": "rows"}, MalformedBody, "instances", None, None),
    ({"instances": []}, InvalidInput, "instances", None, None),
    ({"instances": [GOOD, [1.0, 2]]}, InvalidInput, "instances[1]", 1, None),
    ({"instances": [GOOD, "row"]}, InvalidInput, "instances[1]", 1, None),
    ({"instances": [{"x": 1.0, "n": 2, "flag": True}, GOOD]}, InvalidInput, "instances[1]", 1, None),
    ({"instances": [{"x": 1.0, "n": 2}]}, InvalidInput, "instances[0]", 0, "flag"),
    (
        {"instances": [{"x": 1.0, "n": 2, "flag": True, "flags": 1}]},
        InvalidInput,
        "instances[0].flags",
        0,
        "flags",
    ),
    ({"instances": [[1.0, "two", True]]}, InvalidInput, "instances[0].n", 0, "n"),
    ({"instances": [GOOD, [1.0, 2, None]]}, InvalidInput, "instances[1].flag", 1, "flag"),
    ({"instances": [GOOD, [1.0, 2, "yes"]]}, InvalidInput, "instances[1].flag", 1, "flag"),
    ({"instances": [GOOD, [1.0, 2, 2]]}, InvalidInput, "instances[1].flag", 1, "flag"),
    ({"instances": [[[1.0], 2, True]]}, InvalidInput, "instances[0].x", 0, "x"),
    ({"inputs": {"x": [1.0], "n": [2]}}, InvalidInput, "inputs", None, "flag"),
    ({"inputs": {"x": [1.0], "n": [2, 3], "flag": [True]}}, InvalidInput, "inputs.x", None, "x"),
    ({"inputs": {"x": 1.0, "n": [2], "flag": [True]}}, InvalidInput, "inputs.x", None, "x"),
    ({"inputs": {"x": [1.0], "n": ["2"], "flag": [True]}}, InvalidInput, "inputs.n[0]", 0, "n"),
    (
        {"dataframe_split": {"columns": [1, "n", "flag"], "data": [GOOD]}},
        InvalidInput,
        "dataframe_split.columns[0]",
        None,
        None,
    ),
    (
        {"dataframe_split": {"columns": [["x"], "n"], "data": [GOOD]}},
        InvalidInput,
        "dataframe_split.columns[0]",
        None,
        None,
    ),
    (
        {"dataframe_split": {"columns": ["x", "n", "flag", "n"], "data": [[*GOOD, 1]]}},
        InvalidInput,
        "dataframe_split.columns",
        None,
        "n",
    ),
    (
        {"dataframe_split": {"columns": ["flag", "n", "x"], "data": [[True, 2]]}},
        InvalidInput,
        "dataframe_split.data[0]",
        0,
        None,
    ),
    (
        {"dataframe_split": {"columns": ["flag", "n", "x"], "data": [[True, 2, "x"]]}},
        InvalidInput,
        "dataframe_split.data[0].x",
        0,
        "x",
    ),
    ({"dataframe_split": {"columns": ["flag", "n", "x"]}}, MalformedBody, "dataframe_split.data", None, None),
    ({"dataframe_split": ["x"]}, MalformedBody, "dataframe_split", None, None),
]


@pytest.mark.parametrize(("body", "error", "field", "row", "column"), ERRORS)
def test_bad_body_raises_an_error_that_places_the_fault(
    body: Any, error: type[WharfError], field: str, row: int | None, column: str | None
) -> None:
    with pytest.raises(error) as caught:
        Decoder(NUMERIC, max_rows=10).decode(body)
    assert type(caught.value) is error
    assert (caught.value.field, caught.value.row, caught.value.column) == (field, row, column)
    assert 0 < len(caught.value.detail) < 600


CSV_ERRORS = [
    (b"x,n\n1,2\n", "header", None, "flag"),
    (b"x,n,flags\n1,2,true\n", "header", None, "flags"),
    (b"x,n,flag\n", "body", None, None),
    (b"", "body", None, None),
    (b"x,n,flag\n1,2,true\n1,2\n", "body[1]", 1, None),
    (b"x,n,flag\n1,two,true\n", "body[0].n", 0, "n"),
    (b"x,n,flag\n1,2,maybe\n", "body[0].flag", 0, "flag"),
]


@pytest.mark.parametrize(("data", "field", "row", "column"), CSV_ERRORS)
def test_bad_csv_raises_invalid_input_that_places_the_fault(
    data: bytes, field: str, row: int | None, column: str | None
) -> None:
    with pytest.raises(InvalidInput) as caught:
        Decoder(NUMERIC, max_rows=10).decode_csv(data)
    assert (caught.value.field, caught.value.row, caught.value.column) == (field, row, column)


@pytest.mark.parametrize("data", [b"x,n,flag\n\xff,2,true\n", "x,n,flag\n1,2,true\n".encode("utf-16")])
def test_non_utf8_csv_is_malformed(data: bytes) -> None:
    with pytest.raises(MalformedBody, match="not UTF-8") as caught:
        Decoder(NUMERIC, max_rows=10).decode_csv(data)
    assert caught.value.field == "body"


@pytest.mark.parametrize(
    "body",
    [
        {"instances": [GOOD] * 4},
        {"dataframe_records": [dict(zip(NUMERIC.names, GOOD, strict=True))] * 4},
        {"inputs": {"x": [1.0] * 4, "n": [2] * 4, "flag": [True] * 4}},
        {"dataframe_split": {"columns": ["flag", "n", "x"], "data": [[True, 2, 1.0]] * 4}},
    ],
)
def test_more_rows_than_the_limit(body: Any) -> None:
    decoder = Decoder(NUMERIC, max_rows=3)
    with pytest.raises(ContentTooLarge, match="the limit is 3") as caught:
        decoder.decode(body)
    key = next(iter(body))
    assert caught.value.field == (key + ".data" if key == "dataframe_split" else key)
    assert decoder.decode_csv(b"x,n,flag\n" + b"1,2,true\n" * 3).n_rows == 3
    with pytest.raises(ContentTooLarge):
        decoder.decode_csv(b"x,n,flag\n" + b"1,2,true\n" * 4)


# -- hostile values ----------------------------------------------------------------------------


def nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize("depth", [10, 1_000, 5_000])
def test_deeply_nested_values_are_named_briefly(depth: int) -> None:
    decoder = Decoder(NUMERIC, max_rows=10)
    with pytest.raises(InvalidInput) as caught:
        decoder.decode({"instances": [[nested(depth), 2, True]]})
    assert caught.value.column == "x"
    assert len(caught.value.detail) < 300
    with pytest.raises(InvalidInput) as caught:
        decoder.decode({"instances": [nested(depth)]})
    assert caught.value.row == 0


def test_show_bounds_depth_and_length() -> None:
    assert len(show(nested(10_000))) < 40
    assert len(show("s" * 1_000_000)) < 80
    assert len(show(list(range(1_000_000)))) < 80
    assert show("paris") == "'paris'"
    assert show(2.5) == "2.5"


def test_huge_unknown_names_are_echoed_briefly() -> None:
    with pytest.raises(InvalidInput) as caught:
        Decoder(NUMERIC, max_rows=10).decode(
            {"instances": [{"x": 1.0, "n": 2, "flag": True, "y" * 100_000: 1}]}
        )
    assert len(caught.value.detail) < 500


def test_the_request_body_is_not_needed_after_decoding() -> None:
    """Decoding copies what it keeps: later changes to the body do not reach the batch."""
    rows = [[1.0, 2, True]]
    batch = Decoder(NUMERIC, max_rows=10).decode({"instances": rows})
    rows[0][0] = 99.0
    assert batch.as_array()[0, 0] == 1.0


# -- helpers -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "hint"),
    [("sqf", " Did you mean 'sqft'?"), ("Sqft", " Did you mean 'sqft'?"), ("zzz", ""), ("", "")],
)
def test_suggest(name: str, hint: str) -> None:
    assert suggest(name, ["sqft", "rooms", "city"]) == hint


@pytest.mark.parametrize(
    "value", [None, "predictions", "probabilities", ["predictions", "probabilities"], []]
)
def test_return_accepted(value: Any) -> None:
    body = {"instances": [GOOD], "return": value}
    assert Decoder(NUMERIC, max_rows=10).decode(body).n_rows == 1


def test_return_typo_is_suggested() -> None:
    with pytest.raises(MalformedBody, match="Did you mean 'probabilities'"):
        Decoder(NUMERIC, max_rows=10).decode({"instances": [GOOD], "return": ["probabilties"]})


# -- decode_plain: numeric rows straight from the bytes ------------------------------------------

FLOATS = Signature.numbered(3)


@pytest.mark.parametrize(
    "text",
    [
        '{"instances": [[1.5, 2, 1], [-3e2, 0, 0], [0.25, -7, 1]]}',
        '{"inputs": [[1.5, 2, 1]]}',
        ' \n{ "instances" :[ [1E5,-0,1] , [4.9e-324, 9007199254740993, 0] ] }\t',
        '{"instances": [[-1, 9223372036854775808, 1], [0, 18446744073709551615, 0]]}',  # past int64
    ],
)
def test_plain_rows_are_decoded_from_the_bytes_as_the_parsed_body_is(text: str) -> None:
    decoder = Decoder(NUMERIC, max_rows=100)
    plain = decoder.decode_plain(text.encode())
    assert plain is not None
    parsed = decoder.decode(orjson.loads(text)).as_array()
    assert plain.as_array().dtype == parsed.dtype == np.float64
    assert np.array_equal(plain.as_array(), parsed)
    assert np.signbit(plain.as_array()).tolist() == np.signbit(parsed).tolist()
    assert plain.as_array().flags.writeable


@pytest.mark.parametrize(
    "text",
    [
        '{"instances": [[1, 2, 1]], "return": ["probabilities"]}',  # an option: the parsed path
        '{"dataframe_records": [[1, 2, 1]]}',
        '{"instances": [{"x": 1, "n": 2, "flag": 1}]}',
        '{"instances": [[1, 2, 2]]}',  # not a bool
        '{"instances": [[1, 2, true]]}',
        '{"instances": [[1, 2, null]]}',
        '{"instances": [[1, 2]]}',
        '{"instances": [[1, 2, 1], [1, 2]]}',
        '{"instances": [[1, [], [2, 1]]]}',  # three items, three numbers, one list too many
        '{"instances": [[1, 2, [1]]]}',
        '{"instances": []}',
        '{"instances": [1, 2, 1]}',
        '{"instances": [[1, 2, 1]], "instances": [[1, 2, 1]]}',
        '{"instances": [[1, 18446744073709551616, 1]]}',  # past uint64: simdjson refuses it
        '{"instances": [[1, 1e400, 1]]}',
        '{"instances": [[1, 2, 1]]} trailing',
        '\ufeff{"instances": [[1, 2, 1]]}',
        "[[1, 2, 1]]",
        '{"instances": [[1, 2, 1]',
    ],
)
def test_anything_but_plain_rows_is_left_to_the_parsed_path(text: str) -> None:
    assert Decoder(NUMERIC, max_rows=100).decode_plain(text.encode()) is None


def test_plain_rows_over_the_row_limit_are_left_to_the_parsed_path() -> None:
    body = orjson.dumps({"instances": [[1.0, 2.0, 3.0]] * 3})
    assert Decoder(FLOATS, max_rows=3).decode_plain(body) is not None
    assert Decoder(FLOATS, max_rows=2).decode_plain(body) is None


def test_a_model_with_text_columns_never_takes_plain_rows() -> None:
    assert Decoder(MIXED, max_rows=10).decode_plain(b'{"instances": [[1, 2, 3, 4, 5]]}') is None


def test_a_failed_plain_parse_leaves_later_bodies_decodable() -> None:
    decoder = Decoder(FLOATS, max_rows=10)
    for bad in (b'{"instances": [[1, 2, "x"]]}', b'{"instances": [[1, 2', b'{"instances": [[1, [2], 3]]}'):
        assert decoder.decode_plain(bad) is None
        plain = decoder.decode_plain(b'{"instances": [[4, 5, 6]]}')
        assert plain is not None and plain.as_array().tolist() == [[4.0, 5.0, 6.0]]


def test_plain_rows_decode_alike_in_many_threads_at_once() -> None:
    decoder = Decoder(Signature.numbered(20), max_rows=1000)
    rng = np.random.default_rng(0)
    arrays = [rng.normal(size=(int(rng.integers(1, 400)), 20)) for _ in range(64)]
    bodies = [orjson.dumps({"instances": a.tolist()}) for a in arrays]
    with ThreadPoolExecutor(16) as pool:
        decoded = list(pool.map(decoder.decode_plain, bodies * 4))
    for batch, expected in zip(decoded, arrays * 4, strict=True):
        assert batch is not None and np.array_equal(batch.as_array(), expected)


_NUMBER_TEXT = st.one_of(
    st.sampled_from(["0", "1", "0.0", "1.0", "1e0"]),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.integers(min_value=-(2**66), max_value=2**66).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(lambda x: orjson.dumps(x).decode()),
    st.sampled_from(
        [
            "1E5",
            "1e-5",
            "-0",
            "-0.0",
            "0.1e1",
            "1E+2",
            "4.9e-324",
            "1e-400",
            "9223372036854775807",
            "9223372036854775808",
            "-9223372036854775809",
            "18446744073709551616",
            "9007199254740993",
        ]
    ),
)
"""Valid JSON numbers, ordinary and at the edges of int64, uint64 and float64."""
_ODD_TEXT = st.sampled_from(
    [
        "true",
        "false",
        "null",
        '"1"',
        "[]",
        "{}",
        "[1]",
        "[1, 2]",
        "1e400",
        "01",
        "1.",
        ".5",
        "+1",
        "1e",
        "NaN",
        "Infinity",
    ]
)
"""Values that are not numbers, and numbers JSON does not allow."""
_SPACE = st.sampled_from(["", " ", "\n", "\t "])
_SIGNATURES = [NUMERIC, FLOATS, Signature.numbered(1)]


@st.composite
def _bodies(draw: st.DrawFn, width: int) -> bytes:
    """Bodies near the plain shape: rows mostly of ``width`` numbers, now and then something else
    (a value that is not a number, a nested list, a row of another length, another key, an option,
    a byte order mark, trailing bytes)."""
    odd = draw(st.integers(0, 6)) == 0

    def row() -> str:
        if draw(st.integers(0, 9)) == 0:
            return draw(st.one_of(_NUMBER_TEXT, _ODD_TEXT))
        size = width if draw(st.integers(0, 9)) else draw(st.integers(0, width + 2))
        cells = [
            draw(_ODD_TEXT) if odd and draw(st.integers(0, 3)) == 0 else draw(_NUMBER_TEXT)
            for _ in range(size)
        ]
        return "[" + f",{draw(_SPACE)}".join(cells) + "]"

    rows = [row() for _ in range(draw(st.sampled_from([1, 2, 3, 1, 2, 3, 0, 4])))]
    key = draw(st.sampled_from(["instances", "inputs"] * 4 + ["dataframe_records", "x"]))
    space = draw(_SPACE)
    pairs = [f'"{key}":{space}[{space}' + f",{space}".join(rows) + f"{space}]"]
    if draw(st.integers(0, 5)) == 0:
        pairs.append(draw(st.sampled_from(['"return": ["probabilities"]', '"id": "a"', '"instances": []'])))
    text = draw(_SPACE) + "{" + ",".join(pairs) + "}"
    if draw(st.integers(0, 5)) == 0:
        text = draw(st.sampled_from(["\ufeff", "x"])) + text
    if draw(st.integers(0, 5)) == 0:
        text += draw(st.sampled_from(["x", "}", "]"]))
    return text.encode()


@hypothesis.given(data=st.data(), which=st.integers(0, len(_SIGNATURES) - 1))
@hypothesis.settings(max_examples=1500, deadline=None)
def test_plain_rows_decode_exactly_as_the_parsed_body_does(data: st.DataObject, which: int) -> None:
    """Whatever the bytes, the fast path either declines or returns what the parsed path does."""
    signature = _SIGNATURES[which]
    body = data.draw(_bodies(len(signature.names)))
    decoder = Decoder(signature, max_rows=3)
    plain = decoder.decode_plain(body)
    if plain is None:
        return
    parsed = decoder.decode(orjson.loads(body))  # raises if the fast path took what the parsed refuses
    assert plain.as_array().dtype == parsed.as_array().dtype
    assert np.array_equal(plain.as_array(), parsed.as_array())
    assert np.array_equal(np.signbit(plain.as_array()), np.signbit(parsed.as_array()))  # -0 stays -0


def test_parsers_that_read_a_large_body_are_not_kept() -> None:
    """A parser keeps buffers of about twice the largest body it read: only small readers stay."""
    parsers = Parsers()
    small = parsers.take()
    parsers.give(small, Parsers.KEEP_BYTES)
    assert parsers.take() is small
    parsers.give(small, Parsers.KEEP_BYTES + 1)
    assert parsers.take() is not small

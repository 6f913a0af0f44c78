"""Every bad request answers a 4xx RFC 9457 problem naming the fault, never a 500."""

from __future__ import annotations

import io
import json
import os
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from flask.testing import FlaskClient
from httpcases import IRIS_COLUMNS, Trained, check_problem

from wharf.services import Services

IRIS = "/v1/models/iris/predict"
GOOD_ROW = [5.1, 3.5, 1.4, 0.2]
GOOD_RECORD = dict(zip(IRIS_COLUMNS, GOOD_ROW, strict=True))
SHUFFLED = IRIS_COLUMNS[::-1]
HEADER = ",".join(IRIS_COLUMNS)


def records(n: int = 3, changes: dict[int, dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """``n`` good iris rows, with ``changes`` (row index -> values) applied."""
    rows = [dict(GOOD_RECORD) for _ in range(n)]
    for i, change in (changes or {}).items():
        rows[i].update(change)
    return rows


def as_lists(rows: list[dict[str, Any]]) -> list[list[Any]]:
    return [[row.get(c) for c in IRIS_COLUMNS] for row in rows]


def as_inputs(rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
    return {c: [row.get(c) for row in rows] for c in IRIS_COLUMNS}


def as_split(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {"columns": SHUFFLED, "data": [[row.get(c) for c in SHUFFLED] for row in rows]}


def as_csv(rows: list[dict[str, Any]]) -> str:
    lines = [HEADER] + [
        ",".join("" if row.get(c) is None else str(row[c]) for c in IRIS_COLUMNS) for row in rows
    ]
    return "\n".join(lines) + "\n"


def post(client: FlaskClient, body: Any, url: str = IRIS) -> Any:
    """POST ``body``: a str is sent as CSV, bytes as raw JSON, anything else as JSON."""
    if isinstance(body, str):
        return client.post(url, data=body, content_type="text/csv")
    if isinstance(body, bytes):
        return client.post(url, data=body, content_type="application/json")
    return client.post(url, json=body)


def _each_format(rows: list[dict[str, Any]], *, where: dict[str, str]) -> list[tuple[str, Any, str]]:
    """The same rows in every format, with the problem ``field`` each must name."""
    return [
        ("instances-objects", {"instances": rows}, where["objects"]),
        ("instances-lists", {"instances": as_lists(rows)}, where["lists"]),
        ("inputs", {"inputs": as_inputs(rows)}, where["inputs"]),
        ("dataframe_split", {"dataframe_split": as_split(rows)}, where["split"]),
        ("dataframe_records", {"dataframe_records": rows}, where["records"]),
        ("csv", as_csv(rows), where["csv"]),
    ]


def _params(cases: list[tuple[str, Any, str]]) -> list[Any]:
    return [pytest.param(body, field, id=name) for name, body, field in cases]


# -- the envelope ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [b'{"instances": [', b"{'instances': []}", b'{"instances": [[1,2,3,4]],}', b"nul", b"\xff\xfe{}"],
    ids=["truncated", "single-quotes", "trailing-comma", "bare-word", "not-utf8"],
)
def test_malformed_json_is_400(client: FlaskClient, served: dict[str, Trained], data: bytes) -> None:
    check_problem(post(client, data), 400, field="body", detail="not valid JSON")


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "application/xml",
        "application/octet-stream",
        "image/png",
        "multipart/form-data; boundary=x",
        None,
    ],
)
def test_wrong_content_type_is_415(
    client: FlaskClient, served: dict[str, Trained], content_type: str | None
) -> None:
    response = client.post(IRIS, data=b'{"instances": [[5.1, 3.5, 1.4, 0.2]]}', content_type=content_type)
    problem = check_problem(response, 415, field="Content-Type", detail="application/json")
    assert problem["type"] == "urn:wharf:problem:unsupported-media-type"
    assert "text/csv" in problem["detail"]


@pytest.mark.parametrize("content_type", ["application/json", "text/csv"])
def test_empty_body_is_400(client: FlaskClient, served: dict[str, Trained], content_type: str) -> None:
    response = client.post(IRIS, data=b"", content_type=content_type)
    check_problem(response, 400, field="body", detail="empty")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"instances": []}, "instances"),
        ({"dataframe_records": []}, "dataframe_records"),
        ({"inputs": []}, "inputs"),
        ({"inputs": {c: [] for c in IRIS_COLUMNS}}, "inputs"),
        ({"dataframe_split": {"columns": SHUFFLED, "data": []}}, "dataframe_split.data"),
        (HEADER + "\n", "body"),
        ("\n\n", "body"),
    ],
    ids=["instances", "records", "inputs-list", "inputs-columns", "split", "csv-header-only", "csv-blank"],
)
def test_no_rows_is_422(client: FlaskClient, served: dict[str, Trained], body: Any, field: str) -> None:
    check_problem(post(client, body), 422, field=field)


@pytest.mark.parametrize(
    "body",
    [
        [GOOD_ROW],
        [],
        "instances",
        None,
        42,
        {},
        {"return": ["predictions"]},
        {"instances": [GOOD_ROW], "inputs": as_inputs(records(1))},
    ],
    ids=["array", "empty-array", "string", "null", "number", "empty-object", "options-only", "two-envelopes"],
)
def test_body_that_is_not_one_envelope_is_400(
    client: FlaskClient, served: dict[str, Trained], body: Any
) -> None:
    response = client.post(IRIS, data=orjson.dumps(body), content_type="application/json")
    check_problem(response, 400, field="body", detail="'instances'")


@pytest.mark.parametrize(
    ("key", "suggestion"),
    [
        ("instance", "instances"),
        ("input", "inputs"),
        ("dataframe_split_", "dataframe_split"),
        ("returns", "return"),
    ],
)
def test_unknown_top_level_key_is_400_with_suggestion(
    client: FlaskClient, served: dict[str, Trained], key: str, suggestion: str
) -> None:
    body = {key: [GOOD_ROW]}
    check_problem(post(client, body), 400, field=key, detail=f"Did you mean {suggestion!r}?")


def test_unknown_top_level_key_far_from_any_gets_no_suggestion(
    client: FlaskClient, served: dict[str, Trained]
) -> None:
    problem = check_problem(post(client, {"instances": [GOOD_ROW], "zzz": 1}), 400, field="zzz")
    assert "Did you mean" not in problem["detail"]


@pytest.mark.parametrize(
    "value",
    [
        5,
        True,
        {"probabilities": True},
        [["probabilities"]],
        [{"a": 1}],
        [None],
        ["probabilites"],
        "everything",
    ],
    ids=[
        "number",
        "bool",
        "object",
        "nested-list",
        "list-of-object",
        "list-of-null",
        "typo",
        "unknown-string",
    ],
)
def test_return_of_the_wrong_type_is_400(client: FlaskClient, served: dict[str, Trained], value: Any) -> None:
    problem = check_problem(post(client, {"instances": [GOOD_ROW], "return": value}), 400, field="return")
    assert "'return' must be a list" in problem["detail"]


def test_return_typo_gets_a_suggestion(client: FlaskClient, served: dict[str, Trained]) -> None:
    body = {"instances": [GOOD_ROW], "return": ["probabilites"]}
    check_problem(post(client, body), 400, field="return", detail="Did you mean 'probabilities'?")


# -- which model -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "/v1/models/irsi/predict",
        "/v1/models/iriss/versions/1/predict",
        "/v1/models/Iris",
        "/v1/models/iri/versions",
        "/v1/models/irs/versions/1",
    ],
)
def test_unknown_model_is_404_with_suggestion(
    client: FlaskClient, served: dict[str, Trained], url: str
) -> None:
    response = client.open(
        url, method="POST" if url.endswith("predict") else "GET", json={"instances": [GOOD_ROW]}
    )
    problem = check_problem(response, 404, field="name", detail="Did you mean 'iris'?")
    assert problem["type"] == "urn:wharf:problem:model-not-found"


def test_unknown_model_far_from_any_is_404_without_suggestion(
    client: FlaskClient, served: dict[str, Trained]
) -> None:
    problem = check_problem(
        post(client, {"instances": [GOOD_ROW]}, "/v1/models/zzzz/predict"), 404, field="name"
    )
    assert "Did you mean" not in problem["detail"]


@pytest.mark.parametrize("version", [0, 2, 7, 2**63 - 1, 2**63, 10**30])
@pytest.mark.parametrize("route", ["/predict", ""])
def test_unknown_version_is_404(
    client: FlaskClient, served: dict[str, Trained], version: int, route: str
) -> None:
    url = f"/v1/models/iris/versions/{version}{route}"
    response = client.open(url, method="POST" if route else "GET", json={"instances": [GOOD_ROW]})
    problem = check_problem(response, 404, field="version", detail=f"no version {version}")
    assert problem["type"] == "urn:wharf:problem:version-not-found"


@pytest.mark.parametrize("version", [2, 2**63, 10**30])
def test_deleting_unknown_version_is_404(
    client: FlaskClient, served: dict[str, Trained], version: int
) -> None:
    check_problem(client.delete(f"/v1/models/iris/versions/{version}"), 404, field="version")
    assert client.get("/v1/models/iris/versions/1").status_code == 200


# -- columns and rows --------------------------------------------------------------------------


def _without(column: str, n: int = 2) -> list[dict[str, Any]]:
    rows = records(n)
    for row in rows:
        del row[column]
    return rows


MISSING = [
    pytest.param({"instances": _without("petal_width")}, "instances[0]", 0, id="instances-objects"),
    pytest.param({"dataframe_records": _without("petal_width")}, "dataframe_records[0]", 0, id="records"),
    pytest.param(
        {"inputs": {c: [1.0] for c in IRIS_COLUMNS if c != "petal_width"}}, "inputs", None, id="inputs"
    ),
    pytest.param(
        {"dataframe_split": {"columns": IRIS_COLUMNS[:3], "data": [GOOD_ROW[:3]]}},
        "dataframe_split.columns",
        None,
        id="split",
    ),
    pytest.param("sepal_length,sepal_width,petal_length\n1,2,3\n", "header", None, id="csv"),
]


@pytest.mark.parametrize(("body", "field", "row"), MISSING)
def test_missing_column_is_422_naming_it(
    client: FlaskClient, served: dict[str, Trained], body: Any, field: str, row: int | None
) -> None:
    problem = check_problem(
        post(client, body), 422, field=field, column="petal_width", detail="Missing column 'petal_width'"
    )
    assert problem.get("row") == row


UNKNOWN = [
    pytest.param(
        {"instances": records(2, {1: {"petal_widht": 1.0}})},
        "instances[1].petal_widht",
        1,
        id="instances-objects",
    ),
    pytest.param(
        {"dataframe_records": records(2, {1: {"petal_widht": 1.0}})},
        "dataframe_records[1].petal_widht",
        1,
        id="records",
    ),
    pytest.param({"inputs": {**as_inputs(records(1)), "petal_widht": [1.0]}}, "inputs", None, id="inputs"),
    pytest.param(
        {"dataframe_split": {"columns": [*IRIS_COLUMNS[:3], "petal_widht"], "data": [GOOD_ROW]}},
        "dataframe_split.columns",
        None,
        id="split",
    ),
    pytest.param(HEADER.replace("petal_width", "petal_widht") + "\n1,2,3,4\n", "header", None, id="csv"),
]


@pytest.mark.parametrize(("body", "field", "row"), UNKNOWN)
def test_unknown_column_is_422_with_suggestion(
    client: FlaskClient, served: dict[str, Trained], body: Any, field: str, row: int | None
) -> None:
    problem = check_problem(
        post(client, body), 422, field=field, column="petal_widht", detail="Did you mean 'petal_width'?"
    )
    assert problem.get("row") == row


@pytest.mark.parametrize(
    ("body", "field", "row"),
    [
        ({"instances": [GOOD_ROW, GOOD_ROW[:3]]}, "instances[1]", 1),
        ({"instances": [GOOD_ROW, [*GOOD_ROW, 1.0]]}, "instances[1]", 1),
        ({"instances": [GOOD_ROW, GOOD_ROW, []]}, "instances[2]", 2),
        (
            {"dataframe_split": {"columns": SHUFFLED, "data": [GOOD_ROW, GOOD_ROW[:2]]}},
            "dataframe_split.data[1]",
            1,
        ),
        (
            {"dataframe_split": {"columns": IRIS_COLUMNS, "data": [GOOD_ROW, GOOD_ROW[:2]]}},
            "dataframe_split.data[1]",
            1,
        ),
    ],
    ids=["short", "long", "empty", "split-shuffled", "split-in-order"],
)
def test_row_of_the_wrong_length_is_422_naming_it(
    client: FlaskClient, served: dict[str, Trained], body: Any, field: str, row: int
) -> None:
    check_problem(post(client, body), 422, field=field, row=row, detail="expected 4")


def test_column_of_the_wrong_length_is_422_naming_it(client: FlaskClient, served: dict[str, Trained]) -> None:
    inputs = as_inputs(records(3))
    inputs["sepal_width"] = inputs["sepal_width"][:2]
    check_problem(post(client, {"inputs": inputs}), 422, field="inputs.sepal_width", column="sepal_width")


@pytest.mark.parametrize(
    ("body", "field"),
    _params(
        _each_format(
            records(3, {2: {"petal_width": "wide"}}),
            where={
                "objects": "instances[2].petal_width",
                "lists": "instances[2].petal_width",
                "inputs": "inputs.petal_width[2]",
                "split": "dataframe_split.data[2].petal_width",
                "records": "dataframe_records[2].petal_width",
                "csv": "body[2].petal_width",
            },
        )
    ),
)
def test_non_numeric_value_is_422_naming_row_and_column(
    client: FlaskClient, served: dict[str, Trained], body: Any, field: str
) -> None:
    check_problem(post(client, body), 422, field=field, row=2, column="petal_width", detail="'wide'")


NULLS = [
    *_params(
        _each_format(
            records(3, {1: {"sepal_width": None}}),
            where={
                "objects": "instances[1].sepal_width",
                "lists": "instances[1].sepal_width",
                "inputs": "inputs.sepal_width[1]",
                "split": "dataframe_split.data[1].sepal_width",
                "records": "dataframe_records[1].sepal_width",
                "csv": "body[1].sepal_width",
            },
        )
    ),
    pytest.param(f"{HEADER}\n1,2,3,4\n1,NaN,3,4\n", "body[1].sepal_width", id="csv-nan"),
    pytest.param(f"{HEADER}\n1,2,3,4\n1, nan ,3,4\n", "body[1].sepal_width", id="csv-spaced-nan"),
    pytest.param(f"{HEADER}\n1,2,3,4\n1,-nan,3,4\n", "body[1].sepal_width", id="csv-signed-nan"),
    pytest.param(f"{HEADER}\n1,2,3,4\n1,NULL,3,4\n", "body[1].sepal_width", id="csv-null"),
]


@pytest.mark.parametrize(("body", "field"), NULLS)
def test_null_where_the_model_cannot_take_it_is_422(
    client: FlaskClient, served: dict[str, Trained], body: Any, field: str
) -> None:
    check_problem(post(client, body), 422, field=field, row=1, column="sepal_width", detail="Missing value")


def test_null_in_a_string_column_the_model_cannot_take_is_422(
    client: FlaskClient, served: dict[str, Trained]
) -> None:
    rows = served["houses"].records()
    rows[1]["city"] = None
    response = post(client, {"instances": rows}, "/v1/models/houses/predict")
    check_problem(response, 422, field="instances[1].city", row=1, column="city", detail="Missing value")


def test_empty_csv_cell_in_a_string_column_the_model_cannot_take_is_422(
    client: FlaskClient, served: dict[str, Trained]
) -> None:
    document = served["houses"].rows.assign(city=["paris", "", "nice", "lyon"]).to_csv(index=False)
    response = post(client, document, "/v1/models/houses/predict")
    check_problem(response, 422, field="body[1].city", row=1, column="city", detail="Missing value")


def test_objects_and_lists_mixed_is_422_naming_the_row(
    client: FlaskClient, served: dict[str, Trained]
) -> None:
    check_problem(post(client, {"instances": [GOOD_RECORD, GOOD_ROW]}), 422, field="instances[1]", row=1)
    check_problem(post(client, {"instances": [GOOD_ROW, GOOD_RECORD]}), 422, field="instances[1]", row=1)


def test_column_given_twice_is_422(client: FlaskClient, served: dict[str, Trained]) -> None:
    split = {"columns": [*IRIS_COLUMNS, "sepal_length"], "data": [[*GOOD_ROW, 1.0]]}
    check_problem(post(client, {"dataframe_split": split}), 422, column="sepal_length", detail="twice")
    check_problem(
        post(client, f"{HEADER},petal_width\n1,2,3,4,5\n"), 422, column="petal_width", detail="twice"
    )


# -- limits ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    _params(
        _each_format(
            records(4),
            where={
                "objects": "instances",
                "lists": "instances",
                "inputs": "inputs",
                "split": "dataframe_split.data",
                "records": "dataframe_records",
                "csv": "body",
            },
        )
    ),
)
def test_more_rows_than_the_limit_is_413(
    make_client: Callable[..., FlaskClient], body: Any, field: str
) -> None:
    client = make_client(max_rows=3)
    problem = check_problem(post(client, body), 413, field=field, detail="the limit is 3")
    assert problem["title"] == "Content Too Large"


@pytest.mark.parametrize(
    ("body", "field"),
    _params(
        _each_format(
            records(3),
            where=dict.fromkeys(("objects", "lists", "inputs", "split", "records", "csv"), ""),
        )
    ),
)
def test_rows_at_the_limit_are_answered(
    make_client: Callable[..., FlaskClient], body: Any, field: str
) -> None:
    response = post(make_client(max_rows=3), body)
    assert response.status_code == 200, response.get_json()
    assert len(response.get_json()["predictions"]) == 3


@pytest.mark.parametrize("kind", ["json", "csv"])
def test_body_over_the_size_limit_is_413(make_client: Callable[..., FlaskClient], kind: str) -> None:
    client = make_client(max_body_bytes=1024)
    rows = records(200)
    body: Any = {"instances": as_lists(rows)} if kind == "json" else as_csv(rows)
    size = len(orjson.dumps(body)) if kind == "json" else len(body)
    assert size > 1024
    problem = check_problem(post(client, body), 413, detail="1024 bytes")
    assert problem["type"] == "urn:wharf:problem:content-too-large"
    assert problem["title"] == "Content Too Large"
    small: Any = {"instances": as_lists(records(2))} if kind == "json" else as_csv(records(2))
    assert post(client, small).status_code == 200


# -- hostile input -----------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [2_000, 100_000])
def test_deeply_nested_body_is_400(client: FlaskClient, served: dict[str, Trained], depth: int) -> None:
    data = b'{"instances": ' + b"[" * depth + b"]" * depth + b"}"
    check_problem(post(client, data), 400, field="body")


@pytest.mark.parametrize("depth", [10, 500, 1_000])
def test_deeply_nested_cell_is_422_naming_it(
    client: FlaskClient, served: dict[str, Trained], depth: int
) -> None:
    data = b'{"instances": [[1, 2, 3, ' + b"[" * depth + b"]" * depth + b"]]}"
    problem = check_problem(
        post(client, data), 422, field="instances[0].petal_width", row=0, column="petal_width"
    )
    assert len(problem["detail"]) < 500


@pytest.mark.parametrize("depth", [500, 1_000])
def test_deeply_nested_row_is_422_naming_it(
    client: FlaskClient, served: dict[str, Trained], depth: int
) -> None:
    data = b'{"instances": [[1, 2, 3, 4], {"sepal_length": ' + b"[" * depth + b"]" * depth + b"}]}"
    check_problem(post(client, data), 422, field="instances[1]", row=1)
    data = b'{"dataframe_split": {"columns": [' + b"[" * depth + b"]" * depth + b'], "data": [[1]]}}'
    check_problem(post(client, data), 422, field="dataframe_split.columns[0]")


@pytest.mark.parametrize(
    "literal",
    [b"1e400", b"-1e400", b"9" * 400, b"-" + b"9" * 400, b"NaN", b"Infinity", b"-Infinity"],
    ids=["1e400", "-1e400", "400-digits", "-400-digits", "NaN", "Infinity", "-Infinity"],
)
def test_numbers_json_cannot_carry_are_400(
    client: FlaskClient, served: dict[str, Trained], literal: bytes
) -> None:
    check_problem(post(client, b'{"instances": [[1, 2, 3, ' + literal + b"]]}"), 400, field="body")


@pytest.mark.parametrize("literal", ["1e300", "-1e300", "1e-300", "123456789012345678901234567890"])
def test_huge_finite_numbers_answer_what_the_model_says(
    client: FlaskClient, served: dict[str, Trained], literal: str
) -> None:
    model = served["iris"]
    response = post(client, f'{{"instances": [[5.1, 3.5, 1.4, {literal}]]}}'.encode())
    assert response.status_code == 200, response.get_json()
    rows = model.rows.iloc[:1].copy()
    rows.loc[0, "petal_width"] = float(literal)
    assert response.get_json()["predictions"] == model.expected(rows)


@pytest.mark.parametrize("value", ["inf", "-inf", "Infinity", "1e999"])
def test_infinite_csv_value_is_422_naming_it(
    client: FlaskClient, served: dict[str, Trained], value: str
) -> None:
    response = post(client, f"{HEADER}\n1,2,3,4\n1,2,3,{value}\n")
    check_problem(response, 422, field="body[1].petal_width", row=1, column="petal_width", detail="finite")


@pytest.mark.parametrize("rooms", [1e30, -1e30, 2.0**63, 9.3e18])
def test_value_beyond_int64_in_an_int_column_is_answered(
    client: FlaskClient, served: dict[str, Trained], rooms: float
) -> None:
    model = served["houses"]
    rows = model.records()[:1]
    rows[0]["rooms"] = rooms
    response = post(client, {"instances": rows}, "/v1/models/houses/predict")
    assert response.status_code == 200, response.get_json()
    frame = model.rows.iloc[:1].astype({"rooms": "float64"})
    frame.loc[0, "rooms"] = rooms
    assert response.get_json()["predictions"] == model.expected(frame)


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"instances": "sepal_length"}, 400, "instances"),
        ({"dataframe_records": "rows"}, 400, "dataframe_records"),
        ({"inputs": "columns"}, 400, "inputs"),
        ({"inputs": {**as_inputs(records(1)), "sepal_width": "3.5"}}, 422, "inputs.sepal_width"),
        ({"dataframe_split": "table"}, 400, "dataframe_split"),
        ({"dataframe_split": {"columns": "sepal_length", "data": [GOOD_ROW]}}, 400, "dataframe_split"),
        ({"dataframe_split": {"columns": SHUFFLED, "data": "rows"}}, 400, "dataframe_split.data"),
        ({"dataframe_split": {"columns": SHUFFLED}}, 400, "dataframe_split.data"),
        ({"dataframe_split": {"columns": SHUFFLED, "data": ["row"]}}, 422, "dataframe_split.data[0]"),
        ({"instances": ["5.1,3.5,1.4,0.2"]}, 422, "instances[0]"),
        ({"instances": [GOOD_ROW, "row"]}, 422, "instances[1]"),
        ({"instances": [None]}, 422, "instances[0]"),
    ],
    ids=[
        "instances",
        "records",
        "inputs",
        "inputs-column",
        "split",
        "split-columns",
        "split-data",
        "split-no-data",
        "split-row",
        "row",
        "second-row",
        "null-row",
    ],
)
def test_strings_in_place_of_lists(
    client: FlaskClient, served: dict[str, Trained], body: Any, status: int, field: str
) -> None:
    check_problem(post(client, body), status, field=field)


@pytest.mark.parametrize(
    "columns",
    [
        [1, 2, 3, 4],
        [["sepal_length"], "a", "b", "c"],
        [{"name": "sepal_length"}, "a", "b", "c"],
        [None, "a", "b", "c"],
    ],
    ids=["numbers", "lists", "objects", "null"],
)
def test_split_column_names_that_are_not_strings_are_422(
    client: FlaskClient, served: dict[str, Trained], columns: list[Any]
) -> None:
    split = {"columns": columns, "data": [GOOD_ROW]}
    check_problem(post(client, {"dataframe_split": split}), 422, field="dataframe_split.columns[0]")


@pytest.mark.parametrize(
    ("name", "body", "field", "column"),
    [
        ("iris", {"instances": [[5.1, 3.5, 1.4, [0.2]]]}, "instances[0].petal_width", "petal_width"),
        ("iris", {"instances": [[[5.1], [3.5], [1.4], [0.2]]]}, "instances[0].sepal_length", "sepal_length"),
        (
            "iris",
            {"instances": [{**GOOD_RECORD, "sepal_width": {"value": 3}}]},
            "instances[0].sepal_width",
            "sepal_width",
        ),
        (
            "iris",
            {"inputs": {**as_inputs(records(1)), "petal_length": [[1.4]]}},
            "inputs.petal_length[0]",
            "petal_length",
        ),
        ("reviews", {"instances": [{"text": ["a", "great", "film"]}]}, "instances[0].text", "text"),
        ("reviews", {"instances": [[{"text": "great"}]]}, "instances[0].text", "text"),
        ("houses", {"instances": [[50.0, 2, ["paris"]]]}, "instances[0].city", "city"),
    ],
    ids=[
        "number-cell",
        "every-cell",
        "object-cell",
        "column-cell",
        "text-list",
        "text-object",
        "string-cell",
    ],
)
def test_nested_values_in_cells_are_422_naming_the_cell(
    client: FlaskClient, served: dict[str, Trained], name: str, body: Any, field: str, column: str
) -> None:
    check_problem(post(client, body, f"/v1/models/{name}/predict"), 422, field=field, row=0, column=column)


@pytest.mark.parametrize(
    ("document", "row"),
    [
        (f"{HEADER}\n1,2,3,4\n1,2\n", 1),
        (f"{HEADER}\n1,2,3,4,5\n", 0),
        (f"{HEADER}\n1,2,3,4\n1,2,3,4\n1\n", 2),
    ],
    ids=["short", "long", "one-cell"],
)
def test_ragged_csv_is_422_naming_the_row(
    client: FlaskClient, served: dict[str, Trained], document: str, row: int
) -> None:
    check_problem(post(client, document), 422, field=f"body[{row}]", row=row, detail="the header has 4")


@pytest.mark.parametrize(
    "data",
    [f"{HEADER}\n1,2,3,4\n".encode("utf-16"), f"{HEADER}\n1,2,3,4\n".encode() + b"\xff\xfe", b"\x80\x81\x82"],
    ids=["utf-16", "trailing-bytes", "binary"],
)
def test_non_utf8_csv_is_400(client: FlaskClient, served: dict[str, Trained], data: bytes) -> None:
    response = client.post(IRIS, data=data, content_type="text/csv")
    check_problem(response, 400, field="body", detail="not UTF-8")


def test_csv_field_over_the_parser_limit_is_400(client: FlaskClient, served: dict[str, Trained]) -> None:
    response = post(client, f"{HEADER}\n1,2,3,{'9' * 200_000}\n")
    check_problem(response, 400, field="body", detail="field larger than field limit")


def test_huge_unknown_key_is_echoed_short(client: FlaskClient, served: dict[str, Trained]) -> None:
    key = "k" * 100_000
    problem = check_problem(post(client, {"instances": [GOOD_ROW], key: 1}), 400, field=key)
    assert len(problem["detail"]) < 1_000


# -- uploads -----------------------------------------------------------------------------------


def _files(services: Services) -> set[Path]:
    """Every file under the server's home except the SQLite database and its journals."""
    return {p for p in services.settings.home.rglob("*") if not p.name.startswith("wharf.db")}


def upload(client: FlaskClient, name: str, content: bytes, filename: str, metadata: Any = None) -> Any:
    data: dict[str, Any] = {"file": (io.BytesIO(content), filename)}
    if metadata is not None:
        data["metadata"] = metadata if isinstance(metadata, str) else json.dumps(metadata)
    return client.post(f"/v1/models/{name}/versions", data=data, content_type="multipart/form-data")


NOT_MODELS = [
    pytest.param(os.urandom(4096), "model.onnx", None, id="random-as-onnx"),
    pytest.param(os.urandom(4096), "model.joblib", None, id="random-as-joblib"),
    pytest.param(os.urandom(4096), "model.pkl", None, id="random-as-pickle"),
    pytest.param(os.urandom(4096), "model.skops", None, id="random-as-skops"),
    pytest.param(os.urandom(4096), "model.ubj", None, id="random-as-xgboost"),
    pytest.param(os.urandom(4096), "model.lgb", None, id="random-as-lightgbm"),
    pytest.param(os.urandom(4096), "model.bin", None, id="random-unknown-suffix"),
    pytest.param(b"", "model.joblib", None, id="empty-joblib"),
    pytest.param(b'{"learner": 1}', "model.json", None, id="fake-xgboost-json"),
    pytest.param(pickle.dumps({"not": "a model"}), "model.pkl", None, id="pickled-dict"),
]
DECLARED = ["xgboost", "lightgbm", "onnx", "skops", "pickle", "no-such-format"]


def _assert_upload_refused(response: Any, client: FlaskClient, services: Services, before: set[Path]) -> None:
    problem = check_problem(response, 422, field="file")
    assert problem["type"] in {"urn:wharf:problem:invalid-model", "urn:wharf:problem:unsafe-model"}
    assert str(services.settings.home) not in problem["detail"], "the server's paths leak to clients"
    check_problem(client.get("/v1/models/fresh/versions"), 404, field="name")
    assert client.get("/v1/models/iris/versions").get_json()["versions"][0]["version"] == 1
    assert len(client.get("/v1/models/iris/versions").get_json()["versions"]) == 1
    assert _files(services) == before, "a refused upload left a file behind"


@pytest.mark.parametrize(("content", "filename", "metadata"), NOT_MODELS)
def test_upload_that_is_not_a_model_is_422_and_leaves_nothing(
    client: FlaskClient,
    services: Services,
    served: dict[str, Trained],
    content: bytes,
    filename: str,
    metadata: Any,
) -> None:
    before = _files(services)
    _assert_upload_refused(upload(client, "fresh", content, filename, metadata), client, services, before)
    _assert_upload_refused(upload(client, "iris", content, filename, metadata), client, services, before)


@pytest.mark.parametrize("fmt", DECLARED)
def test_upload_of_another_format_than_declared_is_422_and_leaves_nothing(
    client: FlaskClient, services: Services, served: dict[str, Trained], fmt: str
) -> None:
    before = _files(services)
    content = served["iris"].path.read_bytes()
    response = upload(client, "fresh", content, "model.joblib", {"format": fmt})
    _assert_upload_refused(response, client, services, before)


def test_upload_without_file_field_is_400(client: FlaskClient, served: dict[str, Trained]) -> None:
    data = {"model": (io.BytesIO(served["iris"].path.read_bytes()), "model.joblib")}
    response = client.post("/v1/models/fresh/versions", data=data, content_type="multipart/form-data")
    check_problem(response, 400, field="file", detail="'file'")
    response = client.post(
        "/v1/models/fresh/versions", data={"metadata": "{}"}, content_type="multipart/form-data"
    )
    check_problem(response, 400, field="file")


@pytest.mark.parametrize("content_type", ["application/json", "application/octet-stream", "text/plain", None])
def test_upload_not_multipart_is_415(
    client: FlaskClient, served: dict[str, Trained], content_type: str | None
) -> None:
    response = client.post(
        "/v1/models/fresh/versions", data=served["iris"].path.read_bytes(), content_type=content_type
    )
    check_problem(response, 415, field="Content-Type", detail="multipart/form-data")


@pytest.mark.parametrize(
    ("metadata", "status", "field", "detail"),
    [
        ("{bad", 400, "metadata", "not valid JSON"),
        ("[1, 2]", 422, "metadata", "top level"),
        ('"joblib"', 422, "metadata", "top level"),
        ({"signatur": {}}, 422, "metadata.signatur", "Did you mean 'signature'?"),
        ({"format": 3}, 422, "metadata.format", None),
        ({"tags": {"team": 1}}, 422, "metadata.tags.team", None),
        ({"tags": ["team"]}, 422, "metadata.tags", None),
        ({"description": "x" * 10_001}, 422, "metadata.description", None),
        ({"signature": "float64"}, 422, "metadata.signature", None),
        ({"signature": {"inputs": []}}, 422, "metadata.signature.inputs", None),
        (
            {"signature": {"inputs": [{"name": "a", "dtype": "complex128"}]}},
            422,
            "metadata.signature.inputs.0.dtype",
            None,
        ),
        ({"signature": {"inputs": [{"name": ""}]}}, 422, "metadata.signature.inputs.0.name", None),
        (
            {"signature": {"inputs": [{"name": "a"}, {"name": "a"}]}},
            422,
            "metadata.signature.inputs",
            "twice",
        ),
        (
            {"signature": {"inputs": [{"name": "a", "size": 3}]}},
            422,
            "metadata.signature.inputs.0.size",
            None,
        ),
        (
            {"signature": {"inputs": [{"name": "a"}], "output": {"kind": "ranking"}}},
            422,
            "metadata.signature.output.kind",
            None,
        ),
        (
            {"signature": {"inputs": [{"name": "a"}, {"name": "b"}]}},
            422,
            "metadata.signature.inputs",
            "takes 4",
        ),
    ],
    ids=[
        "not-json",
        "array",
        "string",
        "unknown-key",
        "format-type",
        "tag-value",
        "tags-list",
        "description-long",
        "signature-string",
        "no-inputs",
        "bad-dtype",
        "empty-name",
        "duplicate-name",
        "unknown-column-key",
        "bad-output-kind",
        "fewer-inputs-than-the-model",
    ],
)
def test_upload_with_invalid_metadata_is_4xx_and_leaves_nothing(
    client: FlaskClient,
    services: Services,
    served: dict[str, Trained],
    metadata: Any,
    status: int,
    field: str,
    detail: str | None,
) -> None:
    before = _files(services)
    response = upload(client, "fresh", served["iris"].path.read_bytes(), "model.joblib", metadata)
    check_problem(response, status, field=field, detail=detail)
    check_problem(client.get("/v1/models/fresh"), 404)
    assert _files(services) == before


@pytest.mark.parametrize("name", ["bad name", "-leading-dash", ".hidden", "x" * 129, "semi;colon"])
def test_upload_under_an_invalid_name_is_422(
    client: FlaskClient, services: Services, served: dict[str, Trained], name: str
) -> None:
    before = _files(services)
    response = upload(client, name, served["iris"].path.read_bytes(), "model.joblib")
    check_problem(response, 422, field="name", detail="Invalid model name")
    assert _files(services) == before


def test_upload_over_the_size_limit_is_413(
    make_client: Callable[..., FlaskClient], trained: dict[str, Trained]
) -> None:
    client = make_client(max_upload_bytes=1024)
    content = trained["iris"].path.read_bytes()
    assert len(content) > 1024
    check_problem(upload(client, "fresh", content, "model.joblib"), 413, detail="1024 bytes")
    check_problem(client.get("/v1/models/fresh"), 404)


def test_upload_file_name_never_reaches_the_disk(
    client: FlaskClient, services: Services, served: dict[str, Trained]
) -> None:
    response = upload(client, "fresh", served["iris"].path.read_bytes(), "../../escape.joblib")
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["filename"] == "escape.joblib"
    home = services.settings.home
    assert not (home.parent / "escape.joblib").exists()
    assert not list(home.parent.rglob("escape.joblib"))


# -- routes and methods ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url", ["/nope", "/v1", "/v1/model/iris/predict", "/v1/models/iris/predictionz", "/v2/models"]
)
def test_unknown_route_is_404_problem(client: FlaskClient, served: dict[str, Trained], url: str) -> None:
    problem = check_problem(client.get(url), 404)
    assert problem["type"] == "urn:wharf:problem:not-found"
    assert problem["instance"] == url


@pytest.mark.parametrize(
    ("method", "url", "allowed"),
    [
        ("GET", "/v1/models/iris/predict", {"POST"}),
        ("PUT", "/v1/models/iris/predict", {"POST"}),
        ("GET", "/v1/models/iris/versions/1/predict", {"POST"}),
        ("PUT", "/v1/models/iris", {"GET", "DELETE"}),
        ("PUT", "/v1/models/iris/versions/1", {"GET", "DELETE", "PATCH"}),
        ("GET", "/v1/models/iris/aliases/production", {"POST", "PUT", "DELETE"}),
        ("POST", "/v1/models", {"GET"}),
        ("DELETE", "/healthz", {"GET"}),
        ("POST", "/openapi.json", {"GET"}),
    ],
)
def test_wrong_method_is_405_problem(
    client: FlaskClient, served: dict[str, Trained], method: str, url: str, allowed: set[str]
) -> None:
    response = client.open(url, method=method, json={"instances": [GOOD_ROW]})
    problem = check_problem(response, 405, detail=method)
    assert problem["type"] == "urn:wharf:problem:method-not-allowed"
    assert allowed <= {m.strip() for m in response.headers["Allow"].split(",")}
    assert client.get("/v1/models/iris").status_code == 200  # nothing was deleted or changed


def test_predictions_after_bad_requests_are_unaffected(
    client: FlaskClient, served: dict[str, Trained]
) -> None:
    """A bad request leaves no state behind: the next good one answers as before."""
    model = served["iris"]
    for body in ({"instances": [[1, 2, "x", 4]]}, {"instances": [None]}, {"inputs": {"a": [1]}}):
        assert post(client, body).status_code in {400, 422}
    response = post(client, {"instances": model.lists()})
    assert response.status_code == 200
    assert response.get_json()["predictions"] == model.expected()

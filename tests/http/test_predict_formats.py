"""Every request format the prediction API accepts answers what the model itself predicts."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson
import pytest
from flask.testing import FlaskClient
from httpcases import Trained, register

from wharf.services import Services

Body = Callable[[Trained], dict[str, Any]]


def shuffled(columns: list[str]) -> list[str]:
    """The columns in an order other than the signature's (reversed)."""
    return columns[::-1] if len(columns) > 1 else columns


def instances_objects(m: Trained) -> dict[str, Any]:
    return {"instances": m.records()}


def instances_lists(m: Trained) -> dict[str, Any]:
    return {"instances": m.lists()}


def inputs_columns(m: Trained) -> dict[str, Any]:
    return {"inputs": {c: [r[c] for r in m.records()] for c in m.columns}}


def dataframe_split(m: Trained) -> dict[str, Any]:
    order = shuffled(m.columns)
    return {"dataframe_split": {"columns": order, "data": [[r[c] for c in order] for r in m.records()]}}


def dataframe_records(m: Trained) -> dict[str, Any]:
    return {"dataframe_records": m.records()}


JSON_FORMATS: list[Body] = [
    instances_objects,
    instances_lists,
    inputs_columns,
    dataframe_split,
    dataframe_records,
]
MODELS = ["iris", "iris_imputed", "reviews", "houses"]


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("body", JSON_FORMATS, ids=lambda f: f.__name__)
def test_json_format_answers_model_predictions(
    client: FlaskClient, served: dict[str, Trained], name: str, body: Body
) -> None:
    model = served[name]
    response = client.post(f"/v1/models/{name}/predict", json=body(model))
    assert response.status_code == 200, response.get_json()
    assert response.mimetype == "application/json"
    answer = response.get_json()
    assert answer["model"] == name
    assert answer["version"] == 1
    assert answer["predictions"] == model.expected()
    assert "probabilities" not in answer


def test_split_columns_in_signature_order_also_answer(
    client: FlaskClient, served: dict[str, Trained]
) -> None:
    model = served["houses"]
    split = {"columns": model.columns, "data": model.lists()}
    response = client.post("/v1/models/houses/predict", json={"dataframe_split": split})
    assert response.status_code == 200
    assert response.get_json()["predictions"] == model.expected()


@pytest.mark.parametrize("name", MODELS)
def test_csv_with_header_in_any_order_answers_model_predictions(
    client: FlaskClient, served: dict[str, Trained], name: str
) -> None:
    model = served[name]
    document = model.rows[shuffled(model.columns)].to_csv(index=False)
    response = client.post(f"/v1/models/{name}/predict", data=document, content_type="text/csv")
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["predictions"] == model.expected()


def test_csv_with_utf8_bom_and_charset_answers(client: FlaskClient, served: dict[str, Trained]) -> None:
    model = served["iris"]
    document = "\ufeff" + model.rows.to_csv(index=False)
    response = client.post(
        "/v1/models/iris/predict", data=document.encode(), content_type="text/csv; charset=utf-8"
    )
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["predictions"] == model.expected()


def test_csv_empty_cell_is_a_missing_value_where_nullable(
    client: FlaskClient, served: dict[str, Trained]
) -> None:
    model = served["iris_imputed"]
    rows = model.rows.copy()
    rows.loc[1, "petal_width"] = np.nan
    response = client.post(
        "/v1/models/iris_imputed/predict", data=rows.to_csv(index=False), content_type="text/csv"
    )
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["predictions"] == model.expected(rows)


def test_curl_default_content_type_is_read_as_json(client: FlaskClient, served: dict[str, Trained]) -> None:
    """``curl -d`` sends application/x-www-form-urlencoded; the body is still JSON."""
    model = served["iris"]
    response = client.post(
        "/v1/models/iris/predict",
        data=orjson.dumps(instances_lists(model)),
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 200
    assert response.get_json()["predictions"] == model.expected()


@pytest.mark.parametrize("name", ["iris", "reviews"])
@pytest.mark.parametrize(
    ("query", "extra"),
    [
        ({"probabilities": "true"}, {}),
        ({"probabilities": "1"}, {}),
        ({}, {"return": ["probabilities"]}),
        ({}, {"return": ["predictions", "probabilities"]}),
        ({}, {"return": "probabilities"}),
    ],
    ids=["query-true", "query-1", "return-list", "return-both", "return-string"],
)
def test_probabilities_equal_predict_proba(
    client: FlaskClient, served: dict[str, Trained], name: str, query: dict[str, str], extra: dict[str, Any]
) -> None:
    model = served[name]
    response = client.post(
        f"/v1/models/{name}/predict", json={**instances_objects(model), **extra}, query_string=query
    )
    assert response.status_code == 200, response.get_json()
    answer = response.get_json()
    assert answer["predictions"] == model.expected()
    assert answer["classes"] == model.model.classes_.tolist()
    np.testing.assert_allclose(answer["probabilities"], model.expected_proba(), rtol=1e-12, atol=0)


def test_probabilities_for_csv_via_query(client: FlaskClient, served: dict[str, Trained]) -> None:
    model = served["iris"]
    response = client.post(
        "/v1/models/iris/predict?probabilities=true",
        data=model.rows.to_csv(index=False),
        content_type="text/csv",
    )
    assert response.status_code == 200
    np.testing.assert_allclose(response.get_json()["probabilities"], model.expected_proba(), rtol=1e-12)


@pytest.mark.parametrize("query", [{"probabilities": "false"}, {"probabilities": "0"}, {}])
def test_no_probabilities_unless_asked(
    client: FlaskClient, served: dict[str, Trained], query: dict[str, str]
) -> None:
    response = client.post(
        "/v1/models/iris/predict", json=instances_lists(served["iris"]), query_string=query
    )
    assert response.status_code == 200
    assert "probabilities" not in response.get_json()
    assert "classes" not in response.get_json()


def test_return_predictions_only_gives_no_probabilities(
    client: FlaskClient, served: dict[str, Trained]
) -> None:
    body = {**instances_lists(served["iris"]), "return": ["predictions"]}
    response = client.post("/v1/models/iris/predict", json=body)
    assert response.status_code == 200
    assert "probabilities" not in response.get_json()


def test_null_accepted_where_the_model_imputes(client: FlaskClient, served: dict[str, Trained]) -> None:
    model = served["iris_imputed"]
    rows = model.rows.copy()
    rows.loc[0, "sepal_width"] = np.nan
    rows.loc[2, "petal_length"] = np.nan
    records = model.records()
    records[0]["sepal_width"] = None
    del records[2]["petal_length"]  # an absent nullable key is a missing value too
    response = client.post("/v1/models/iris_imputed/predict", json={"instances": records})
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["predictions"] == model.expected(rows)


def test_null_in_columns_format_where_the_model_imputes(
    client: FlaskClient, served: dict[str, Trained]
) -> None:
    model = served["iris_imputed"]
    rows = model.rows.copy()
    rows.loc[3, "petal_width"] = np.nan
    body = inputs_columns(model)
    body["inputs"]["petal_width"][3] = None
    response = client.post("/v1/models/iris_imputed/predict", json=body)
    assert response.status_code == 200
    assert response.get_json()["predictions"] == model.expected(rows)


def test_predict_named_version(services: Services, client: FlaskClient, trained: dict[str, Trained]) -> None:
    first = register(services, trained["iris"], "flowers")
    second = register(services, trained["iris_constant"], "flowers")
    assert (first, second) == (1, 2)
    body = instances_lists(trained["iris"])
    for version, model in ((1, trained["iris"]), (2, trained["iris_constant"])):
        response = client.post(f"/v1/models/flowers/versions/{version}/predict", json=body)
        assert response.status_code == 200
        answer = response.get_json()
        assert answer["version"] == version
        assert answer["predictions"] == model.expected()
    assert trained["iris"].expected() != trained["iris_constant"].expected()


def test_latest_version_follows_a_new_registration(
    services: Services, client: FlaskClient, trained: dict[str, Trained]
) -> None:
    body = instances_lists(trained["iris"])
    register(services, trained["iris"], "flowers")
    before = client.post("/v1/models/flowers/predict", json=body).get_json()
    assert before["version"] == 1
    assert before["predictions"] == trained["iris"].expected()

    register(services, trained["iris_constant"], "flowers")
    after = client.post("/v1/models/flowers/predict", json=body).get_json()
    assert after["version"] == 2
    assert after["predictions"] == trained["iris_constant"].expected()


def test_latest_version_follows_an_upload(client: FlaskClient, trained: dict[str, Trained]) -> None:
    body = instances_lists(trained["iris"])
    for version, model in ((1, trained["iris"]), (2, trained["iris_constant"])):
        upload = client.post(
            "/v1/models/flowers/versions",
            data={"file": (io.BytesIO(model.path.read_bytes()), "model.joblib")},
            content_type="multipart/form-data",
        )
        assert upload.status_code == 201, upload.get_json()
        answer = client.post("/v1/models/flowers/predict", json=body).get_json()
        assert answer["version"] == version
        assert answer["predictions"] == model.expected()


def test_latest_version_falls_back_after_deleting_it(
    services: Services, client: FlaskClient, trained: dict[str, Trained]
) -> None:
    body = instances_lists(trained["iris"])
    register(services, trained["iris"], "flowers")
    register(services, trained["iris_constant"], "flowers")
    assert client.post("/v1/models/flowers/predict", json=body).get_json()["version"] == 2
    assert client.delete("/v1/models/flowers/versions/2").status_code == 200
    answer = client.post("/v1/models/flowers/predict", json=body).get_json()
    assert answer["version"] == 1
    assert answer["predictions"] == trained["iris"].expected()


def test_many_rows_in_one_request(client: FlaskClient, served: dict[str, Trained]) -> None:
    model = served["iris"]
    rows = model.rows.sample(n=500, replace=True, random_state=0).reset_index(drop=True)
    response = client.post("/v1/models/iris/predict", json={"instances": rows.to_numpy().tolist()})
    assert response.status_code == 200
    assert response.get_json()["predictions"] == model.expected(rows)


def test_int_column_takes_integral_floats(client: FlaskClient, served: dict[str, Trained]) -> None:
    model = served["houses"]
    records = model.records()
    for record in records:
        record["rooms"] = float(record["rooms"])
    response = client.post("/v1/models/houses/predict", json={"instances": records})
    assert response.status_code == 200
    assert response.get_json()["predictions"] == model.expected()

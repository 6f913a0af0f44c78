"""A version's life after registration, through the Flask test client: aliases and predicting by
alias, archive and restore, edits of description and tags, and the listings that filter on them.

Two real iris versions answer differently (v1 a logistic regression, v2 always "virginica"), so
every prediction says by its labels, not only by its ``version``, which version answered.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from flask.testing import FlaskClient
from httpcases import Trained, check_problem, register

from wharf.services import Services
from wharf.services.registry import Registry
from wharf.storage import MetadataStore

ALIASES = "/v1/models/iris/aliases"
VERSION_FIELDS = {"status", "aliases", "lineage", "metrics"}
ROWS = [  # one of each class: v1 tells them apart, v2 says "virginica" to all
    {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2},
    {"sepal_length": 7.0, "sepal_width": 3.2, "petal_length": 4.7, "petal_width": 1.4},
    {"sepal_length": 6.3, "sepal_width": 3.3, "petal_length": 6.0, "petal_width": 2.5},
]


@pytest.fixture
def iris(services: Services, served: dict[str, Trained]) -> dict[int, Trained]:
    """iris v1 (logistic regression) and v2 (a constant classifier): the model behind each version."""
    assert register(services, served["iris_constant"], "iris") == 2
    versions = {1: served["iris"], 2: served["iris_constant"]}
    assert versions[1].expected() != versions[2].expected()  # the labels tell them apart
    return versions


def predict(client: FlaskClient, ref: str = "iris", version: int | None = None) -> dict[str, Any]:
    at = f"/versions/{version}" if version is not None else ""
    response = client.post(f"/v1/models/{ref}{at}/predict", json={"instances": ROWS})
    assert response.status_code == 200, response.get_json()
    body: dict[str, Any] = response.get_json()
    return body


def answer(client: FlaskClient, ref: str = "iris") -> tuple[int, list[Any]]:
    """Which version answered a prediction of ``ref``, and its labels."""
    body = predict(client, ref)
    return body["version"], body["predictions"]


def point(client: FlaskClient, alias: str, version: int, method: str = "POST") -> dict[str, Any]:
    response = client.open(f"{ALIASES}/{alias}", method=method, json={"version": version})
    assert response.status_code == 200, response.get_json()
    body: dict[str, Any] = response.get_json()
    return body


def status(client: FlaskClient, version: int, action: str) -> Any:
    return client.post(f"/v1/models/iris/versions/{version}/{action}")


def versions(client: FlaskClient, query: str = "") -> tuple[list[int], int]:
    response = client.get(f"/v1/models/iris/versions{query}")
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    return [v["version"] for v in body["versions"]], body["total"]


@pytest.fixture(autouse=True)
def _rows_are_the_trained_rows(trained: dict[str, Trained]) -> None:
    """ROWS are the first three of the rows each iris model carries, so its ``expected()`` is theirs."""
    assert trained["iris"].records()[:3] == ROWS


def expected_on_rows(model: Trained) -> list[Any]:
    """The in-process model's labels for ROWS."""
    return model.expected(model.rows.iloc[:3])


def expect_rows(iris: dict[int, Trained], version: int) -> tuple[int, list[Any]]:
    return version, expected_on_rows(iris[version])


# -- aliases ---------------------------------------------------------------------------------


def test_alias_create_move_and_delete(client: FlaskClient, iris: dict[int, Trained]) -> None:
    assert client.get(ALIASES).get_json() == {"name": "iris", "aliases": {}}
    created = point(client, "production", 1)
    assert created == {"name": "iris", "alias": "production", "version": 1, "previous": None}
    assert point(client, "production", 2, method="PUT")["previous"] == 1
    assert point(client, "production", 2)["previous"] == 2  # pointing again where it points
    assert point(client, "staging", 1)["previous"] is None
    assert client.get(ALIASES).get_json()["aliases"] == {"production": 2, "staging": 1}
    assert client.get("/v1/models/iris/versions/1").get_json()["aliases"] == ["staging"]
    assert client.get("/v1/models/iris/versions/2").get_json()["aliases"] == ["production"]

    gone = client.delete(f"{ALIASES}/staging")
    assert gone.status_code == 200
    assert gone.get_json() == {"name": "iris", "alias": "staging", "version": 1, "previous": 1}
    assert client.get(ALIASES).get_json()["aliases"] == {"production": 2}
    check_problem(client.delete(f"{ALIASES}/staging"), 404, field="alias", detail="Its aliases: production.")


def test_predicting_by_alias_follows_a_move_at_once(client: FlaskClient, iris: dict[int, Trained]) -> None:
    point(client, "production", 1)
    v1, v2 = expected_on_rows(iris[1]), expected_on_rows(iris[2])
    assert answer(client, "iris@production") == (1, v1)
    assert answer(client) == (2, v2)  # latest: the newest active version
    point(client, "production", 2)
    assert answer(client, "iris@production") == (2, v2)
    point(client, "production", 1)
    assert answer(client, "iris@production") == (1, v1)
    response = client.post("/v1/models/iris@production/predict?probabilities=true", json={"instances": ROWS})
    body = response.get_json()
    assert body["version"] == 1
    expected = iris[1].expected_proba(iris[1].rows.iloc[:3])
    np.testing.assert_allclose(body["probabilities"], expected, rtol=1e-9)
    csv = "sepal_length,sepal_width,petal_length,petal_width\n5.1,3.5,1.4,0.2\n"
    by_csv = client.post("/v1/models/iris@production/predict", data=csv, content_type="text/csv")
    assert (by_csv.get_json()["version"], by_csv.get_json()["predictions"]) == (1, v1[:1])


def test_an_alias_moved_in_the_registry_is_seen_at_the_next_request(
    client: FlaskClient, services: Services, iris: dict[int, Trained]
) -> None:
    point(client, "production", 1)
    assert answer(client, "iris@production")[0] == 1
    services.registry.set_alias("iris", "production", 2)  # no route, no sync: as another replica
    assert answer(client, "iris@production") == (2, expected_on_rows(iris[2]))


def test_a_change_made_by_another_replica_is_seen_at_the_next_request(
    client: FlaskClient, services: Services, iris: dict[int, Trained]
) -> None:
    """Another process's own connection to the same database: only the generation tells this app."""
    replica = Registry(MetadataStore(services.settings.resolved_database_url), services.registry.artifacts)
    try:
        assert answer(client)[0] == 2
        replica.set_alias("iris", "canary", 1)
        assert answer(client, "iris@canary") == (1, expected_on_rows(iris[1]))
        replica.set_status("iris", 2, "archived")
        assert answer(client) == (1, expected_on_rows(iris[1]))
        replica.delete_alias("iris", "canary")
        check_problem(client.post("/v1/models/iris@canary/predict", json={"instances": ROWS}), 404)
    finally:
        replica.metadata.close()


def test_unknown_aliases_and_models_are_404(client: FlaskClient, iris: dict[int, Trained]) -> None:
    def predicted(ref: str) -> Any:
        return client.post(f"/v1/models/{ref}/predict", json={"instances": ROWS})

    check_problem(predicted("iris@production"), 404, field="alias", detail="It has no aliases.")
    point(client, "production", 1)
    check_problem(predicted("iris@producton"), 404, field="alias", detail="Did you mean 'production'?")
    check_problem(predicted("iris@canary"), 404, field="alias", detail="Its aliases: production.")
    check_problem(predicted("irsi@production"), 404, field="name", detail="Did you mean 'iris'?")
    check_problem(client.get("/v1/models/irsi/aliases"), 404, field="name", detail="Did you mean 'iris'?")
    check_problem(client.delete("/v1/models/irsi/aliases/production"), 404, field="name")
    wrong_url = client.post("/v1/models/iris@production/versions/1/predict", json={"instances": ROWS})
    check_problem(wrong_url, 422, field="name")


@pytest.mark.parametrize("alias", ["Production", "latest", "a" * 65, "1st", "prod.v1", "-x", "canary!"])
def test_invalid_alias_names_are_422(client: FlaskClient, iris: dict[int, Trained], alias: str) -> None:
    check_problem(client.post(f"{ALIASES}/{alias}", json={"version": 1}), 422, field="alias")
    check_problem(client.put(f"{ALIASES}/{alias}", json={"version": 1}), 422, field="alias")
    check_problem(client.delete(f"{ALIASES}/{alias}"), 422, field="alias")
    predicted = client.post(f"/v1/models/iris@{alias}/predict", json={"instances": ROWS})
    check_problem(predicted, 422, field="alias")
    assert client.get(ALIASES).get_json()["aliases"] == {}


def test_the_longest_alias_name_is_taken(client: FlaskClient, iris: dict[int, Trained]) -> None:
    longest = "a" + "b-_9" * 15 + "xyz"
    assert len(longest) == 64
    assert point(client, longest, 1)["alias"] == longest
    assert answer(client, f"iris@{longest}")[0] == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"version": 0}, "body.version"),
        ({"version": "two"}, "body.version"),
        ({"version": True}, "body.version"),  # a boolean is no version number, not version 1
        ({"versoin": 1}, "body.version"),  # the missing field is named first
        ({}, "body.version"),
        ([1], "body"),
    ],
)
def test_bad_alias_bodies_are_422(
    client: FlaskClient, iris: dict[int, Trained], body: Any, field: str
) -> None:
    check_problem(client.post(f"{ALIASES}/production", json=body), 422, field=field)
    assert client.get(ALIASES).get_json()["aliases"] == {}


def test_an_alias_points_only_at_an_active_version(client: FlaskClient, iris: dict[int, Trained]) -> None:
    missing = client.post(f"{ALIASES}/production", json={"version": 9})
    check_problem(missing, 404, field="version", detail="has no version 9")
    nameless = client.post("/v1/models/nope/aliases/production", json={"version": 1})
    check_problem(nameless, 404, field="name")
    assert status(client, 1, "archive").status_code == 200
    archived = client.post(f"{ALIASES}/production", json={"version": 1})
    check_problem(archived, 409, field="version", detail="archived")
    assert client.get(ALIASES).get_json()["aliases"] == {}


# -- archive and restore ---------------------------------------------------------------------


def test_archive_is_refused_while_an_alias_points(client: FlaskClient, iris: dict[int, Trained]) -> None:
    point(client, "production", 1)
    check_problem(status(client, 1, "archive"), 409, field="version", detail="'production'")
    point(client, "staging", 1)
    both = check_problem(status(client, 1, "archive"), 409, field="version")
    assert "'production'" in both["detail"] and "'staging'" in both["detail"]
    assert client.get("/v1/models/iris/versions/1").get_json()["status"] == "active"
    assert answer(client, "iris@production") == expect_rows(iris, 1)

    point(client, "production", 2)
    client.delete(f"{ALIASES}/staging")
    archived = status(client, 1, "archive")
    assert archived.status_code == 200
    assert (archived.get_json()["status"], archived.get_json()["aliases"]) == ("archived", [])


def test_an_archived_version_is_never_latest_and_answers_nothing(
    client: FlaskClient, iris: dict[int, Trained]
) -> None:
    assert answer(client) == expect_rows(iris, 2)
    assert status(client, 2, "archive").get_json()["status"] == "archived"
    assert answer(client) == expect_rows(iris, 1)  # latest falls back to the newest active one
    model = client.get("/v1/models/iris").get_json()
    assert (model["latest_version"], model["latest"]["version"], model["versions"]) == (1, 1, 2)
    explicit = client.post("/v1/models/iris/versions/2/predict", json={"instances": ROWS})
    check_problem(explicit, 409, field="version", detail="archived")
    assert predict(client, version=1)["version"] == 1
    assert status(client, 2, "archive").status_code == 200  # archiving twice changes nothing

    restored = status(client, 2, "restore")
    assert restored.status_code == 200 and restored.get_json()["status"] == "active"
    assert answer(client) == expect_rows(iris, 2)
    assert predict(client, version=2)["predictions"] == expected_on_rows(iris[2])


def test_when_every_version_is_archived_latest_is_404(client: FlaskClient, iris: dict[int, Trained]) -> None:
    status(client, 1, "archive")
    status(client, 2, "archive")
    latest = client.post("/v1/models/iris/predict", json={"instances": ROWS})
    check_problem(latest, 404, field="version", detail="Every version of 'iris' is archived")
    model = client.get("/v1/models/iris").get_json()
    assert (model["latest_version"], model["latest"], model["versions"]) == (None, None, 2)
    listed = {m["name"]: m for m in client.get("/v1/models").get_json()["models"]}
    assert listed["iris"]["latest_version"] is None
    status(client, 1, "restore")
    assert answer(client) == expect_rows(iris, 1)


def test_archive_and_restore_of_missing_versions_are_404(
    client: FlaskClient, iris: dict[int, Trained]
) -> None:
    check_problem(status(client, 9, "archive"), 404, field="version")
    check_problem(status(client, 9, "restore"), 404, field="version")
    check_problem(client.post("/v1/models/nope/versions/1/archive"), 404, field="name")


# -- deletion --------------------------------------------------------------------------------


def test_deleting_what_an_alias_points_at_is_refused(
    client: FlaskClient, services: Services, iris: dict[int, Trained]
) -> None:
    point(client, "production", 1)
    check_problem(client.delete("/v1/models/iris/versions/1"), 409, field="version", detail="'production'")
    check_problem(client.delete("/v1/models/iris"), 409, field="name", detail="'production'")
    assert versions(client) == ([1, 2], 2)
    assert client.get(ALIASES).get_json()["aliases"] == {"production": 1}
    assert answer(client, "iris@production") == expect_rows(iris, 1)
    assert answer(client) == expect_rows(iris, 2)
    for record in services.registry.versions("iris"):
        assert services.registry.artifacts.local_path(record.artifact).is_file()

    client.delete(f"{ALIASES}/production")
    deleted = client.delete("/v1/models/iris/versions/1")
    assert deleted.get_json() == {"name": "iris", "deleted": [1]}
    assert client.delete("/v1/models/iris").get_json() == {"name": "iris", "deleted": [2]}


# -- edits -----------------------------------------------------------------------------------


def test_patch_edits_the_description_and_merges_tags(client: FlaskClient, iris: dict[int, Trained]) -> None:
    url = "/v1/models/iris/versions/1"
    first = client.patch(url, json={"description": "first", "tags": {"team": "ml", "stage": "dev"}})
    assert first.status_code == 200, first.get_json()
    assert (first.get_json()["description"], first.get_json()["tags"]) == (
        "first",
        {"team": "ml", "stage": "dev"},
    )
    merged = client.patch(url, json={"tags": {"stage": "prod", "team": None, "absent": None}}).get_json()
    assert (merged["description"], merged["tags"]) == ("first", {"stage": "prod"})
    assert client.patch(url, json={"description": ""}).get_json()["tags"] == {"stage": "prod"}
    stored = client.get(url).get_json()
    assert (stored["description"], stored["tags"]) == ("", {"stage": "prod"})
    assert client.get("/v1/models/iris/versions/2").get_json()["tags"] == {}


@pytest.mark.parametrize(
    ("body", "field", "detail"),
    [
        ({"descripton": "x"}, "body.descripton", "Did you mean 'description'?"),
        ({"description": 5}, "body.description", None),
        ({"description": "x" * 10_001}, "body.description", None),
        ({"tags": ["team"]}, "body.tags", None),
        ({"tags": {"team": 1}}, "body.tags.team", None),
        ({"status": "archived"}, "body.status", None),
        ([], "body", None),
    ],
)
def test_bad_edits_are_422(
    client: FlaskClient, iris: dict[int, Trained], body: Any, field: str, detail: str | None
) -> None:
    check_problem(client.patch("/v1/models/iris/versions/1", json=body), 422, field=field, detail=detail)
    unchanged = client.get("/v1/models/iris/versions/1").get_json()
    assert (unchanged["description"], unchanged["tags"], unchanged["status"]) == ("", {}, "active")


def test_edits_of_missing_versions(client: FlaskClient, iris: dict[int, Trained]) -> None:
    check_problem(client.patch("/v1/models/iris/versions/9", json={"description": "x"}), 404, field="version")
    check_problem(client.patch("/v1/models/nope/versions/1", json={"description": "x"}), 404, field="name")
    not_json = client.patch("/v1/models/iris/versions/1", data="x", content_type="text/plain")
    check_problem(not_json, 415)


# -- listings --------------------------------------------------------------------------------


def test_search_is_a_case_insensitive_literal_substring(
    client: FlaskClient, services: Services, served: dict[str, Trained]
) -> None:
    for name in ("irisXimputed", "IRIS-upper"):
        register(services, served["iris"], name)

    def found(search: str) -> list[str]:
        body = client.get("/v1/models", query_string={"search": search}).get_json()
        assert body["total"] == len(body["models"])
        return [m["name"] for m in body["models"]]

    assert found("iris") == sorted(["IRIS-upper", "iris", "iris_imputed", "irisXimputed"])
    assert found("HoUs") == ["houses"]
    assert found("s_i") == ["iris_imputed"]  # '_' is an underscore, not any one character
    assert found("_") == ["iris_imputed"]
    assert found("%") == []  # '%' is a percent sign, not any characters
    assert found("i%s") == []
    assert found("\\") == []
    assert found("") == sorted(["IRIS-upper", "houses", "iris", "iris_imputed", "irisXimputed", "reviews"])


def test_models_are_paged_with_their_total(client: FlaskClient, served: dict[str, Trained]) -> None:
    names = sorted(["houses", "iris", "iris_imputed", "reviews"])

    def page(query: str) -> tuple[list[str], int]:
        body = client.get(f"/v1/models?{query}").get_json()
        return [m["name"] for m in body["models"]], body["total"]

    assert page("limit=2") == (names[:2], 4)
    assert page("limit=2&offset=1") == (names[1:3], 4)
    assert page("offset=3") == (names[3:], 4)
    assert page("offset=10") == ([], 4)
    assert page("search=iris&limit=1&offset=1") == (["iris_imputed"], 2)
    check_problem(client.get("/v1/models?limit=0"), 422, field="limit")
    check_problem(client.get("/v1/models?offset=-1"), 422, field="offset")


def test_models_show_their_aliases_and_newest_active_version(
    client: FlaskClient, iris: dict[int, Trained]
) -> None:
    point(client, "production", 1)
    status(client, 2, "archive")
    listed = {m["name"]: m for m in client.get("/v1/models").get_json()["models"]}
    assert (listed["iris"]["latest_version"], listed["iris"]["aliases"]) == (1, {"production": 1})
    assert listed["iris"]["latest"]["aliases"] == ["production"]
    assert listed["houses"]["aliases"] == {}
    model = client.get("/v1/models/iris").get_json()
    assert (model["latest_version"], model["aliases"], model["versions"]) == (1, {"production": 1}, 2)
    status(client, 2, "restore")
    assert client.get("/v1/models/iris").get_json()["latest_version"] == 2


def test_versions_filter_on_status_and_tags(
    client: FlaskClient, services: Services, iris: dict[int, Trained]
) -> None:
    assert register(services, iris[1], "iris", tags={"team": "ops", "gpu": "", "url": "a:b"}) == 3
    client.patch("/v1/models/iris/versions/2", json={"tags": {"team": "ml"}})
    status(client, 1, "archive")
    point(client, "production", 3)

    assert versions(client) == ([1, 2, 3], 3)
    assert versions(client, "?status=active") == ([2, 3], 2)
    assert versions(client, "?status=archived") == ([1], 1)
    assert versions(client, "?tag=team:ml") == ([2], 1)
    assert versions(client, "?tag=team") == ([2, 3], 2)
    assert versions(client, "?tag=gpu") == ([3], 1)
    assert versions(client, "?tag=gpu:") == ([3], 1)
    assert versions(client, "?tag=url:a:b") == ([3], 1)
    assert versions(client, "?tag=team:nope") == ([], 0)
    assert versions(client, "?limit=1&offset=1") == ([2], 3)
    assert versions(client, "?status=active&tag=team&limit=1") == ([2], 2)
    body = client.get("/v1/models/iris/versions").get_json()["versions"]
    assert all(VERSION_FIELDS <= set(v) for v in body)
    assert [(v["status"], v["aliases"]) for v in body] == [
        ("archived", []),
        ("active", []),
        ("active", ["production"]),
    ]
    assert body[2]["lineage"] is None and body[2]["metrics"] is None

    check_problem(
        client.get("/v1/models/iris/versions?status=retired"), 422, field="status", detail="'retired'"
    )
    check_problem(client.get("/v1/models/iris/versions?status=active&status=archived"), 422, field="status")
    check_problem(client.get("/v1/models/nope/versions?status=active"), 404, field="name")


# -- permissions -----------------------------------------------------------------------------


def test_aliases_need_the_register_permission(
    client: FlaskClient, services: Services, iris: dict[int, Trained]
) -> None:
    def as_role(role: str, models: list[str] | None = None) -> FlaskClient:
        other = client.application.test_client()
        other.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {services.keys.create(role, models)[1]}"
        return other

    point(client, "production", 1)
    reader, predictor, trainer = as_role("reader"), as_role("predictor"), as_role("trainer")
    assert reader.get(ALIASES).get_json()["aliases"] == {"production": 1}
    check_problem(reader.post(f"{ALIASES}/production", json={"version": 2}), 403)
    check_problem(reader.delete(f"{ALIASES}/production"), 403)
    check_problem(reader.patch("/v1/models/iris/versions/1", json={"description": "x"}), 403)
    check_problem(reader.post("/v1/models/iris/versions/2/archive"), 403)
    check_problem(reader.post("/v1/models/iris@production/predict", json={"instances": ROWS}), 403)
    check_problem(predictor.put(f"{ALIASES}/production", json={"version": 2}), 403)
    assert answer(predictor, "iris@production") == expect_rows(iris, 1)

    assert point(trainer, "production", 2)["previous"] == 1
    assert answer(predictor, "iris@production") == expect_rows(iris, 2)
    limited = as_role("admin", ["houses"])
    check_problem(limited.post("/v1/models/iris@production/predict", json={"instances": ROWS}), 403)
    check_problem(limited.get(ALIASES), 403)


def test_a_browser_may_send_the_edit(make_client: Any) -> None:
    """PATCH is a lifecycle route's method: a CORS preflight for it must allow it."""
    client = make_client(cors_origins=("https://app.example",))
    preflight = client.options(
        "/v1/models/iris/versions/1",
        headers={"Origin": "https://app.example", "Access-Control-Request-Method": "PATCH"},
    )
    allowed = preflight.headers.get("Access-Control-Allow-Methods", "")
    assert "PATCH" in [m.strip() for m in allowed.split(",")], allowed

"""The listings' query parameters (wharf.http.bodies): a bad value is a 422 naming it, never a 500."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient
from httpcases import Trained, check_problem

LISTINGS = ["/v1/jobs", "/v1/audit"]
HUGE = "9" * 5000
"""More digits than Python's int() takes from a string by default."""


@pytest.mark.parametrize("listing", LISTINGS)
@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=-1", "limit"),
        ("limit=%C2%B2", "limit"),  # "²": a digit to str.isdigit(), not to int()
        ("limit=%EF%BC%91", "limit"),  # a full-width "1"
        ("limit=1&limit=2", "limit"),
        ("offset=-1", "offset"),
        ("offset=2147483648", "offset"),
        ("offset=99999999999999999999999", "offset"),  # past the database's integers
        (f"offset={HUGE}", "offset"),
        ("offset=1&offset=", "offset"),
    ],
)
def test_bad_paging_is_422_naming_it(client: FlaskClient, listing: str, query: str, field: str) -> None:
    problem = check_problem(client.get(f"{listing}?{query}"), 422, field=field)
    assert len(problem["detail"]) < 200  # a huge value is not echoed whole


@pytest.mark.parametrize("listing", LISTINGS)
@pytest.mark.parametrize("query", ["", "limit=", "offset=", "limit=1000&offset=2147483647", "limit=007"])
def test_good_paging_is_answered(client: FlaskClient, listing: str, query: str) -> None:
    assert client.get(f"{listing}?{query}").status_code == 200


@pytest.mark.parametrize(
    ("url", "field"),
    [
        ("/v1/jobs?state=queued&state=running", "state"),
        ("/v1/audit?key_id=a&key_id=b", "key_id"),
        ("/v1/audit?action=x&action=y", "action"),
    ],
)
def test_a_parameter_given_twice_is_422(client: FlaskClient, url: str, field: str) -> None:
    check_problem(client.get(url), 422, field=field, detail="given 2 times")


def test_probabilities_given_twice_is_422(client: FlaskClient, served: dict[str, Trained]) -> None:
    url = "/v1/models/iris/predict?probabilities=true&probabilities=false"
    body = {"instances": [[5.1, 3.5, 1.4, 0.2]]}
    check_problem(client.post(url, json=body), 422, field="probabilities")

"""The dashboard at /ui through the Flask test client: the login and its cookie, redirects and
refusals, permissions and model limits, the same-origin rule for POSTs, security headers, pages
that load nothing from elsewhere, and input errors answered as clear 4xx (never a 500)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from httpcases import IRIS_COLUMNS, PROBLEM, Trained, check_problem, register
from sklearn.datasets import load_iris
from werkzeug.test import TestResponse

from auth import ADMIN_KEY
from wharf import Settings, create_app
from wharf.flask import Wharf
from wharf.http.security import PAGE_CSP
from wharf.http.ui import ROUTES
from wharf.http.ui_session import COOKIE, UI_HEADER
from wharf.services import Services

FORM = {"Sec-Fetch-Site": "same-origin"}
"""What a browser sends with a form of the page's own origin (the login form)."""
HTML = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8", **FORM}
"""What a browser sends when it opens a page (or posts one of its forms)."""
SAME = {UI_HEADER: "1"}
PAGES = ["/ui/", "/ui/models/iris", "/ui/jobs", "/ui/datasets", "/ui/datasets/1"]
JSON_ROUTES = [
    "/ui/api/jobs",
    "/ui/api/models/iris/history",
    "/ui/api/models/iris/drift",
    "/ui/api/models/iris/drift/history",
]
STATIC = ["ui.js", "ui.css", "favicon.svg"]
SVG_NAMESPACE = "http://www.w3.org/2000/svg"
"""An XML namespace name in the SVG files and the script that draws charts: never fetched."""
ROW = dict(zip(IRIS_COLUMNS, [5.1, 3.5, 1.4, 0.2], strict=True))


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """The suite's settings with no job worker: the jobs made here are never run."""
    return Settings(
        home=tmp_path / "home",
        refresh_seconds=0,
        admin_key=ADMIN_KEY,
        key_cache_seconds=0,
        rate_limits={},
        job_workers=0,
    )


@pytest.fixture
def content(services: Services, served: dict[str, Trained], tmp_path: Path) -> dict[str, int]:
    """Served models (iris, iris_imputed, reviews, houses), a dataset and a queued job."""
    iris = load_iris(as_frame=True)
    table = iris.data.set_axis(IRIS_COLUMNS, axis=1).assign(species=iris.target_names[iris.target])
    path = tmp_path / "flowers.csv"
    table.to_csv(path, index=False)
    dataset = services.datasets.add(path, "flowers.csv")
    job = services.jobs.table.add("train", {"dataset": dataset.id, "target": "species", "register_as": "fl"})
    return {"dataset": dataset.id, "job": job.id}


def key(services: Services, role: str, models: list[str] | None = None) -> str:
    return services.keys.create(role, models)[1]


def browser(app: Flask, key: str | None = None) -> FlaskClient:
    """A client with no key header, logged in with ``key`` when given (its cookie in the jar)."""
    client = app.test_client()
    if key is not None:
        response = client.post("/ui/login", data={"key": key}, headers=FORM)
        assert response.status_code == 303, response.get_data(as_text=True)
    return client


def login_target(response: TestResponse) -> str:
    """Where a redirect to the login page would come back to (its ``next``)."""
    assert response.status_code == 303, response.get_data(as_text=True)
    location = urlsplit(response.headers["Location"])
    assert location.path == "/ui/login"
    return parse_qs(location.query)["next"][0]


def set_cookie(response: TestResponse) -> str:
    cookies = [c for c in response.headers.getlist("Set-Cookie") if c.startswith(f"{COOKIE}=")]
    assert len(cookies) == 1, response.headers
    return cookies[0]


def check_page(response: TestResponse) -> str:
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    assert response.mimetype == "text/html"
    headers = response.headers
    assert headers["Content-Security-Policy"] == PAGE_CSP
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["Cache-Control"] == "no-store"
    return response.get_data(as_text=True)


# -- not logged in ---------------------------------------------------------------------------


@pytest.mark.usefixtures("content")
def test_pages_without_a_key_redirect_to_the_login_and_back(app: Flask) -> None:
    client = browser(app)
    for path in PAGES:
        assert login_target(client.get(path, headers=HTML)) == path
    assert login_target(client.get("/ui/jobs?state=running")) == "/ui/jobs?state=running"
    login = check_page(client.get("/ui/login?next=/ui/jobs"))
    assert 'name="next" value="/ui/jobs"' in login


@pytest.mark.usefixtures("content")
def test_json_routes_without_a_key_answer_401(app: Flask) -> None:
    client = browser(app)
    for path in JSON_ROUTES:
        response = client.get(path, headers=HTML)
        check_problem(response, 401, detail="log in again")
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    check_problem(client.post("/ui/models/iris/predict", json={"instances": [ROW]}, headers=SAME), 401)


def test_static_files_need_no_key(app: Flask) -> None:
    client = browser(app)
    for name in STATIC:
        with client.get(f"/ui/static/{name}") as response:  # files: close them
            assert response.status_code == 200, name
            assert response.headers["X-Content-Type-Options"] == "nosniff"
            assert (response.mimetype == "text/javascript") == (name == "ui.js")
    for path in ("/ui/static/../ui.py", "/ui/static/%2e%2e/ui.py", "/ui/static/nope.js"):
        with client.get(path) as response:
            assert response.status_code == 404


# -- the login -------------------------------------------------------------------------------


def test_login_keeps_the_key_in_a_strict_http_only_session_cookie(app: Flask, services: Services) -> None:
    reader = key(services, "reader")
    client = app.test_client()
    response = client.post("/ui/login", data={"key": f"  {reader}\n", "next": "/ui/jobs"}, headers=FORM)
    assert response.status_code == 303
    assert response.headers["Location"] == "/ui/jobs"
    cookie = set_cookie(response)
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")[1:]}
    assert attributes == {"httponly", "path", "samesite"}  # no Expires or Max-Age: a session cookie
    assert "Path=/ui" in cookie and "SameSite=Strict" in cookie
    assert cookie.split(";")[0] == f"{COOKIE}={reader}"
    check_page(client.get("/ui/jobs"))

    secure = app.test_client().post(
        "/ui/login", data={"key": reader}, base_url="https://localhost", headers=FORM
    )
    assert "Secure" in set_cookie(secure)


@pytest.mark.parametrize("wrong", ["", "not-a-key", ADMIN_KEY[:-1], "wharf_0123abcd_" + "x" * 43, "k" * 5000])
def test_a_wrong_key_is_refused_at_the_login(app: Flask, wrong: str) -> None:
    client = app.test_client()
    response = client.post("/ui/login", data={"key": wrong}, headers=HTML)
    assert response.status_code == (422 if not wrong else 401)
    assert response.mimetype == "text/html"
    assert COOKIE not in response.headers.get("Set-Cookie", "")
    page = response.get_data(as_text=True)
    assert 'id="login-error"' in page
    assert ("Paste an API key" if not wrong else "not valid") in page
    problem = check_problem(
        client.post("/ui/login", data={"key": wrong}, headers=FORM), 422 if not wrong else 401
    )
    assert problem["field"] == "key"


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example/ui/",
        "//evil.example/ui/",
        "/\\evil.example",
        "\\\\evil.example",
        "/v1/keys",
        "/ui/../v1/keys",
        "/ui/./../docs",
        "/uix",
        "javascript:alert(1)",
        "/ui/login",
        "/ui/logout",
        "/ui/\r\nSet-Cookie: x=1",
        "/ui/" + "a" * 3000,
    ],
)
def test_the_login_returns_only_to_pages_of_the_dashboard(
    app: Flask, services: Services, target: str
) -> None:
    reader = key(services, "reader")
    response = app.test_client().post("/ui/login", data={"key": reader, "next": target}, headers=FORM)
    assert response.headers["Location"] == "/ui/"
    page = app.test_client().get("/ui/login", query_string={"next": target}).get_data(as_text=True)
    assert 'name="next" value="/ui/"' in page


def test_a_revoked_key_sends_the_browser_back_to_the_login(app: Flask, services: Services) -> None:
    record, reader = services.keys.create("reader")
    client = browser(app, reader)
    check_page(client.get("/ui/"))
    services.keys.revoke(record.id)
    response = client.get("/ui/", headers=HTML)
    assert login_target(response) == "/ui/"
    assert "Max-Age=0" in set_cookie(response) or "Expires=Thu, 01 Jan 1970" in set_cookie(response)
    check_problem(browser(app, None).get("/ui/api/jobs", headers={"Cookie": f"{COOKIE}={reader}"}), 401)


def test_logout_forgets_the_key_and_takes_same_origin_posts_only(app: Flask, services: Services) -> None:
    client = browser(app, key(services, "reader"))
    check_problem(client.post("/ui/logout"), 403, field=UI_HEADER)
    check_problem(client.post("/ui/logout", headers={"Origin": "https://evil.example"}), 403)
    check_problem(client.post("/ui/logout", headers={"Sec-Fetch-Site": "cross-site"}), 403)
    check_page(client.get("/ui/"))  # still logged in

    by_script = client.post("/ui/logout", headers=SAME)
    assert by_script.status_code == 204
    assert "Max-Age=0" in set_cookie(by_script) or "Expires=Thu, 01 Jan 1970" in set_cookie(by_script)
    assert login_target(client.get("/ui/")) == "/ui/"

    client = browser(app, key(services, "reader"))
    by_form = client.post("/ui/logout", headers={"Sec-Fetch-Site": "same-origin"})
    assert (by_form.status_code, by_form.headers["Location"]) == (303, "/ui/login")
    assert login_target(client.get("/ui/")) == "/ui/"


# -- logged in -------------------------------------------------------------------------------


def test_every_page_answers_200_to_a_reader(app: Flask, services: Services, content: dict[str, int]) -> None:
    client = browser(app, key(services, "reader"))
    pages = [
        *PAGES,
        "/ui/?search=iri",
        "/ui/?search=nothing-like-it",
        "/ui/models/iris?version=1",
        "/ui/models/houses",
        "/ui/models/reviews",
        "/ui/models/iris_imputed",
        "/ui/jobs?state=queued",
        f"/ui/datasets/{content['dataset']}",
    ]
    for path in pages:
        check_page(client.get(path, headers=HTML))
    for path in [*JSON_ROUTES, "/ui/api/jobs?state=queued", "/ui/api/models/iris/drift?version=1"]:
        response = client.get(path)
        assert response.status_code == 200, (path, response.get_data(as_text=True))
        assert response.mimetype == "application/json"
        assert response.headers["Cache-Control"] == "no-store"

    models = client.get("/ui/").get_data(as_text=True)
    assert all(f'data-model="{name}"' in models for name in ("iris", "houses", "reviews", "iris_imputed"))
    jobs = client.get("/ui/api/jobs").get_json()
    assert [(j["id"], j["state"], j["model"]) for j in jobs["jobs"]] == [(content["job"], "queued", "fl")]
    assert jobs["active"] is True
    assert f'id="job-{content["job"]}"' in client.get("/ui/jobs").get_data(as_text=True)
    profile = client.get(f"/ui/datasets/{content['dataset']}").get_data(as_text=True)
    assert 'data-column="species"' in profile and "setosa" in profile and "median" in profile


def test_the_model_page_builds_the_form_from_the_signature(
    app: Flask, services: Services, served: dict[str, Trained]
) -> None:
    version = register(
        services,
        served["houses"],
        description="<script>alert(1)</script>",
        extra={"example": {"area": 72.5, "rooms": 3, "city": "lyon"}},
    )
    client = browser(app, key(services, "predictor"))
    page = check_page(client.get("/ui/models/houses"))
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert f'data-version="{version}"' in page
    inputs = Inputs.of(page)
    assert list(inputs.fields) == ["area", "rooms", "city"]
    assert inputs.fields["area"] == {"tag": "input", "type": "number", "step": "any", "value": "72.5"}
    # One-hot encoded: the signature lists the values fitted on, offered as a choice (JSON values).
    assert (inputs.fields["rooms"], inputs.fields["city"]) == ({"tag": "select"}, {"tag": "select"})
    assert inputs.options["rooms"] == ["1", "2", "3", "4", "5"]
    assert inputs.options["city"] == ['"lyon"', '"nice"', '"paris"']
    assert inputs.selected == {"rooms": "3", "city": '"lyon"'}
    assert 'id="want-probabilities"' not in page  # a regressor
    first = Inputs.of(check_page(client.get("/ui/models/houses?version=1")))
    assert first.fields["area"]["value"] not in (None, "72.5")  # version 1's own example row
    assert 'id="want-probabilities"' in check_page(client.get("/ui/models/iris"))


class Inputs(HTMLParser):
    """The prediction form's fields: by column, the tag and its attributes; selected options."""

    def __init__(self) -> None:
        super().__init__()
        self.fields: dict[str, dict[str, str | None]] = {}
        self.selected: dict[str, str | None] = {}
        self.options: dict[str, list[str | None]] = {}
        self._select: str | None = None

    @classmethod
    def of(cls, page: str) -> Inputs:
        parser = cls()
        parser.feed(page)
        return parser

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        column = found.get("data-column")
        if column is not None and tag in ("input", "select"):
            keep = {k: found.get(k) for k in ("type", "step", "value") if k in found}
            self.fields[column] = {"tag": tag, **keep}
            self._select = column if tag == "select" else None
        elif tag == "option" and self._select:
            self.options.setdefault(self._select, []).append(found.get("value"))
            if "selected" in found:
                self.selected[self._select] = found.get("value")


def test_a_predictor_predicts_through_the_dashboard(
    app: Flask, services: Services, served: dict[str, Trained]
) -> None:
    client = browser(app, key(services, "predictor"))
    iris = served["iris"]
    body = {"instances": iris.records()}
    response = client.post("/ui/models/iris/predict?probabilities=true&version=1", json=body, headers=SAME)
    assert response.status_code == 200, response.get_data(as_text=True)
    answer = response.get_json()
    assert answer["predictions"] == iris.expected()
    assert answer["classes"] == iris.model.classes_.tolist()
    page = check_page(client.get("/ui/models/iris"))
    assert 'id="predict-form"' in page and 'id="prediction-result"' in page

    for headers in ({"Origin": "http://localhost"}, {"Sec-Fetch-Site": "same-origin"}):
        assert client.post("/ui/models/iris/predict", json=body, headers=headers).status_code == 200
    for headers in (
        {},
        {UI_HEADER: "0"},
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
    ):
        check_problem(
            client.post("/ui/models/iris/predict", json=body, headers=headers), 403, field=UI_HEADER
        )


def test_a_reader_may_look_but_not_predict(
    app: Flask, services: Services, served: dict[str, Trained]
) -> None:
    client = browser(app, key(services, "reader"))
    page = check_page(client.get("/ui/models/iris"))
    assert 'id="predict-form"' not in page and "may not predict" in page
    response = client.post("/ui/models/iris/predict", json={"instances": [ROW]}, headers=SAME)
    check_problem(response, 403, detail="'predict' permission")


def test_a_key_limited_to_some_models_sees_those_only(
    app: Flask, services: Services, served: dict[str, Trained]
) -> None:
    client = browser(app, key(services, "predictor", ["iris"]))
    models = check_page(client.get("/ui/"))
    assert 'data-model="iris"' in models and 'data-model="houses"' not in models
    check_page(client.get("/ui/models/iris"))
    for name in ("houses", "no-such-model"):  # the same answer whether the model exists or not
        page = client.get(f"/ui/models/{name}", headers=HTML)
        assert page.status_code == 403 and page.mimetype == "text/html"
        assert "limited to other models" in page.get_data(as_text=True)
        check_problem(client.get(f"/ui/api/models/{name}/history"), 403, detail="limited to other models")
        check_problem(client.post(f"/ui/models/{name}/predict", json={"instances": [ROW]}, headers=SAME), 403)


def test_header_keys_work_for_scripts(client: FlaskClient, served: dict[str, Trained]) -> None:
    check_page(client.get("/ui/"))
    assert client.get("/ui/api/models/iris/history?minutes=5").get_json()["requests"] == [0] * 5


# -- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "field"),
    [
        ("POST", "/ui/models/iris/predict", {"instances": [{**ROW, "sepal_length": "abc"}]}, 422, None),
        ("POST", "/ui/models/iris/predict", {"instances": [{"sepal_length": 1}]}, 422, None),
        ("POST", "/ui/models/iris/predict", {"instances": [{**ROW, "petal_width": None}]}, 422, None),
        ("POST", "/ui/models/iris/predict", "not json", 400, "body"),
        ("POST", "/ui/models/iris/predict", b"", 415, "Content-Type"),
        ("POST", "/ui/models/iris/predict?version=abc", {"instances": [ROW]}, 422, "version"),
        ("POST", "/ui/models/iris/predict?version=99", {"instances": [ROW]}, 404, "version"),
        ("POST", "/ui/models/nope/predict", {"instances": [ROW]}, 404, "name"),
        ("GET", "/ui/models/iris?version=abc", None, 422, "version"),
        ("GET", "/ui/models/iris?version=0", None, 422, "version"),
        ("GET", "/ui/models/iris?version=99", None, 404, "version"),
        ("GET", "/ui/models/no-such-model", None, 404, "name"),
        ("GET", "/ui/datasets/99", None, 404, None),
        ("GET", f"/ui/datasets/{2**40}", None, 404, None),
        ("GET", "/ui/jobs?state=nope", None, 422, "state"),
        ("GET", "/ui/?search=a&search=b", None, 422, "search"),
        ("GET", "/ui/api/models/iris/history?minutes=0", None, 422, "minutes"),
        ("GET", "/ui/api/models/iris/history?minutes=999999", None, 422, "minutes"),
        ("GET", "/ui/api/models/nope/history", None, 404, "name"),
        ("GET", "/ui/api/models/iris/drift?version=x", None, 422, "version"),
        ("GET", "/ui/api/models/iris/drift/history?hours=0", None, 422, "hours"),
        ("PUT", "/ui/models/iris/predict", None, 405, None),
    ],
)
def test_bad_input_is_a_clear_4xx(
    client: FlaskClient,
    served: dict[str, Trained],
    method: str,
    path: str,
    body: Any,
    status: int,
    field: str | None,
) -> None:
    headers = {**SAME, "Content-Type": "application/json"} if isinstance(body, dict | str) else SAME
    data = body if isinstance(body, bytes | str) or body is None else None
    response = client.open(
        path, method=method, json=body if isinstance(body, dict) else None, data=data, headers=headers
    )
    problem = check_problem(response, status, field=field)
    assert len(problem["detail"]) > 20
    if method == "GET" and "/api/" not in path:  # a browser gets the same detail as a page
        page = client.get(path, headers=HTML)
        assert (page.status_code, page.mimetype) == (status, "text/html")
        assert page.headers["Content-Security-Policy"] == PAGE_CSP
        assert _escaped(problem["detail"]) in page.get_data(as_text=True)


def _escaped(text: str) -> str:
    return (
        text.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace("'", "&#39;")
        .replace('"', "&#34;")
    )


# -- nothing from elsewhere ------------------------------------------------------------------


class Links(HTMLParser):
    """Every URL a page loads or links to, inline scripts, and event handler attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.inline: list[str] = []
        self._script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "href", "action", "formaction", "srcset", "poster", "data"):
                self.urls.append(value or "")
            if name.startswith("on"):
                self.inline.append(f"<{tag} {name}>")
            if name == "style" and value and "url(" in value:
                self.inline.append(f"<{tag} style url()>")
        if tag == "script":
            self._script = not dict(attrs).get("src")

    def handle_endtag(self, tag: str) -> None:
        self._script = False

    def handle_data(self, data: str) -> None:
        if self._script and data.strip():
            self.inline.append(f"<script>{data.strip()[:40]}")


EXTERNAL = re.compile(r"https?://|[\"'(=]\s*//|url\(\s*[\"']?(?!/|data:|#)")


def external(text: str) -> list[str]:
    return EXTERNAL.findall(text.replace(SVG_NAMESPACE, ""))


def test_no_page_or_asset_loads_anything_from_elsewhere(
    app: Flask, services: Services, content: dict[str, int]
) -> None:
    client = browser(app, key(services, "admin"))
    pages = [*PAGES, "/ui/models/houses", f"/ui/datasets/{content['dataset']}"]
    for path in pages:
        page = check_page(client.get(path))
        links = Links()
        links.feed(page)
        assert links.inline == [], path
        assert links.urls, path
        for url in links.urls:
            assert url.startswith(("/ui/", "?", "#")), (path, url)
        assert external(page) == [], path
    login = browser(app).get("/ui/login").get_data(as_text=True)
    assert external(login) == []
    for name in STATIC:
        with client.get(f"/ui/static/{name}") as response:
            asset = response.get_data(as_text=True)
        assert external(asset) == [], name
        assert "innerHTML" not in asset and "eval(" not in asset


def test_the_external_url_check_finds_them() -> None:
    assert external('<script src="https://cdn.example/x.js">') == ["https://"]
    assert external('<link href="//cdn.example/x.css">') == ['"//']
    assert external("background: url(https://x)") != []
    assert external("fetch('//x.example/a')") == ["'//"]
    assert external(f'<svg xmlns="{SVG_NAMESPACE}"></svg> // a comment') == []


# -- auth off, a prefix ----------------------------------------------------------------------


@pytest.fixture
def open_app(tmp_path: Path, trained: dict[str, Trained]) -> Iterator[Flask]:
    app = create_app(Settings(home=tmp_path / "open", refresh_seconds=0, auth=False, rate_limits={}))
    register(app.extensions["wharf"], trained["iris"])
    yield app
    app.extensions["wharf"].close()


def test_without_auth_everything_is_open_but_posts_stay_same_origin(open_app: Flask) -> None:
    client = open_app.test_client()
    page = check_page(client.get("/ui/"))
    assert 'id="logout"' not in page
    check_page(client.get("/ui/models/iris"))
    assert client.get("/ui/login?next=/ui/jobs").headers["Location"] == "/ui/jobs"
    body = {"instances": [ROW]}
    check_problem(client.post("/ui/models/iris/predict", json=body), 403)
    assert client.post("/ui/models/iris/predict", json=body, headers=SAME).status_code == 200


def test_mounted_under_a_prefix(tmp_path: Path, trained: dict[str, Trained]) -> None:
    app = Flask("host")
    settings = Settings(home=tmp_path / "home", refresh_seconds=0, admin_key=ADMIN_KEY, rate_limits={})
    Wharf(app, settings, url_prefix="/ml")
    services: Services = app.extensions["wharf"]
    try:
        register(services, trained["iris"])
        client = app.test_client()
        response = client.get("/ml/ui/models/iris")
        assert response.headers["Location"] == "/ml/ui/login?next=/ml/ui/models/iris"
        login = client.post("/ml/ui/login", data={"key": ADMIN_KEY, "next": "/ui/models/iris"}, headers=FORM)
        assert login.headers["Location"] == "/ml/ui/"  # outside the dashboard here
        assert "Path=/ml/ui;" in set_cookie(login)
        page = check_page(client.get("/ml/ui/models/iris"))
        assert "/ml/ui/static/ui.js" in page and 'data-url="/ml/ui/api/models/iris/history"' in page
        assert client.get("/ml/ui/api/models/iris/history").status_code == 200
        with client.get("/ml/ui/static/ui.css") as css:
            assert css.status_code == 200
    finally:
        services.close()


def test_every_route_states_its_permission(app: Flask) -> None:
    ui = {
        r.endpoint.partition(".")[2] for r in app.url_map.iter_rules() if r.endpoint.startswith("wharf_ui.")
    }
    declared = {view.__name__: permission for _, view, _, permission in ROUTES}
    assert ui == {*declared, "static"}
    assert {name for name, permission in declared.items() if permission is None} == {"login"}
    assert {name for name, permission in declared.items() if permission == "predict"} == {"predict"}
    assert PROBLEM == "application/problem+json"


def test_the_api_rate_limits_hold_on_the_dashboard(tmp_path: Path, trained: dict[str, Trained]) -> None:
    limits = {"route:predict": "2/minute", "anonymous": "3/minute"}
    settings = Settings(home=tmp_path / "home", refresh_seconds=0, admin_key=ADMIN_KEY, rate_limits=limits)
    app = create_app(settings)
    try:
        register(app.extensions["wharf"], trained["iris"])
        client = browser(app, ADMIN_KEY)
        body = {"instances": [ROW]}
        answers = [client.post("/ui/models/iris/predict", json=body, headers=SAME) for _ in range(3)]
        assert [r.status_code for r in answers] == [200, 200, 429]  # the API's own limit for predict
        assert answers[-1].headers["Retry-After"]
        guesser = app.test_client()
        guesses = [
            guesser.post("/ui/login", data={"key": f"guess-{i}"}, headers=FORM).status_code for i in range(4)
        ]
        assert guesses == [401, 401, 401, 429]
    finally:
        app.extensions["wharf"].close()


def test_a_profile_of_every_kind_of_column(app: Flask, services: Services, tmp_path: Path) -> None:
    path = tmp_path / "mixed.csv"
    path.write_text(
        "amount,flag,city,note,day\n"
        + "".join(
            f"{i * 1.5 if i % 4 else ''},{'yes' if i % 2 else 'no'},{['paris', 'lyon'][i % 2]},"
            f"the quick brown fox number {i},2024-01-{i + 1:02d}\n"
            for i in range(20)
        )
    )
    record = services.datasets.add(path, "mixed.csv", "mixed")
    page = check_page(browser(app, key(services, "reader")).get(f"/ui/datasets/{record.id}"))
    kinds = {"amount": "numeric", "flag": "boolean", "city": "categorical", "note": "text", "day": "datetime"}
    for column, kind in kinds.items():
        row = page.split(f'data-column="{column}"', 1)[1].split("</tr>", 1)[0]
        assert kind in row, (column, row)
    assert "25.0%" in page.split('data-column="amount"', 1)[1]  # 5 of 20 missing
    for label in ("median", "true", "false", "mean length", "max length", "min", "max", "paris"):
        assert f">{label}<" in page, label


@pytest.mark.parametrize(
    "headers",
    [{}, {"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"}, {"Origin": "null"}],
)
def test_another_sites_form_cannot_log_a_browser_in(app: Flask, headers: dict[str, str]) -> None:
    """Login CSRF: a form elsewhere posting its own key would make the victim use the attacker's
    key (and send it what they predict)."""
    response = app.test_client().post("/ui/login", data={"key": ADMIN_KEY}, headers=headers)
    assert response.status_code == 403
    assert "Set-Cookie" not in response.headers

"""The dashboard at /ui in a real browser: Debian's Chromium, headless, driven by Playwright.

One ``wharf serve`` with auth on serves iris (registered here with its example row and a drift
reference, then sent predictions so the charts have data), a dataset uploaded through the API,
and a training job on it. A person logs in with a key, opens the model, sends a prediction and
sees what the in-process model answers; opens the jobs and datasets; logs out. No request leaves
127.0.0.1, nothing fails to load, and the console stays clean. Screenshots of the main pages go
to ``$WHARF_SCREENSHOTS`` (default ``.artifacts/screenshots`` in the repository).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
import requests
from playwright import sync_api
from sklearn.pipeline import Pipeline
from test_serve import Server, start, stopped

from wharf.services import build_services
from wharf.services.registry import Registration
from wharf.services.security import new_key
from wharf.settings import Settings

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu"]
REPO = Path(__file__).resolve().parents[2]
TIMEOUT_MS = 15_000
JOB_TIMEOUT_MS = 60_000
ADMIN_KEY = new_key()[1]
ROW = 77
"""The iris row the form is filled with: a versicolor on the border with virginica."""

# No skip when either is missing: `make test` installs both, so a missing one is a broken install.
assert CHROMIUM.exists(), (
    f"Debian's chromium is not at {CHROMIUM}: `make chromium` (part of `make test`) installs it"
)


def submit(server: Server, dataset: int) -> int:
    """A training job on ``dataset`` registering the next version of ``flowers``; its id."""
    spec = {"dataset": dataset, "target": "species", "algorithm": "logistic_regression"}
    job = requests.post(
        f"{server.url}/v1/jobs",
        json={"kind": "train", **spec, "register_as": "flowers"},
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        timeout=30,
    )
    assert job.status_code == 202, job.text
    return int(job.json()["id"])


def screenshots() -> Path:
    folder = Path(os.environ.get("WHARF_SCREENSHOTS") or REPO / ".artifacts" / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def plain(row: pd.Series) -> dict[str, float]:
    return {str(k): float(v) for k, v in row.items()}


@pytest.fixture(scope="module")
def dashboard(
    tmp_path_factory: pytest.TempPathFactory, iris: tuple[Pipeline, pd.DataFrame]
) -> Iterator[tuple[Server, int, int]]:
    """The server, the uploaded dataset's id and the training job's id."""
    model, X = iris
    folder = tmp_path_factory.mktemp("ui")
    home = folder / "home"
    joblib.dump(model, folder / "iris.joblib")
    services = build_services(Settings(home=home))
    try:
        services.keys.from_secret(ADMIN_KEY, name="e2e")
        services.registry.register(
            "iris",
            folder / "iris.joblib",
            "iris.joblib",
            Registration(
                description="Iris species (StandardScaler + LogisticRegression).",
                tags={"team": "e2e"},
                extra={"example": plain(X.iloc[0])},
            ),
        )
    finally:
        services.close()
    env = {"WHARF_AUTH": "true", "WHARF_MONITOR_FLUSH_SECONDS": "1", "WHARF_JOB_WORKERS": "1"}
    server = start(home, log=folder / "serve.log", env=env)
    try:
        api = requests.Session()
        api.headers["Authorization"] = f"Bearer {ADMIN_KEY}"
        table = X.assign(species=model.predict(X)).to_csv(index=False)
        uploaded = api.post(
            f"{server.url}/v1/datasets", files={"file": ("flowers.csv", table, "text/csv")}, timeout=30
        )
        assert uploaded.status_code == 201, uploaded.text
        dataset = uploaded.json()["id"]
        job = submit(server, dataset)
        alias = api.put(f"{server.url}/v1/models/iris/aliases/production", json={"version": 1}, timeout=30)
        assert alias.status_code in (200, 201), alias.text
        csv = {"Content-Type": "text/csv"}
        reference = api.put(
            f"{server.url}/v1/models/iris/versions/1/reference", data=X.to_csv(index=False), headers=csv
        )
        assert reference.status_code == 200, reference.text
        for part in np.array_split(np.arange(len(X)), 3):
            sent = api.post(
                f"{server.url}/v1/models/iris/predict", data=X.iloc[part].to_csv(index=False), headers=csv
            )
            assert sent.status_code == 200, sent.text
        yield server, dataset, job
    finally:
        stopped(server)


def test_log_in_predict_browse_and_log_out(
    dashboard: tuple[Server, int, int], iris: tuple[Pipeline, pd.DataFrame]
) -> None:
    server, dataset, job = dashboard
    model, X = iris
    folder = screenshots()
    expect = sync_api.expect
    problems: list[str] = []
    foreign: list[str] = []

    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1360, "height": 900})
        context.set_default_timeout(TIMEOUT_MS)
        page = context.new_page()
        expected_errors: list[str] = []
        """URLs whose error answer (a refused key, a refused row) this test asks for."""

        def on_console(message: Any) -> None:
            if message.type == "error" and message.location.get("url") not in expected_errors:
                problems.append(f"console: {message.text} at {message.location}")

        def on_response(response: Any) -> None:
            if response.status >= 400 and response.url not in expected_errors:
                problems.append(f"answered {response.status}: {response.request.method} {response.url}")

        def on_failed(request: Any) -> None:
            # A request cut short because the page navigated away (a chart's refresh, the favicon)
            # is the browser's doing; any other failure to load is not.
            if request.failure != "net::ERR_ABORTED":
                problems.append(f"failed: {request.method} {request.url} {request.failure}")

        page.on("console", on_console)
        page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
        page.on("response", on_response)
        page.on("requestfailed", on_failed)
        context.on("request", lambda r: None if r.url.startswith(server.url + "/") else foreign.append(r.url))

        # Not logged in: the login page, which comes back to where we were going.
        page.goto(f"{server.url}/ui/models/iris")
        expect(page).to_have_url(f"{server.url}/ui/login?next=/ui/models/iris")
        expected_errors.append(f"{server.url}/ui/login")
        page.fill("#key", new_key()[1])
        page.click("button[type=submit]")
        expect(page.locator("#login-error")).to_contain_text("not valid")
        page.screenshot(path=folder / "login.png")
        page.fill("#key", ADMIN_KEY)
        page.click("button[type=submit]")
        expect(page).to_have_url(f"{server.url}/ui/models/iris")
        cookie = next(c for c in context.cookies() if c["name"] == "wharf_ui_key")
        assert (cookie["httpOnly"], cookie["sameSite"], cookie["path"], cookie["expires"]) == (
            True,
            "Strict",
            "/ui",
            -1,
        )

        # The models table, and one model's page: charts drawn from the server's counts, a prediction.
        page.click("nav >> text=Models")
        expect(page.locator("#models tr[data-model=iris]")).to_contain_text("production → v1")
        page.click("#models a >> text=iris")
        expect(page).to_have_url(f"{server.url}/ui/models/iris")
        for chart in ("rate", "latency", "psi"):
            expect(page.locator(f"figure[data-chart={chart}][data-drawn] svg")).to_have_count(1)
        expect(page.locator("figure[data-chart=rate] path[data-series=requests]")).to_have_count(1)
        expect(page.locator("#drift")).to_contain_text("petal length (cm)")
        row = plain(X.iloc[ROW])
        for column, value in row.items():
            page.locator(f'[data-column="{column}"]').fill(repr(value))
        page.click("#predict-button")
        shown = page.locator("#prediction-result [data-role=prediction]")
        expect(shown).to_have_text(str(model.predict(X.iloc[[ROW]])[0]))
        probabilities = page.locator("#prediction-result [data-role=probabilities] tr")
        expect(probabilities).to_have_count(len(model.classes_))
        expected = model.predict_proba(X.iloc[[ROW]])[0]
        for i, p in enumerate(expected):
            assert probabilities.nth(i).locator("td").nth(1).inner_text() == f"{p:.3f}"
        page.screenshot(path=folder / "model.png", full_page=True)

        # A refused row: the problem's detail, in the same place.
        expected_errors.append(f"{server.url}/ui/models/iris/predict?version=1&probabilities=true")
        page.locator('[data-column="petal width (cm)"]').fill("")
        page.click("#predict-button")
        result = page.locator("#prediction-result")
        expect(result).to_have_attribute("data-status", "422")
        expect(result).to_contain_text("petal width (cm)")

        # Jobs: a job submitted now is unfinished when the page opens (its worker takes seconds to
        # start); the page follows its progress until it succeeds, without a reload.
        second = submit(server, dataset)
        page.click("nav >> text=Jobs")
        state = page.locator(f"#job-{second} [data-field=state]")
        assert state.inner_text() in ("queued", "running")
        page.evaluate("document.getElementById('jobs').dataset.loadedAt = 'this page'")
        expect(state).to_have_text("succeeded", timeout=JOB_TIMEOUT_MS)
        expect(page.locator(f"#job-{second} [role=progressbar]")).to_have_attribute("aria-valuenow", "100")
        expect(page.locator(f"#job-{second} [data-field=outcome] a")).to_have_text("flowers v2")
        expect(page.locator(f"#job-{job} [data-field=outcome] a")).to_have_text("flowers v1")
        assert page.evaluate("document.getElementById('jobs').dataset.loadedAt") == "this page"
        page.screenshot(path=folder / "jobs.png", full_page=True)
        page.click("nav >> text=Models")
        trained = page.locator("#models tr[data-model=flowers]")
        expect(trained).to_contain_text("accuracy")
        page.screenshot(path=folder / "models.png", full_page=True)
        page.click("#models a >> text=flowers")
        expect(page.locator("#versions tr[data-version='1']")).to_contain_text(f"job #{job}")
        expect(page.locator("#versions tr[data-version='2']")).to_contain_text(f"job #{second}")

        # Datasets, and one dataset's profile.
        page.click("nav >> text=Datasets")
        expect(page.locator(f"#datasets tr[data-dataset-id='{dataset}']")).to_contain_text("flowers")
        page.screenshot(path=folder / "datasets.png", full_page=True)
        page.click(f"#datasets tr[data-dataset-id='{dataset}'] a")
        expect(page.locator("#profile tr[data-column=species]")).to_contain_text("categorical")
        expect(page.locator("#profile tr[data-column='sepal length (cm)']")).to_contain_text("median")
        page.screenshot(path=folder / "dataset.png", full_page=True)

        # Logging out forgets the key.
        page.click("#logout")
        expect(page).to_have_url(f"{server.url}/ui/login")
        page.wait_for_load_state()
        assert [c for c in context.cookies() if c["name"] == "wharf_ui_key"] == []
        page.goto(f"{server.url}/ui/jobs")
        expect(page).to_have_url(f"{server.url}/ui/login?next=/ui/jobs")
        browser.close()

    print(f"dashboard screenshots: {folder}")
    assert problems == []
    assert foreign == []
    shots = {"login.png", "models.png", "model.png", "jobs.png", "datasets.png", "dataset.png"}
    assert shots <= {p.name for p in folder.glob("*.png")}

"""Training jobs through a real ``wharf serve``: a table uploaded, trained in a worker process,
registered and served, with the pipeline's own predictions as the reference.

One server (the ``wharf`` fixture) runs the data cases, the cancel, the crashes and the CLI's
``--server`` run; the tests that kill a server or limit a job's memory start their own.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import itertools
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
import requests
from sklearn import datasets
from sklearn import metrics as skm
from sklearn.pipeline import Pipeline
from test_serve import READY_SECONDS, STOP_SECONDS, WHARF, Server, free_port

from wharf.errors import InvalidInput
from wharf.services import build_services
from wharf.services.jobs import TICK_SECONDS
from wharf.services.registry import Registration
from wharf.services.security import new_key
from wharf.settings import Settings
from wharf.storage import MetadataStore
from wharf.storage.artifacts import key_for
from wharf.storage.jobs import JobRecord

pytestmark = pytest.mark.e2e

ADMIN_KEY = new_key()[1]
"""The admin key stored in every home here before its server starts (as `wharf keys create` does)."""
api = requests.Session()
"""What the tests call the API with: the admin key on every request."""
api.headers["Authorization"] = f"Bearer {ADMIN_KEY}"

JOB_SECONDS = 60
"""Longest a small training job may take, worker start included (2 shared cores)."""
DEAD_SECONDS = 5
"""How soon a job whose server was killed must be failed: its worker looks every second."""
SERVER_GONE = "The server running this job stopped before it finished; submit it again."
REGRESSION = {"mae", "mse", "rmse", "r2"}
CLASSIFICATION = {
    "accuracy",
    "precision_macro",
    "recall_macro",
    "f1_macro",
    "precision_weighted",
    "recall_weighted",
    "f1_weighted",
    "roc_auc",
    "log_loss",
    "confusion_matrix",
}


# -- servers -----------------------------------------------------------------------------------


@dataclass
class Wharf:
    """A running ``wharf serve`` and the home it keeps its registry in."""

    server: Server
    home: Path

    @property
    def url(self) -> str:
        return self.server.url

    def store(self) -> MetadataStore:
        return MetadataStore(Settings(home=self.home).resolved_database_url)

    def job_record(self, job_id: int) -> JobRecord:
        """The job as the registry database holds it (worker pid, owner)."""
        store = self.store()
        try:
            record = store.jobs.get(job_id)
        finally:
            store.close()
        assert record is not None
        return record

    def artifact(self, key: str) -> Path:
        return self.home / "artifacts" / key


def serve(home: Path, log: Path, **settings: str) -> Wharf:
    """``wharf --home HOME serve`` with ``WHARF_<NAME>`` variables from ``settings``, serving every
    registered model (so each version its jobs register); returned once /readyz answers 200."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WHARF_")}
    env.update({f"WHARF_{name.upper()}": value for name, value in settings.items()})
    with log.open("ab") as out:
        process = subprocess.Popen(
            [str(WHARF), "--home", str(home), "serve", "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # its own process group, Granian's workers with it: see halt()
        )
    server = Server(process, f"http://127.0.0.1:{port}", log)
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"wharf serve exited with {process.returncode}:\n{server.output()}")
        try:
            if api.get(f"{server.url}/readyz", timeout=2).status_code == 200:
                return Wharf(server, home)
        except requests.ConnectionError:
            pass
        time.sleep(0.1)
    halt(Wharf(server, home))
    pytest.fail(f"wharf serve was not ready within {READY_SECONDS}s:\n{server.output()}")


def halt(wharf: Wharf) -> None:
    """Stop the server, then kill whatever is left of its process group (a Granian worker that
    outlived a killed `wharf serve`); its job workers see it gone and end themselves."""
    process = wharf.server.process
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=STOP_SECONDS)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


@dataclass(frozen=True)
class Reference:
    """A model registered in every home here before its server starts: it must still predict
    after a crash."""

    path: Path
    model: Pipeline
    rows: pd.DataFrame

    def registered_in(self, home: Path) -> Path:
        """``home``, holding this model and :data:`ADMIN_KEY`."""
        services = build_services(Settings(home=home))
        try:
            services.registry.register("reference", self.path, self.path.name, Registration())
            services.keys.from_secret(ADMIN_KEY, name="e2e")
        finally:
            services.close()
        return home


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, iris: tuple[Pipeline, pd.DataFrame]) -> Reference:
    path = tmp_path_factory.mktemp("reference") / "reference.joblib"
    joblib.dump(iris[0], path)
    return Reference(path, iris[0], iris[1].iloc[::15])


@pytest.fixture(scope="module")
def wharf(tmp_path_factory: pytest.TempPathFactory, reference: Reference) -> Iterator[Wharf]:
    folder = tmp_path_factory.mktemp("training")
    running = serve(reference.registered_in(folder / "home"), folder / "serve.log")
    yield running
    halt(running)


# -- processes ---------------------------------------------------------------------------------


PR_SET_CHILD_SUBREAPER = 36


@pytest.fixture
def reaper() -> Iterator[None]:
    """Make this process the reaper of the processes orphaned during the test, as init is on a host.

    A killed server's Granian worker and job worker are orphans; where pid 1 does not reap them
    (some containers and VMs), they stay zombies, which ``kill(pid, 0)`` finds alive. :func:`gone`
    reaps them here instead.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        # Linux has had it since 3.4; without it these tests could not tell a dead process from a zombie.
        pytest.fail(f"prctl(PR_SET_CHILD_SUBREAPER) failed: {os.strerror(ctypes.get_errno())}")
    yield
    libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)


def gone(pid: int) -> bool:
    """The process has exited and been reaped: here, if it became this process's child (see
    :func:`reaper`); a zombie still counts as there, as it does for ``kill(pid, 0)``."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    return not Path(f"/proc/{pid}").exists()


def until(condition: Callable[[], Any], seconds: float, what: str) -> Any:
    """Poll ``condition`` until it returns something true; fail after ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        found = condition()
        if found:
            return found
        assert time.monotonic() < deadline, f"not within {seconds}s: {what}"
        time.sleep(0.1)


# -- the API -----------------------------------------------------------------------------------


def upload(wharf: Wharf, filename: str, content: bytes) -> dict[str, Any]:
    response = api.post(f"{wharf.url}/v1/datasets", files={"file": (filename, content)}, timeout=60)
    assert response.status_code in (200, 201), response.text
    body: dict[str, Any] = response.json()
    return body


def submit(wharf: Wharf, spec: dict[str, Any]) -> dict[str, Any]:
    response = api.post(f"{wharf.url}/v1/jobs", json={"kind": "train", **spec}, timeout=30)
    assert response.status_code == 202, response.text
    job: dict[str, Any] = response.json()
    assert response.headers["Location"].endswith(f"/v1/jobs/{job['id']}")
    assert job["state"] == "queued"
    return job


def get_job(wharf: Wharf, job_id: int) -> dict[str, Any]:
    response = api.get(f"{wharf.url}/v1/jobs/{job_id}", timeout=10)
    assert response.status_code == 200, response.text
    job: dict[str, Any] = response.json()
    return job


@dataclass
class Followed:
    """A job polled to its end: how it ended and each (state, progress, stage) seen on the way."""

    job: dict[str, Any]
    seen: list[tuple[str, float, str]] = field(default_factory=list)


def follow(wharf: Wharf, job_id: int, seconds: float = JOB_SECONDS) -> Followed:
    followed = Followed(get_job(wharf, job_id))
    deadline = time.monotonic() + seconds
    while True:
        job = followed.job
        step = (job["state"], job["progress"], job["stage"])
        if not followed.seen or followed.seen[-1] != step:
            followed.seen.append(step)
        if job["state"] in ("succeeded", "failed", "cancelled"):
            return followed
        assert time.monotonic() < deadline, f"job {job_id} still {job['state']} after {seconds}s: {job}"
        time.sleep(0.05)
        followed.job = get_job(wharf, job_id)


def started(wharf: Wharf, job_id: int, seconds: float = JOB_SECONDS) -> dict[str, Any]:
    """Poll until the job's worker process runs it (its first report is written, its heartbeat
    beats); the job as it then is."""

    def reported() -> dict[str, Any] | None:
        job = get_job(wharf, job_id)
        assert job["state"] in ("queued", "running"), job
        return job if job["state"] == "running" and job["stage"] not in ("queued", "starting") else None

    found: dict[str, Any] = until(reported, seconds, f"job {job_id} started by its worker")
    return found


def predict(
    wharf: Wharf, name: str, rows: list[dict[str, Any]], probabilities: bool = False
) -> dict[str, Any]:
    query = "?probabilities=true" if probabilities else ""
    response = api.post(f"{wharf.url}/v1/models/{name}/predict{query}", json={"instances": rows}, timeout=30)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def serves(wharf: Wharf, reference: Reference) -> None:
    """The server answers its health check and predicts with the model registered before it started."""
    assert api.get(f"{wharf.url}/healthz", timeout=10).json() == {"status": "ok"}
    answer = predict(wharf, "reference", records(reference.rows))
    assert answer["predictions"] == reference.model.predict(reference.rows).tolist()


def version_of(wharf: Wharf, name: str, version: int) -> dict[str, Any]:
    response = api.get(f"{wharf.url}/v1/models/{name}/versions/{version}", timeout=10)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def load_version(wharf: Wharf, name: str, version: int = 1) -> tuple[dict[str, Any], Any]:
    """The version's JSON, and its pipeline loaded from the artifact store in this process."""
    record = version_of(wharf, name, version)
    path = wharf.artifact(key_for(record["sha256"]))
    assert path.is_file(), path
    return record, joblib.load(path)


# -- tables ------------------------------------------------------------------------------------


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as JSON objects, missing values as null."""
    return [
        {str(k): None if pd.isna(v) else v for k, v in row.items()} for row in frame.to_dict(orient="records")
    ]


def csv_bytes(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False).encode()


def parquet_bytes(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


def json_lines_bytes(frame: pd.DataFrame) -> bytes:
    return frame.to_json(orient="records", lines=True, double_precision=15).encode()


def xlsx_bytes(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_excel(buffer, index=False)
    return buffer.getvalue()


def diabetes() -> pd.DataFrame:
    return datasets.load_diabetes(as_frame=True).frame


def breast_cancer() -> pd.DataFrame:
    return datasets.load_breast_cancer(as_frame=True).frame


def wine() -> pd.DataFrame:
    data = datasets.load_wine(as_frame=True)
    return data.frame.drop(columns="target").assign(cultivar=data.target_names[data.target])


def houses() -> pd.DataFrame:
    """Prices from a number, an integer count and two categories, every input with holes."""
    rng = np.random.default_rng(0)
    n = 300
    city = rng.choice(["Paris", "Lyon", "Lille", "Nantes"], n).astype(object)
    heating = rng.choice(["gas", "electric", "heat pump"], n).astype(object)
    sqft = rng.uniform(20, 200, n).round(1)
    rooms = rng.integers(1, 7, n).astype(float)
    base = pd.Series(city).map({"Paris": 9000, "Lyon": 5000, "Lille": 3500, "Nantes": 4000}).to_numpy()
    price = (base * sqft + 8000 * rooms + 5000 * (heating == "heat pump") + rng.normal(0, 20000, n)).round(2)
    city[rng.random(n) < 0.1] = None
    heating[rng.random(n) < 0.15] = None
    sqft[rng.random(n) < 0.1] = np.nan
    rooms[rng.random(n) < 0.1] = np.nan
    return pd.DataFrame({"city": city, "sqft": sqft, "rooms": rooms, "heating": heating, "price": price})


GOOD = ["great", "wonderful", "lovely", "excellent", "delightful", "superb", "charming"]
BAD = ["awful", "terrible", "boring", "dreadful", "poor", "disappointing", "dull"]
THINGS = ["film", "book", "meal", "hotel", "concert", "phone", "service", "game"]
OPENERS = ["Honestly", "Overall", "I think", "In short", "Frankly", "To be fair", "Sadly or not"]


def reviews() -> pd.DataFrame:
    """Sentences and their sentiment."""
    rng = np.random.default_rng(1)
    rows = []
    for i in range(240):
        words = GOOD if i % 2 == 0 else BAD
        sentence = (
            f"{rng.choice(OPENERS)} the {rng.choice(THINGS)} was {rng.choice(words)} "
            f"and {rng.choice(words)}, {rng.choice(['really', 'truly', 'quite', 'so'])} "
            f"{rng.choice(words)}."
        )
        rows.append({"review": sentence, "sentiment": "positive" if i % 2 == 0 else "negative"})
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class Case:
    """One table trained end to end."""

    name: str
    """Also the model it is registered as."""
    filename: str
    table: Callable[[], pd.DataFrame]
    encode: Callable[[pd.DataFrame], bytes]
    target: str
    task: str
    algorithm: str
    params: dict[str, Any] = field(default_factory=dict)
    kinds: dict[str, str] = field(default_factory=dict)
    """Kinds the profile must give these columns."""
    extra: list[dict[str, Any]] = field(default_factory=list)
    """Rows not in the table to predict too: unseen categories, missing values, new sentences."""


CASES = [
    Case(
        "diabetes",
        "diabetes.csv",
        diabetes,
        csv_bytes,
        target="target",
        task="regression",
        algorithm="random_forest",
        params={"n_estimators": 20},
        kinds={"bmi": "numeric", "target": "numeric"},
    ),
    Case(
        "cancer",
        "cancer.parquet",
        breast_cancer,
        parquet_bytes,
        target="target",
        task="classification",
        algorithm="logistic_regression",
        kinds={"mean radius": "numeric"},
    ),
    Case(
        "wine",
        "wine.jsonl",
        wine,
        json_lines_bytes,
        target="cultivar",
        task="classification",
        algorithm="gradient_boosting",
        params={"max_iter": 20},
        kinds={"alcohol": "numeric", "cultivar": "categorical"},
    ),
    Case(
        "houses",
        "houses.xlsx",
        houses,
        xlsx_bytes,
        target="price",
        task="regression",
        algorithm="ridge",
        kinds={"city": "categorical", "heating": "categorical", "sqft": "numeric", "rooms": "numeric"},
        extra=[
            {"city": "Atlantis", "sqft": 80.0, "rooms": 3.0, "heating": "wood"},
            {"city": None, "sqft": None, "rooms": None, "heating": None},
        ],
    ),
    Case(
        "reviews",
        "reviews.csv",
        reviews,
        csv_bytes,
        target="sentiment",
        task="classification",
        algorithm="logistic_regression",
        kinds={"review": "text"},
        extra=[
            {"review": "What a superb and charming little hotel, truly lovely."},
            {"review": "Dull, dreadful and boring: never again."},
            {"review": None},
        ],
    ),
]


def timestamp(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


# -- a table to a served version ---------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_a_table_becomes_a_served_version_that_predicts_as_its_pipeline(wharf: Wharf, case: Case) -> None:
    frame = case.table()
    dataset = upload(wharf, case.filename, case.encode(frame))
    assert (dataset["rows"], dataset["columns"]) == frame.shape
    kinds = {column["name"]: column["kind"] for column in dataset["profile"]["columns"]}
    assert {name: kinds[name] for name in case.kinds} == case.kinds

    spec = {
        "dataset": dataset["id"],
        "target": case.target,
        "algorithm": case.algorithm,
        "params": case.params,
        "register_as": case.name,
    }
    submitted = submit(wharf, spec)
    followed = follow(wharf, submitted["id"])
    job = followed.job
    assert job["state"] == "succeeded", job
    assert (job["progress"], job["stage"], job["error"]) == (1.0, "done", None)

    # Progress only moves forward: from the queue, through stages while it runs, to the end.
    seen = [("queued", 0.0, "queued"), *followed.seen]
    progress = [fraction for _, fraction, _ in seen]
    assert all(later >= earlier - 1e-9 for earlier, later in itertools.pairwise(progress)), seen
    assert any(state == "running" and fraction < 1 for state, fraction, _ in seen), seen
    assert len({stage for _, _, stage in seen}) >= 3, seen

    created, began, finished = (timestamp(job[k]) for k in ("created_at", "started_at", "finished_at"))
    assert created <= began <= finished
    assert job["queued_seconds"] == pytest.approx((began - created).total_seconds(), abs=1e-3)
    assert job["run_seconds"] == pytest.approx((finished - began).total_seconds(), abs=1e-3)
    assert job["run_seconds"] > 0

    result = job["result"]
    assert (result["model"], result["version"], result["task"]) == (case.name, 1, case.task)
    assert job["links"]["version"] == f"/v1/models/{case.name}/versions/1"
    assert "cancel" not in job["links"]

    # The version: metrics, lineage and how it was trained, stored with it.
    version, pipeline = load_version(wharf, case.name)
    assert version["format"] == "joblib"
    metrics = version["metrics"]
    assert metrics == result["metrics"]
    assert set(metrics) >= (REGRESSION if case.task == "regression" else CLASSIFICATION), metrics
    lineage = version["lineage"]
    assert lineage["dataset"] == {"id": dataset["id"], "name": dataset["name"], "sha256": dataset["sha256"]}
    assert lineage["job"] == job["id"]
    assert lineage["target"] == case.target
    training = version["training"]
    assert training["algorithm"] == case.algorithm
    assert training["task"] == case.task
    assert {"preparing", "fitting", "evaluating", "total"} <= set(training["timings"])
    features = [name for name in frame.columns if name != case.target]
    assert training["features"] == features

    # The metrics are the registered pipeline's own, on the held-out rows stored beside it.
    holdout = lineage["holdout"]
    held = pd.read_parquet(wharf.artifact(holdout["artifact"]))
    assert len(held) == holdout["rows"] == training["validation"]["test_rows"]
    held_pred = pipeline.predict(held[features])
    if case.task == "regression":
        assert metrics["r2"] == pytest.approx(skm.r2_score(held[case.target], held_pred), rel=1e-9)
        assert metrics["mae"] == pytest.approx(
            skm.mean_absolute_error(held[case.target], held_pred), rel=1e-9
        )
    else:
        assert metrics["accuracy"] == pytest.approx(
            skm.accuracy_score(held[case.target], held_pred), rel=1e-9
        )
        assert metrics["f1_macro"] == pytest.approx(
            skm.f1_score(held[case.target], held_pred, average="macro"), rel=1e-9
        )

    # Served predictions equal the pipeline's, in this process, on rows of the table and new ones.
    table_rows = frame[features].iloc[::7]
    sent = records(table_rows) + case.extra
    rows = pd.DataFrame.from_records(sent, columns=features)
    expected = pipeline.predict(rows)
    np.testing.assert_array_equal(pipeline.predict(table_rows), expected[: len(table_rows)])
    answer = predict(wharf, case.name, sent, probabilities=case.task == "classification")
    assert (answer["model"], answer["version"]) == (case.name, 1)
    assert len(answer["predictions"]) == len(sent)
    if case.task == "regression":
        np.testing.assert_allclose(answer["predictions"], expected, rtol=1e-12, atol=0)
    else:
        assert answer["predictions"] == expected.tolist()
        assert answer["classes"] == pipeline.classes_.tolist()
        np.testing.assert_allclose(
            answer["probabilities"], pipeline.predict_proba(rows), rtol=1e-9, atol=1e-12
        )


def test_a_server_given_its_admin_key_in_settings_runs_jobs(tmp_path: Path) -> None:
    """``WHARF_ADMIN_KEY``, as automation starts a server, leaves its job workers working."""
    given = serve(tmp_path / "home", tmp_path / "serve.log", admin_key=ADMIN_KEY)
    try:
        dataset = upload(given, "iris.csv", iris_csv())
        job = submit(given, {"dataset": dataset["id"], "target": "target", "algorithm": "ridge"})
        ended = follow(given, job["id"]).job
        assert ended["state"] == "succeeded", ended["error"]
        assert given.server.stop() == 0
    finally:
        halt(given)


# -- long jobs: progress, cancel -------------------------------------------------------------


def slow_table() -> bytes:
    """Enough rows that a forest of thousands of trees fits for far longer than any test waits."""
    X, y = datasets.make_classification(n_samples=3000, n_features=12, n_informative=6, random_state=0)
    frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(X.shape[1])]).assign(label=y)
    return csv_bytes(frame)


@dataclass(frozen=True)
class SlowJob:
    id: int
    worker: int
    """Pid of the job's worker process."""
    server: int
    """Pid of the server process whose dispatcher runs the job: a Granian worker of `wharf serve`."""


def start_slow_job(wharf: Wharf, name: str) -> SlowJob:
    """A job that fits for minutes, once its worker runs it."""
    dataset = upload(wharf, "slow.csv", slow_table())
    spec = {
        "dataset": dataset["id"],
        "target": "label",
        "algorithm": "random_forest",
        "params": {"n_estimators": 5000},
        "register_as": name,
    }
    job = submit(wharf, spec)
    started(wharf, job["id"])
    record = wharf.job_record(job["id"])
    assert record.worker_pid is not None and not gone(record.worker_pid)
    assert record.owner is not None
    return SlowJob(job["id"], record.worker_pid, int(record.owner.rpartition(":")[2]))


def cancel(wharf: Wharf, job_id: int) -> dict[str, Any]:
    response = api.post(f"{wharf.url}/v1/jobs/{job_id}/cancel", timeout=10)
    assert response.status_code == 202, response.text
    return follow(wharf, job_id, seconds=10).job


def test_a_long_job_shows_that_it_is_fitting(wharf: Wharf) -> None:
    job_id = start_slow_job(wharf, "staged-forest").id
    try:
        # Loading and preparing 3000 rows takes well under a second; the fit then takes minutes.
        fitting = until(
            lambda: (job := get_job(wharf, job_id))["stage"] == "fitting" and job,
            5,
            f"job {job_id} shows stage 'fitting' while its forest fits",
        )
        assert 0 < fitting["progress"] < 1
    finally:
        cancel(wharf, job_id)


def test_a_running_job_is_cancelled_and_its_worker_stopped(wharf: Wharf, reference: Reference) -> None:
    slow = start_slow_job(wharf, "cancelled-forest")
    job_id, worker = slow.id, slow.worker
    running = get_job(wharf, job_id)
    assert running["state"] == "running"
    assert running["links"]["cancel"] == f"/v1/jobs/{job_id}/cancel"

    ended = cancel(wharf, job_id)
    assert ended["state"] == "cancelled"
    assert ended["error"] == "Cancelled while it ran."
    assert ended["result"] is None
    assert "cancel" not in ended["links"]
    until(lambda: gone(worker), 5, f"worker {worker} exited")

    assert api.get(f"{wharf.url}/v1/models/cancelled-forest", timeout=10).status_code == 404
    again = api.post(f"{wharf.url}/v1/jobs/{job_id}/cancel", timeout=10)
    assert again.status_code == 409
    assert again.json()["detail"] == f"Job {job_id} has already cancelled; nothing to cancel."
    serves(wharf, reference)


# -- crashes -------------------------------------------------------------------------------------


def iris_csv() -> bytes:
    return csv_bytes(datasets.load_iris(as_frame=True).frame)


@pytest.mark.parametrize(
    ("algorithm", "params"),
    [
        # Each value is valid alone; scikit-learn refuses the pair when it fits.
        ("random_forest", {"n_estimators": 5, "bootstrap": False, "max_samples": 0.5}),
        # Fits, then fails to predict the held-out rows: more neighbours than rows fitted.
        ("knn", {"n_neighbors": 500}),
    ],
    ids=["params-refused-at-fit", "algorithm-fails"],
)
def test_a_training_crash_fails_the_job_and_the_server_serves(
    wharf: Wharf, reference: Reference, algorithm: str, params: dict[str, Any]
) -> None:
    dataset = upload(wharf, "iris.csv", iris_csv())
    name = f"crash-{algorithm}"
    job = submit(
        wharf,
        {
            "dataset": dataset["id"],
            "target": "target",
            "algorithm": algorithm,
            "params": params,
            "register_as": name,
        },
    )
    ended = follow(wharf, job["id"]).job
    assert ended["state"] == "failed", ended
    error = ended["error"]
    assert error.startswith(f"Fitting {algorithm} failed: ValueError: "), error
    assert error.endswith("(check its params)."), error
    assert "Traceback" not in error and 'File "' not in error
    assert ended["result"] == {"problem": {"type": "urn:wharf:problem:invalid-input", "field": "params"}}
    assert api.get(f"{wharf.url}/v1/models/{name}", timeout=10).status_code == 404
    serves(wharf, reference)


@pytest.mark.parametrize("limit_mb", ["400", "2048"])
def test_a_job_out_of_memory_fails_and_the_server_serves(
    tmp_path: Path, reference: Reference, limit_mb: str
) -> None:
    limited = serve(
        reference.registered_in(tmp_path / "home"), tmp_path / "serve.log", job_memory_mb=limit_mb
    )
    try:
        dataset = upload(limited, "iris.csv", iris_csv())
        # Two hidden layers of 20,000 units: a weight matrix of 3.2 GB.
        spec = {
            "dataset": dataset["id"],
            "target": "target",
            "algorithm": "mlp",
            "params": {"hidden_layer_sizes": [20000, 20000], "max_iter": 1},
            "register_as": "too-big",
        }
        ended = follow(limited, submit(limited, spec)["id"]).job
        assert ended["state"] == "failed", ended
        assert "ran out of memory" in ended["error"], ended["error"]
        assert "Traceback" not in ended["error"]
        assert api.get(f"{limited.url}/v1/models/too-big", timeout=10).status_code == 404
        serves(limited, reference)

        # A job that fits in the limit still trains.
        small = {"dataset": dataset["id"], "target": "target", "algorithm": "logistic_regression"}
        assert follow(limited, submit(limited, small)["id"]).job["state"] == "succeeded"
        assert limited.server.stop() == 0
    finally:
        halt(limited)


# -- a server that dies --------------------------------------------------------------------------


def kill_server(wharf: Wharf) -> None:
    """SIGKILL the whole server at once: `wharf serve` and its Granian worker, whose dispatcher runs
    the jobs (the job workers have sessions of their own)."""
    os.killpg(wharf.server.process.pid, signal.SIGKILL)
    wharf.server.process.wait()


def test_a_job_whose_server_is_killed_fails_and_stays_failed(
    tmp_path: Path, reference: Reference, reaper: None
) -> None:
    home = reference.registered_in(tmp_path / "home")
    first = serve(home, tmp_path / "first.log")
    try:
        job = start_slow_job(first, "orphan")
        kill_server(first)
    finally:
        halt(first)

    def failed() -> JobRecord | None:
        record = first.job_record(job.id)
        return record if record.state == "failed" else None

    record = until(failed, DEAD_SECONDS, f"job {job.id} failed once its server was killed")
    assert record.error == SERVER_GONE
    until(lambda: gone(job.worker), DEAD_SECONDS, f"worker {job.worker} exited")

    second = serve(home, tmp_path / "second.log")
    try:
        time.sleep(2 * TICK_SECONDS)
        again = get_job(second, job.id)
        assert (again["state"], again["error"]) == ("failed", SERVER_GONE)
        assert api.get(f"{second.url}/v1/models/orphan", timeout=10).status_code == 404
        serves(second, reference)
        assert second.server.stop() == 0
    finally:
        halt(second)


def test_a_job_whose_server_and_worker_are_killed_fails_at_the_next_start(
    tmp_path: Path, reference: Reference, reaper: None
) -> None:
    home = reference.registered_in(tmp_path / "home")
    first = serve(home, tmp_path / "first.log")
    try:
        job = start_slow_job(first, "lost")
        # Freeze the dispatcher, so that it cannot see its worker die and fail the job; kill the
        # worker before its server, so that it cannot see its server die and fail the job either.
        os.kill(job.server, signal.SIGSTOP)
        os.kill(job.worker, signal.SIGKILL)
        kill_server(first)
    finally:
        halt(first)
    until(lambda: gone(job.server) and gone(job.worker), DEAD_SECONDS, "the server's processes exited")
    assert first.job_record(job.id).state == "running"  # nobody is left to say otherwise

    second = serve(home, tmp_path / "second.log")
    try:
        ended = get_job(second, job.id)  # failed by recover(), before the server was ready
        assert (ended["state"], ended["error"]) == ("failed", SERVER_GONE)
        assert ended["finished_at"] is not None
        serves(second, reference)
        assert second.server.stop() == 0
    finally:
        halt(second)


def test_killing_the_server_process_leaves_nothing_running(
    tmp_path: Path, reference: Reference, reaper: None
) -> None:
    """SIGKILL of the `wharf serve` process alone (the pid a supervisor knows): its Granian worker
    must not live on, orphaned, answering on the port and running the job to its end."""
    first = serve(reference.registered_in(tmp_path / "home"), tmp_path / "first.log")
    leftovers: list[int] = []
    try:
        job = start_slow_job(first, "orphaned")
        leftovers += [job.server, job.worker]
        first.server.process.kill()
        first.server.process.wait()
        until(
            lambda: gone(job.server),
            DEAD_SECONDS,
            f"the Granian worker {job.server} exited with the `wharf serve` that started it",
        )
        with pytest.raises(requests.ConnectionError):
            requests.get(f"{first.url}/healthz", timeout=2)
        until(lambda: first.job_record(job.id).state == "failed", DEAD_SECONDS, f"job {job.id} failed")
        assert first.job_record(job.id).error == SERVER_GONE
    finally:
        halt(first)
        for pid in leftovers:
            if not gone(pid):
                os.kill(pid, signal.SIGKILL)
                until(partial(gone, pid), DEAD_SECONDS, f"process {pid} exited")


# -- the CLI ---------------------------------------------------------------------------------------


def cli(*args: str, home: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WHARF_")}
    command = [str(WHARF), *(("--home", str(home)) if home else ()), *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=120, check=False)


@pytest.fixture(scope="module")
def flowers(tmp_path_factory: pytest.TempPathFactory) -> Path:
    frame = datasets.load_iris(as_frame=True)
    table = frame.frame.drop(columns="target").assign(species=frame.target_names[frame.target])
    path = tmp_path_factory.mktemp("cli") / "flowers.csv"
    table.to_csv(path, index=False)
    return path


REGISTERED = re.compile(r"^registered (\S+):(\d+) \((\w+)\)$", re.MULTILINE)


def check_train_output(output: str, name: str) -> None:
    found = REGISTERED.search(output)
    assert found is not None, output
    assert found.groups() == (name, "1", "classification")
    for metric in ("accuracy", "f1_macro", "log_loss", "roc_auc"):
        assert re.search(rf"^  {metric} +\d", output, re.MULTILINE), output
    assert "confusion matrix (rows: true, columns: predicted)" in output


def test_cli_train_locally_registers_a_version_that_predicts_as_its_pipeline(
    tmp_path: Path, flowers: Path
) -> None:
    home = tmp_path / "home"
    trained = cli(
        "train", str(flowers), "--target", "species", "--algorithm", "logistic_regression", home=home
    )
    assert trained.returncode == 0, trained.stderr
    check_train_output(trained.stdout, "flowers")

    store = MetadataStore(Settings(home=home).resolved_database_url)
    try:
        version = store.version("flowers")
    finally:
        store.close()
    assert version is not None and version.version == 1
    pipeline = joblib.load(home / "artifacts" / key_for(version.sha256))
    rows = pd.read_csv(flowers).drop(columns="species").iloc[::10]
    sample = tmp_path / "rows.csv"
    rows.to_csv(sample, index=False)
    predicted = cli("predict", "flowers", "--input", str(sample), home=home)
    assert predicted.returncode == 0, predicted.stderr
    assert json.loads(predicted.stdout)["predictions"] == pipeline.predict(rows).tolist()


def test_cli_train_against_a_server(wharf: Wharf, flowers: Path) -> None:
    trained = cli(
        "train",
        str(flowers),
        "--target",
        "species",
        "--algorithm",
        "logistic_regression",
        "--name",
        "flowers-remote",
        "--server",
        wharf.url,
        "--api-key",
        ADMIN_KEY,
    )
    assert trained.returncode == 0, trained.stderr
    check_train_output(trained.stdout, "flowers-remote")
    _, pipeline = load_version(wharf, "flowers-remote")
    rows = pd.read_csv(flowers).drop(columns="species").iloc[::10]
    assert predict(wharf, "flowers-remote", records(rows))["predictions"] == pipeline.predict(rows).tolist()


def test_cli_train_exits_6_when_the_job_fails(tmp_path: Path, flowers: Path) -> None:
    trained = cli(
        "train",
        str(flowers),
        "--target",
        "species",
        "--algorithm",
        "random_forest",
        "--param",
        "bootstrap=false",
        "--param",
        "max_samples=0.5",
        home=tmp_path / "home",
    )
    assert trained.returncode == 6, (trained.stdout, trained.stderr)
    assert re.search(r"Job \d+ failed: Fitting random_forest failed: ValueError: ", trained.stderr), (
        trained.stderr
    )
    assert "Traceback" not in trained.stderr
    assert "registered" not in trained.stdout


def test_cli_train_names_an_unknown_target_and_the_close_one(tmp_path: Path, flowers: Path) -> None:
    trained = cli("train", str(flowers), "--target", "specis", home=tmp_path / "home")
    assert trained.returncode == InvalidInput.exit_code, (trained.stdout, trained.stderr)
    assert "Unknown target column 'specis'" in trained.stderr
    assert "Did you mean 'species'?" in trained.stderr
    assert "Traceback" not in trained.stderr

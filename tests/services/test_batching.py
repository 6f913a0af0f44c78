"""Adaptive batching: when requests merge, what each caller gets back, and the settings behind it.

The unit tests drive :class:`BatchingRuntime` with :class:`GatedRuntime`, a fake model that records
every call and can be held inside a call (its gate), so which requests queue behind a busy model is
decided by the test, not by the scheduler. The stress test runs a real scikit-learn model.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import joblib
import numpy as np
import pytest
from flask import Flask
from sklearn import datasets
from sklearn.linear_model import LogisticRegression

from wharf import Settings, create_app
from wharf.batch import Batch
from wharf.errors import InvalidInput, InvalidSettings, Overloaded
from wharf.runtimes.base import Runtime
from wharf.runtimes.sklearn import SklearnRuntime
from wharf.services import Services
from wharf.services.batching import HISTOGRAM_BOUNDS, BatchingRuntime, BatchPolicy
from wharf.services.registry import Registration
from wharf.settings import ModelOptions
from wharf.signature import Column, Output, Signature

BAD = -1.0
"""A value the fake model refuses, as a model refuses a row it cannot take."""
SECONDS = 10.0
"""Longest any wait in these tests may take before it counts as a hang."""


@dataclass(frozen=True)
class Call:
    method: str
    rows: int
    thread: int
    started: float


class GatedRuntime:
    """A fake model: ``predict`` doubles column 0, ``predict_proba`` gives ``[x, -x]`` per row.

    Every call is recorded, then waits at ``gate`` (open unless a test closes it). A row holding
    :data:`BAD` makes the call raise :class:`InvalidInput`.
    """

    format: ClassVar[str] = "fake"
    framework: ClassVar[str] = "fake"

    def __init__(self, *, proba: bool = True, truncate: bool = False) -> None:
        self.signature = Signature(inputs=[Column(name="x")], output=Output(kind="classification"))
        self.made_with: dict[str, str] = {}
        self.calls: list[Call] = []
        self.entered = threading.Event()
        self.gate = threading.Event()
        self.gate.set()
        self._proba = proba
        self._truncate = truncate

    def _call(self, method: str, batch: Batch) -> np.ndarray:
        self.calls.append(Call(method, batch.n_rows, threading.get_ident(), time.monotonic()))
        self.entered.set()
        assert self.gate.wait(SECONDS), "the test never opened the gate"
        values = batch.as_array()[:, 0]
        if (values == BAD).any():
            raise InvalidInput(f"row {int(np.flatnonzero(values == BAD)[0])} is bad", row=0)
        out = values * 2 if method == "predict" else np.column_stack([values, -values])
        return out[:1] if self._truncate else out

    def predict(self, batch: Batch) -> np.ndarray:
        return self._call("predict", batch)

    def predict_proba(self, batch: Batch) -> np.ndarray | None:
        if not self._proba:
            self._call("predict_proba", batch)
            return None
        return self._call("predict_proba", batch)


def rows(*values: float) -> Batch:
    return Batch(["x"], array=np.asarray(values, dtype=np.float64).reshape(-1, 1))


def expected(method: str, values: tuple[float, ...]) -> np.ndarray:
    x = np.asarray(values, dtype=np.float64)
    return x * 2 if method == "predict" else np.column_stack([x, -x])


def wait_until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + SECONDS
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


class Request(threading.Thread):
    """One caller: ``method(rows(*values))`` in its own thread, keeping the result or the error."""

    def __init__(self, runtime: BatchingRuntime, method: str, values: tuple[float, ...]) -> None:
        super().__init__(daemon=True)
        self.runtime = runtime
        self.method = method
        self.values = values
        self.result: np.ndarray | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = getattr(self.runtime, self.method)(rows(*self.values))
        except BaseException as exc:
            self.error = exc

    def answer(self) -> np.ndarray | None:
        self.join(SECONDS)
        assert not self.is_alive(), "the request never got an answer"
        if self.error is not None:
            raise self.error
        return self.result


class Busy:
    """A model held inside a call by one request, with others queued behind it in a known order."""

    def __init__(self, runtime: BatchingRuntime, fake: GatedRuntime) -> None:
        self.runtime = runtime
        self.fake = fake
        fake.gate.clear()
        self.holder = Request(runtime, "predict", (0.5,))
        self.holder.start()
        assert fake.entered.wait(SECONDS)
        self.queued: list[Request] = []

    def queue(self, method: str, *values: float) -> Request:
        """A request that arrives now and waits behind the busy model."""
        request = Request(self.runtime, method, values)
        request.start()
        wait_until(lambda: len(self.runtime._waiting) == len(self.queued) + 1)
        self.queued.append(request)
        return request

    def release(self) -> float:
        """Open the gate; the time it opened."""
        opened = time.monotonic()
        self.fake.gate.set()
        np.testing.assert_array_equal(self.holder.answer(), [1.0])
        return opened


@pytest.fixture
def fake() -> GatedRuntime:
    return GatedRuntime()


def batching(fake: GatedRuntime, max_rows: int = 256, max_wait: float = 0.0) -> BatchingRuntime:
    return BatchingRuntime(fake, BatchPolicy(max_rows=max_rows, max_wait=max_wait))


def test_the_wrapper_keeps_the_runtime_protocol(fake: GatedRuntime) -> None:
    runtime = batching(fake)
    assert (runtime.format, runtime.framework) == ("fake", "fake")
    assert runtime.signature is fake.signature
    assert runtime.made_with is fake.made_with


def test_an_idle_model_runs_a_request_at_once_alone_in_the_callers_thread(fake: GatedRuntime) -> None:
    runtime = batching(fake, max_wait=SECONDS)  # a wait, if one happened, would show
    started = time.monotonic()
    np.testing.assert_array_equal(runtime.predict(rows(1, 2)), [2, 4])
    assert time.monotonic() - started < SECONDS / 2
    assert fake.calls == [Call("predict", 2, threading.get_ident(), fake.calls[0].started)]
    assert not runtime._busy and not runtime._waiting  # the model is free again

    np.testing.assert_array_equal(runtime.predict_proba(rows(3)), [[3, -3]])
    assert [(c.method, c.rows, c.thread) for c in fake.calls[1:]] == [
        ("predict_proba", 1, threading.get_ident())
    ]


def test_requests_queued_behind_a_busy_model_run_as_one_call_each_getting_its_own_rows(
    fake: GatedRuntime,
) -> None:
    runtime = batching(fake)
    busy = Busy(runtime, fake)
    values = [(10.0,), (20.0, 21.0), (30.0, 31.0, 32.0), (40.0,), (50.0, 51.0)]
    queued = [busy.queue("predict", *v) for v in values]
    busy.release()
    for request, v in zip(queued, values, strict=True):
        np.testing.assert_array_equal(request.answer(), expected("predict", v))
    assert [(c.method, c.rows) for c in fake.calls] == [("predict", 1), ("predict", 9)]
    assert fake.calls[1].thread == queued[0].ident  # the oldest queued request leads the batch


def test_max_rows_bounds_a_merged_call(fake: GatedRuntime) -> None:
    runtime = batching(fake, max_rows=4)
    busy = Busy(runtime, fake)
    sizes = [3, 2, 1, 2, 4, 1, 5]
    values = [tuple(float(10 * i + k) for k in range(n)) for i, n in enumerate(sizes, start=1)]
    queued = [busy.queue("predict", *v) for v in values]
    busy.release()
    for request, v in zip(queued, values, strict=True):
        np.testing.assert_array_equal(request.answer(), expected("predict", v))
    merged = [c.rows for c in fake.calls[1:]]
    assert sum(merged) == sum(sizes)
    assert all(n <= 4 for n in merged if n != 5), merged
    assert merged.count(5) == 1  # a request above max_rows runs alone, whole
    assert len(merged) < len(sizes)  # and merging still happened
    assert merged[0] == 4  # the oldest request (3 rows) went first, filled up to the bound


def test_predict_and_predict_proba_are_never_merged(fake: GatedRuntime) -> None:
    runtime = batching(fake)
    busy = Busy(runtime, fake)
    plan = [
        ("predict", (1.0,)),
        ("predict_proba", (2.0, 3.0)),
        ("predict", (4.0, 5.0)),
        ("predict_proba", (6.0,)),
    ]
    queued = [busy.queue(method, *v) for method, v in plan]
    busy.release()
    for request, (method, v) in zip(queued, plan, strict=True):
        np.testing.assert_array_equal(request.answer(), expected(method, v))
    assert [(c.method, c.rows) for c in fake.calls[1:]] == [("predict", 3), ("predict_proba", 3)]


def test_a_model_without_probabilities_gives_none_to_each_merged_request() -> None:
    fake = GatedRuntime(proba=False)
    runtime = batching(fake)
    busy = Busy(runtime, fake)
    queued = [busy.queue("predict_proba", float(i), float(i)) for i in range(3)]
    busy.release()
    assert [request.answer() for request in queued] == [None, None, None]
    assert [(c.method, c.rows) for c in fake.calls[1:]] == [("predict_proba", 6)]


def test_a_failing_merged_call_is_retried_request_by_request(fake: GatedRuntime) -> None:
    runtime = batching(fake)
    busy = Busy(runtime, fake)
    good, bad, other = (1.0, 2.0), (3.0, BAD), (5.0,)
    queued = [busy.queue("predict", *v) for v in (good, bad, other)]
    busy.release()
    np.testing.assert_array_equal(queued[0].answer(), [2, 4])
    with pytest.raises(InvalidInput, match="row 1 is bad"):
        queued[1].answer()
    np.testing.assert_array_equal(queued[2].answer(), [10])
    assert [c.rows for c in fake.calls[1:]] == [5, 2, 2, 1]  # merged, then each alone
    stats = runtime.stats.as_dict()
    assert (stats["calls"], stats["rows"]) == (len(fake.calls), sum(c.rows for c in fake.calls))


def test_a_merged_result_of_the_wrong_length_is_not_sliced_among_requests() -> None:
    fake = GatedRuntime(truncate=True)  # one result, however many rows
    runtime = batching(fake)
    busy = Busy(runtime, fake)
    queued = [busy.queue("predict", float(v)) for v in (7, 8, 9)]
    busy.release()
    assert [request.answer().tolist() for request in queued] == [[14], [16], [18]]  # type: ignore[union-attr]
    assert [c.rows for c in fake.calls[1:]] == [3, 1, 1, 1]


def test_a_bad_request_on_an_idle_model_fails_alone(fake: GatedRuntime) -> None:
    runtime = batching(fake)
    with pytest.raises(InvalidInput):
        runtime.predict(rows(BAD))
    np.testing.assert_array_equal(runtime.predict(rows(2)), [4])  # the model is free again


def test_with_max_wait_a_batch_leader_merges_late_arrivals(fake: GatedRuntime) -> None:
    runtime = batching(fake, max_rows=3, max_wait=SECONDS)
    busy = Busy(runtime, fake)
    leader = busy.queue("predict", 1.0)
    opened = busy.release()  # the holder has handed the model to the leader, which now waits
    late = Request(runtime, "predict", (2.0, 3.0))
    late.start()
    np.testing.assert_array_equal(leader.answer(), [2])
    np.testing.assert_array_equal(late.answer(), [4, 6])
    assert [c.rows for c in fake.calls[1:]] == [3]
    assert fake.calls[1].started - opened < SECONDS / 2  # max_rows reached: no waiting out max_wait


def test_a_request_queued_while_the_leader_wakes_up_is_taken_without_waiting(
    fake: GatedRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = batching(fake, max_rows=3, max_wait=SECONDS)
    late_queued = threading.Event()
    run = runtime._run

    def slow_to_wake(group: list[Any]) -> None:
        assert late_queued.wait(SECONDS)
        run(group)

    monkeypatch.setattr(runtime, "_run", slow_to_wake)
    busy = Busy(runtime, fake)
    leader = busy.queue("predict", 1.0)
    opened = busy.release()
    late = Request(runtime, "predict", (2.0, 3.0))
    late.start()
    wait_until(lambda: len(runtime._waiting) == 1)  # queued, and its notify already sent
    late_queued.set()
    np.testing.assert_array_equal(leader.answer(), [2])
    np.testing.assert_array_equal(late.answer(), [4, 6])
    assert [c.rows for c in fake.calls[1:]] == [3]
    assert fake.calls[1].started - opened < SECONDS / 2


def test_with_max_wait_a_batch_leader_calls_once_max_wait_has_passed(fake: GatedRuntime) -> None:
    runtime = batching(fake, max_wait=0.2)
    busy = Busy(runtime, fake)
    leader = busy.queue("predict", 1.0)
    opened = busy.release()
    np.testing.assert_array_equal(leader.answer(), [2])
    assert [c.rows for c in fake.calls] == [1, 1]
    assert fake.calls[1].started - opened >= 0.2


def test_without_max_wait_a_batch_leader_does_not_wait(fake: GatedRuntime) -> None:
    runtime = batching(fake, max_rows=3, max_wait=0.0)
    busy = Busy(runtime, fake)
    leader = busy.queue("predict", 1.0)
    busy.release()
    late = Request(runtime, "predict", (2.0, 3.0))
    late.start()
    np.testing.assert_array_equal(leader.answer(), [2])
    np.testing.assert_array_equal(late.answer(), [4, 6])
    assert [c.rows for c in fake.calls[1:]] == [1, 2]  # the leader went alone: nobody was waited for


def test_a_request_queued_past_max_queue_is_refused_and_never_run(fake: GatedRuntime) -> None:
    runtime = BatchingRuntime(fake, BatchPolicy(max_queue=0.05))
    busy = Busy(runtime, fake)
    late = busy.queue("predict", 7.0)
    late.join(SECONDS)  # the model stays busy past max_queue
    with pytest.raises(Overloaded) as refused:
        late.answer()
    assert refused.value.retry_after == 1 and int(refused.value.status) == 503
    assert not runtime._waiting  # it left the queue
    busy.release()
    assert [(c.method, c.rows) for c in fake.calls] == [("predict", 1)]  # the refused rows never ran
    np.testing.assert_array_equal(runtime.predict(rows(2)), [4])  # and the model is free


def test_a_request_taken_into_a_batch_is_answered_however_long_the_batch_takes(fake: GatedRuntime) -> None:
    runtime = BatchingRuntime(fake, BatchPolicy(max_queue=0.2))
    busy = Busy(runtime, fake)
    first = busy.queue("predict", 3.0)
    second = busy.queue("predict", 4.0)
    fake.gate.set()
    busy.holder.answer()  # the queued pair is handed over as one batch within max_queue
    np.testing.assert_array_equal(first.answer(), [6.0])
    np.testing.assert_array_equal(second.answer(), [8.0])


def test_stats_add_up(fake: GatedRuntime) -> None:
    runtime = batching(fake)
    empty = runtime.stats.as_dict()
    assert (empty["calls"], empty["rows"], empty["requests"], empty["mean_rows_per_call"]) == (0, 0, 0, 0.0)
    assert len(empty["rows_per_call"]) == len(HISTOGRAM_BOUNDS) + 1
    assert set(empty["rows_per_call"].values()) == {0}

    runtime.predict(rows(1))  # idle: 1 row, 1 request
    busy = Busy(runtime, fake)  # 1 row, 1 request
    queued = [busy.queue("predict", *[float(n)] * n) for n in (2, 3, 4)]  # merged: 9 rows, 3 requests
    busy.release()
    for request in queued:
        request.answer()
    runtime.predict(rows(*range(20_000)))  # idle: past the last bound

    stats = runtime.stats.as_dict()
    assert [c.rows for c in fake.calls] == [1, 1, 9, 20_000]
    assert stats["calls"] == 4
    assert stats["rows"] == 20_011
    assert stats["requests"] == 6
    assert stats["mean_rows_per_call"] == pytest.approx(20_011 / 4)
    histogram = stats["rows_per_call"]
    assert sum(histogram.values()) == stats["calls"]
    assert histogram["<=1"] == 2
    assert histogram["<=16"] == 1
    assert histogram[f">{HISTOGRAM_BOUNDS[-1]}"] == 1


# -- a real model under load -----------------------------------------------------------------

THREADS = 32
PER_THREAD = 50


@pytest.fixture(scope="module")
def logistic(tmp_path_factory: pytest.TempPathFactory) -> tuple[LogisticRegression, np.ndarray, Path]:
    X, y = datasets.load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=1000).fit(X, y)
    path = tmp_path_factory.mktemp("batching") / "logistic.joblib"
    joblib.dump(model, path)
    return model, X, path


def test_concurrent_requests_to_a_real_model_get_the_models_own_answers(
    logistic: tuple[LogisticRegression, np.ndarray, Path],
) -> None:
    model, X, path = logistic
    runtime = BatchingRuntime(SklearnRuntime.load(path), BatchPolicy(max_rows=64))
    names = runtime.signature.names
    wrong: list[Any] = []
    sent: list[int] = []
    start = threading.Barrier(THREADS)

    def client(seed: int) -> None:
        rng = random.Random(seed)
        start.wait()
        for _ in range(PER_THREAD):
            index = [rng.randrange(len(X)) for _ in range(rng.randint(1, 12))]
            batch = Batch(names, array=X[index])
            sent.append(len(index))
            if rng.random() < 0.5:
                got, want = runtime.predict(batch), model.predict(X[index])
                same = np.array_equal(got, want)
            else:
                # BLAS picks its kernel by matrix shape, so a row's probabilities computed within
                # a merged batch may differ from a lone call's in the last bits, never more.
                got, want = runtime.predict_proba(batch), model.predict_proba(X[index])
                same = (
                    got is not None and got.shape == want.shape and np.allclose(got, want, rtol=1e-12, atol=0)
                )
            if not same:
                wrong.append((index, got, want))

    threads = [threading.Thread(target=client, args=(seed,), daemon=True) for seed in range(THREADS)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 60
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    assert not any(thread.is_alive() for thread in threads)
    assert not wrong, wrong[:3]
    stats = runtime.stats.as_dict()
    assert stats["requests"] == len(sent) == THREADS * PER_THREAD
    assert stats["rows"] == sum(sent)
    assert stats["calls"] < stats["requests"]  # requests were merged


# -- settings --------------------------------------------------------------------------------


def test_model_options_override_the_server_wide_batching_and_cache_settings() -> None:
    settings = Settings(
        batch_max_rows=64,
        batch_max_wait_ms=2,
        cache_entries=10,
        model_options={
            "forest": {"batch_max_rows": 8, "batch_max_wait_ms": 0, "cache_entries": 0},
            "tree": {"batch_max_wait_ms": 5},
        },
    )
    assert settings.options_for("forest") == ModelOptions(
        batch_max_rows=8, batch_max_wait_ms=0, cache_entries=0
    )
    assert settings.options_for("tree") == ModelOptions(
        batch_max_rows=64, batch_max_wait_ms=5, cache_entries=10
    )
    assert settings.options_for("other") == ModelOptions(
        batch_max_rows=64, batch_max_wait_ms=2, cache_entries=10
    )


def test_model_options_are_read_from_a_json_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WHARF_MODEL_OPTIONS", '{"forest": {"batch_max_rows": 1, "cache_entries": 7}}')
    options = Settings().options_for("forest")
    assert (options.batch_max_rows, options.cache_entries) == (1, 7)

    monkeypatch.setenv("WHARF_MODEL_OPTIONS", '{"forest": {"batch_rows": 1}}')
    with pytest.raises(InvalidSettings, match="batch_rows"):
        Settings()


@pytest.fixture
def serve(
    tmp_path: Path, logistic: tuple[LogisticRegression, np.ndarray, Path]
) -> Iterator[Callable[..., Flask]]:
    """``serve(**settings)``: an app serving the logistic model as "a" and "b"."""
    apps: list[Flask] = []

    def make(**changes: Any) -> Flask:
        changes.setdefault("allow_pickle_uploads", True)
        settings = Settings(auth=False, home=tmp_path / f"home-{len(apps)}", refresh_seconds=0, **changes)
        app = create_app(settings)
        apps.append(app)
        for name in ("a", "b"):
            app.extensions["wharf"].registry.register(name, logistic[2], "logistic.joblib", Registration())
        return app

    yield make
    for app in apps:
        app.extensions["wharf"].close()


def served_runtime(app: Flask, name: str) -> Runtime:
    services: Services = app.extensions["wharf"]
    return services.inference.model(name).runtime


def test_each_model_is_batched_with_its_own_policy(serve: Callable[..., Flask]) -> None:
    app = serve(batch_max_rows=32, batch_max_wait_ms=4, model_options={"a": {"batch_max_rows": 8}})
    a, b = served_runtime(app, "a"), served_runtime(app, "b")
    assert isinstance(a, BatchingRuntime) and isinstance(b, BatchingRuntime)
    assert a.policy == BatchPolicy(max_rows=8, max_wait=0.004, max_queue=30.0)  # queue_timeout_seconds
    assert b.policy == BatchPolicy(max_rows=32, max_wait=0.004, max_queue=30.0)


ROW = {"instances": [[5.1, 3.5, 1.4, 0.2]]}


def test_batch_max_rows_1_turns_batching_off(serve: Callable[..., Flask]) -> None:
    app = serve(model_options={"a": {"batch_max_rows": 1}})
    client = app.test_client()
    for name in ("a", "b"):
        response = client.post(f"/v1/models/{name}/predict", json=ROW)
        assert response.status_code == 200, response.get_data(as_text=True)
    assert not isinstance(served_runtime(app, "a"), BatchingRuntime)
    assert client.get("/v1/models/a/stats").get_json()["versions"] == [{"version": 1}]
    (b,) = client.get("/v1/models/b/stats").get_json()["versions"]
    assert b["batching"]["requests"] == 1  # the request: warm-ups call the bare runtime, uncounted

    client = serve(batch_max_rows=1).test_client()
    assert client.post("/v1/models/b/predict", json=ROW).status_code == 200
    assert client.get("/v1/models/b/stats").get_json()["versions"] == [{"version": 1}]

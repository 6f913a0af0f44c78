"""The prediction log service: sampling, a bounded queue that drops rather than blocks, batched writes
by a writer thread that outlives database errors, retention, and validated reads."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from wharf.errors import InvalidInput
from wharf.services import predictionlog
from wharf.services.predictionlog import MAX_INPUT_BYTES, PredictionLog, encode
from wharf.storage import MetadataStore
from wharf.storage.predictions import PredictionTable

BODY = {"instances": [[5.1, 3.5, 1.4, 0.2]]}
ANSWER = {"model": "iris", "version": 1, "predictions": ["setosa"]}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[MetadataStore]:
    store = MetadataStore(f"sqlite:///{tmp_path / 'wharf.db'}")
    yield store
    store.close()


@pytest.fixture
def make_log(store: MetadataStore) -> Iterator[Callable[..., PredictionLog]]:
    """``make_log(sample=0.5, ...)``: a prediction log on ``store``, stopped at the end of the test."""
    made: list[PredictionLog] = []

    def make(**options: Any) -> PredictionLog:
        options.setdefault("sample", 1.0)
        options.setdefault("retention_days", 30)
        made.append(PredictionLog(store.predictions, **options))
        return made[-1]

    yield make
    for log in made:
        log.stop()


def offer(log: PredictionLog, n: int = 0, model: str = "iris", **changes: Any) -> bool:
    options: dict[str, Any] = {
        "inputs": {**BODY, "n": n},
        "outputs": ANSWER,
        "request_id": f"req-{n}",
        "key_id": "0a1b2c3d",
        **changes,
    }
    return log.offer(model, 1, **options)


def draws(*values: float) -> Callable[[], float]:
    """A ``random`` that returns ``values`` in turn."""
    found = iter(values)
    return lambda: next(found)


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


class FailingTable(PredictionTable):
    """The real table, whose inserts fail while ``failing`` is set."""

    def __init__(self, store: MetadataStore) -> None:
        super().__init__(store)
        self.failing = threading.Event()
        self.attempts = 0

    def add_many(self, records: list[dict[str, Any]]) -> int:
        self.attempts += 1
        if self.failing.is_set():
            raise RuntimeError("the database is away")
        return super().add_many(records)


# -- sampling ----------------------------------------------------------------------------------


def test_a_sample_of_zero_logs_nothing_and_draws_nothing(make_log: Callable[..., PredictionLog]) -> None:
    def never() -> float:
        raise AssertionError("no draw where nothing is sampled")

    log = make_log(sample=0.0, random=never)
    assert not log.enabled
    assert not offer(log)
    assert log.flush() == 0
    assert log.as_dict() == {"sample": 0.0, "logged": 0, "dropped": 0, "errors": 0, "queued": 0}


def test_a_request_is_logged_when_its_draw_is_under_the_sample(
    make_log: Callable[..., PredictionLog],
) -> None:
    log = make_log(sample=0.25, random=draws(0.1, 0.25, 0.9, 0.0, 0.2499))
    assert [offer(log, n) for n in range(5)] == [True, False, False, True, True]
    assert log.flush() == 3
    total, entries = log.read("iris")
    assert total == 3 and [e.inputs["n"] for e in entries] == [4, 3, 0]
    assert log.logged == 3


def test_a_sample_of_one_logs_everything_without_drawing(make_log: Callable[..., PredictionLog]) -> None:
    def never() -> float:
        raise AssertionError("no draw where everything is sampled")

    log = make_log(sample=1.0, random=never)
    assert all(offer(log, n) for n in range(20))
    assert log.flush() == 20


def test_settings_out_of_range_are_refused(store: MetadataStore) -> None:
    for bad in (
        {"sample": -0.1},
        {"sample": 1.5},
        {"retention_days": 0},
        {"flush_seconds": 0},
        {"max_queue": 0},
    ):
        with pytest.raises(ValueError):
            PredictionLog(store.predictions, **{"sample": 1.0, "retention_days": 1, **bad})


def test_an_unsampled_offer_is_cheap(make_log: Callable[..., PredictionLog]) -> None:
    """A few hundred nanoseconds on every prediction; generous bounds, for slow machines."""
    for sample in (0.0, 1e-9):
        log = make_log(sample=sample)
        runs = 100_000
        started = time.perf_counter()
        for _ in range(runs):
            log.offer("iris", 1, inputs=BODY, outputs=ANSWER, request_id=None, key_id=None)
        assert (time.perf_counter() - started) / runs < 5e-6
        assert log.as_dict()["queued"] == 0


# -- what an entry keeps -----------------------------------------------------------------------


def test_entries_keep_the_request_and_the_answer(make_log: Callable[..., PredictionLog]) -> None:
    log = make_log()
    before = datetime.now(UTC)
    outputs = {
        "model": "iris",
        "version": 1,
        "predictions": np.array(["setosa", "virginica"]),
        "probabilities": np.array([[0.9, 0.1], [0.2, 0.8]], dtype=np.float32),
        "score": np.float64(0.5),
    }
    assert log.offer("iris", 1, inputs=BODY, outputs=outputs, request_id="abc", key_id=None)
    outputs["predictions"][0] = "changed after the answer"  # the entry was taken when offered
    log.flush()
    [found] = log.read("iris")[1]
    assert before <= found.at <= datetime.now(UTC)
    assert (found.model, found.version, found.request_id, found.key_id) == ("iris", 1, "abc", None)
    assert found.inputs == BODY
    assert found.outputs["predictions"] == ["setosa", "virginica"]
    assert np.allclose(found.outputs["probabilities"], [[0.9, 0.1], [0.2, 0.8]])
    assert found.outputs["score"] == 0.5


def test_a_csv_body_is_kept_as_its_text(make_log: Callable[..., PredictionLog]) -> None:
    log = make_log()
    csv = "sepal_length,sepal_width,petal_length,petal_width\n5.1,3.5,1.4,0.2\n"
    offer(log, inputs=csv)
    offer(log, 1, inputs=csv.encode())
    log.flush()
    assert [e.inputs for e in log.read("iris")[1]] == [csv, csv]


def test_large_inputs_are_cut_with_a_marker(make_log: Callable[..., PredictionLog]) -> None:
    log = make_log()
    rows = [[5.1, 3.5, 1.4, 0.2]] * 5000
    offer(log, inputs={"instances": rows})
    csv = "a,b\n" + "é,1\n" * 30_000  # a two-byte character: the cut never splits one
    offer(log, 1, inputs=csv)
    log.flush()
    as_text, as_json = log.read("iris")[1]
    full = orjson.dumps({"instances": rows})
    assert as_json.inputs["truncated"] is True and as_json.inputs["bytes"] == len(full)
    assert as_json.inputs["head"] == full[:MAX_INPUT_BYTES].decode()
    assert as_text.inputs["bytes"] == len(csv.encode())
    assert csv.startswith(as_text.inputs["head"])
    assert MAX_INPUT_BYTES - 1 <= len(as_text.inputs["head"].encode()) <= MAX_INPUT_BYTES


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"a": [1, 2]}, {"a": [1, 2]}),
        ("x" * MAX_INPUT_BYTES, "x" * MAX_INPUT_BYTES),
        (np.arange(3), [0, 1, 2]),
        ({1: "key that is not a string"}, {"1": "key that is not a string"}),
        ({"when": datetime(2025, 1, 2, tzinfo=UTC)}, {"when": "2025-01-02T00:00:00+00:00"}),
        ({"odd": {1, 2}.__class__}, {"odd": "<class 'set'>"}),
    ],
    ids=["json", "string-at-the-limit", "array", "int-keys", "datetime", "other"],
)
def test_encode(value: Any, expected: Any) -> None:
    assert orjson.loads(encode(value, MAX_INPUT_BYTES)) == expected


def test_an_entry_that_does_not_encode_is_dropped_not_raised(make_log: Callable[..., PredictionLog]) -> None:
    log = make_log()
    assert not offer(log, outputs={"huge": 2**70})  # past 64-bit integers: orjson refuses it
    assert log.dropped == 1 and log.as_dict()["queued"] == 0


# -- the queue and the writer ------------------------------------------------------------------


def test_a_full_queue_drops_and_counts(make_log: Callable[..., PredictionLog]) -> None:
    log = make_log(max_queue=3)
    assert [offer(log, n) for n in range(5)] == [True, True, True, False, False]
    assert log.as_dict() == {"sample": 1.0, "logged": 0, "dropped": 2, "errors": 0, "queued": 3}
    assert log.flush() == 3
    assert offer(log, 5)  # room again
    assert log.flush() == 1
    assert log.as_dict() == {"sample": 1.0, "logged": 4, "dropped": 2, "errors": 0, "queued": 0}


def test_the_writer_inserts_in_batches(
    make_log: Callable[..., PredictionLog], store: MetadataStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(predictionlog, "BATCH_ROWS", 4)
    table = FailingTable(store)
    log = PredictionLog(table, sample=1.0, retention_days=1)
    for n in range(10):
        offer(log, n)
    assert log.flush() == 10
    assert table.attempts == 3
    assert log.read("iris", limit=1000)[0] == 10


def test_the_writer_thread_writes_every_flush_seconds(make_log: Callable[..., PredictionLog]) -> None:
    log = make_log(flush_seconds=0.05)
    log.start()
    log.start()  # once
    offer(log, 1)
    wait_for(lambda: log.logged == 1)
    offer(log, 2)
    wait_for(lambda: log.logged == 2)
    assert log.read("iris")[0] == 2


def test_stop_writes_what_is_queued(make_log: Callable[..., PredictionLog]) -> None:
    log = make_log(flush_seconds=3600)
    log.start()
    for n in range(5):
        offer(log, n)
    log.stop()
    assert log.logged == 5 and log.read("iris")[0] == 5
    offer(log, 5)
    log.stop()  # stopped already: still writes what came since
    assert log.read("iris")[0] == 6


def test_the_writer_is_not_started_while_nothing_is_sampled(make_log: Callable[..., PredictionLog]) -> None:
    log = make_log(sample=0.0)
    log.start()
    assert log._thread is None
    log.stop()


def test_the_first_sampled_entry_starts_the_writer(make_log: Callable[..., PredictionLog]) -> None:
    log = make_log(sample=1.0)  # an embedded app never calls start(): the first entry does
    assert log._thread is None
    offer(log, 1)
    assert log._thread is not None and log._thread.is_alive()
    wait_for(lambda: log.logged == 1)


def test_the_writer_survives_database_errors(store: MetadataStore, caplog: pytest.LogCaptureFixture) -> None:
    table = FailingTable(store)
    log = PredictionLog(table, sample=1.0, retention_days=1, flush_seconds=0.02)
    log.start()
    try:
        table.failing.set()
        offer(log, 1)
        wait_for(lambda: log.errors == 2)  # tried, then tried once more and dropped
        assert log.dropped == 1 and log.logged == 0
        table.failing.clear()
        offer(log, 2)
        wait_for(lambda: log.logged == 1)
        assert [e.inputs["n"] for e in log.read("iris")[1]] == [2]
        assert log._thread is not None and log._thread.is_alive()
    finally:
        log.stop()
    assert "Could not write 1 prediction log entries; trying again" in caplog.text
    assert "they are dropped" in caplog.text


def test_a_flush_that_fails_keeps_its_rows_for_one_more_try(store: MetadataStore) -> None:
    table = FailingTable(store)
    log = PredictionLog(table, sample=1.0, retention_days=1)
    offer(log, 1)
    table.failing.set()
    assert log.flush() == 0
    assert log.as_dict()["queued"] == 1 and log.dropped == 0
    table.failing.clear()
    assert log.flush() == 1
    assert log.as_dict() == {"sample": 1.0, "logged": 1, "dropped": 0, "errors": 1, "queued": 0}


# -- retention ---------------------------------------------------------------------------------


def test_the_writer_prunes_past_the_retention_at_start(
    make_log: Callable[..., PredictionLog], store: MetadataStore
) -> None:
    now = datetime.now(UTC)
    old = {"model": "iris", "version": 1, "inputs": {}, "outputs": {}}
    store.predictions.add_many(
        [{**old, "at": now - timedelta(days=3)}, {**old, "at": now - timedelta(hours=47)}]
    )
    log = make_log(retention_days=2, flush_seconds=0.02)
    log.start()
    wait_for(lambda: store.predictions.count("iris") == 1)
    assert log.prune() == 0


def test_the_writer_prunes_hourly(
    make_log: Callable[..., PredictionLog], store: MetadataStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(predictionlog, "PRUNE_SECONDS", 0.05)
    log = make_log(retention_days=1, flush_seconds=0.01)
    log.start()
    time.sleep(0.1)
    old = {
        "model": "iris",
        "version": 1,
        "inputs": {},
        "outputs": {},
        "at": datetime.now(UTC) - timedelta(days=2),
    }
    store.predictions.add_many([old])
    wait_for(lambda: store.predictions.count("iris") == 0)


def test_a_failed_prune_is_logged(store: MetadataStore, caplog: pytest.LogCaptureFixture) -> None:
    class Broken(PredictionTable):
        def prune(self, before: datetime) -> int:
            raise RuntimeError("no")

    log = PredictionLog(Broken(store), sample=1.0, retention_days=1)
    assert log.prune() == 0
    assert log.errors == 1 and "Could not prune the prediction log" in caplog.text


# -- reading -----------------------------------------------------------------------------------


def test_read_filters_and_counts(make_log: Callable[..., PredictionLog], store: MetadataStore) -> None:
    base = datetime(2025, 1, 1, tzinfo=UTC)
    store.predictions.add_many(
        [
            {
                "at": base + timedelta(hours=n),
                "model": "iris",
                "version": 1 + n % 2,
                "inputs": n,
                "outputs": {},
            }
            for n in range(6)
        ]
    )
    log = make_log()
    total, entries = log.read("iris", version=2, limit=2)
    assert total == 3 and [e.inputs for e in entries] == [5, 3]
    total, entries = log.read("iris", since=base.replace(tzinfo=None) + timedelta(hours=4), offset=1)
    assert total == 2 and [e.inputs for e in entries] == [4]


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"version": 0}, "version"),
        ({"version": 2**31}, "version"),
        ({"limit": 0}, "limit"),
        ({"limit": 1001}, "limit"),
        ({"offset": -1}, "offset"),
        ({"since": datetime(2025, 1, 2, tzinfo=UTC), "until": datetime(2025, 1, 1, tzinfo=UTC)}, "since"),
        ({"since": datetime(2025, 1, 1), "until": datetime(2025, 1, 1, tzinfo=UTC)}, "since"),
    ],
)
def test_read_refuses_bad_arguments_naming_them(
    make_log: Callable[..., PredictionLog], arguments: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidInput) as refused:
        make_log().read("iris", **arguments)
    assert refused.value.field == field

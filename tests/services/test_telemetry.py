"""Telemetry: histogram buckets, request and model-call labels, snapshots written by one worker and
summed by another, and the ``loaded`` gauge that only live workers feed."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from wharf.batch import Batch
from wharf.services.metering import MeteredRuntime
from wharf.services.telemetry import (
    LATENCY_BUCKETS,
    LOAD_BUCKETS,
    ROWS_BUCKETS,
    Histogram,
    Telemetry,
    alive,
    merge,
    minute_of,
)

NOW = 1_700_000_000.0


def bucket_counts(bounds: tuple[float, ...], values: list[float]) -> list[int]:
    """Prometheus ``le`` buckets counted independently: bucket i holds ``bounds[i-1] < v <= bounds[i]``,
    the last one every value above the last bound."""
    edges = np.array([-np.inf, *bounds, np.inf])
    array = np.asarray(values, dtype=float)
    return [int(np.sum((array > lo) & (array <= hi))) for lo, hi in itertools.pairwise(edges)]


# -- Histogram -------------------------------------------------------------------------------------


def test_a_value_on_a_bound_falls_in_that_bounds_bucket() -> None:
    hist = Histogram((1.0, 2.0, 5.0))
    for value in (1.0, 2.0, 5.0):
        hist.observe(value)
    assert hist.counts == [1, 1, 1, 0]


def test_values_between_below_and_above_the_bounds() -> None:
    values = [0.0, 0.5, 1.0000001, 1.99, 2.0, 4.0, 5.0000001, 1e9]
    hist = Histogram((1.0, 2.0, 5.0))
    for value in values:
        hist.observe(value)
    assert hist.counts == bucket_counts((1.0, 2.0, 5.0), values)
    assert hist.counts[-1] == 2  # above the last bound: the +Inf bucket
    assert hist.count == len(values)
    assert hist.total == pytest.approx(sum(values))


@pytest.mark.parametrize(
    "bounds", [LATENCY_BUCKETS, ROWS_BUCKETS, LOAD_BUCKETS], ids=["latency", "rows", "load"]
)
def test_every_bucket_set_against_prometheus_le(bounds: tuple[float, ...]) -> None:
    rng = np.random.default_rng(7)
    # Every bound itself, and random values spread over (and beyond) the range of the bounds.
    values = [*map(float, bounds), *rng.uniform(0, bounds[-1] * 1.5, 300).tolist()]
    hist = Histogram(bounds)
    for value in values:
        hist.observe(value)
    assert hist.counts == bucket_counts(bounds, values)
    assert len(hist.counts) == len(bounds) + 1
    assert hist.total == pytest.approx(float(np.sum(values)))


def test_add_sums_counts_and_totals() -> None:
    hist = Histogram((1.0, 2.0), [1, 2, 3], 4.5)
    hist.add([10, 20, 30], 0.5)
    assert hist.counts == [11, 22, 33]
    assert hist.total == 5.0
    assert hist.count == 66


# -- recording ---------------------------------------------------------------------------------------


def test_a_request_a_model_answered_is_labelled_and_counted_per_minute() -> None:
    telemetry = Telemetry()
    telemetry.request("predict", "POST", 200, 0.003, "iris", 2, now=NOW)
    telemetry.request("predict", "POST", 200, 0.010, "iris", 2, now=NOW + 1)
    telemetry.request("predict", "POST", 422, 0.001, "iris", 2, error="invalid-input", now=NOW + 2)

    assert telemetry.requests == {
        ("predict", "POST", "200", "iris", "2"): 2,
        ("predict", "POST", "422", "iris", "2"): 1,
    }
    assert telemetry.errors == {("invalid-input", "422"): 1}
    hist = telemetry.durations[("predict", "iris", "2")]
    assert hist.counts == bucket_counts(LATENCY_BUCKETS, [0.003, 0.010, 0.001])
    assert hist.total == pytest.approx(0.014)

    minutes = telemetry.take_minutes()
    assert set(minutes) == {("iris", 2, minute_of(NOW))}
    counts = minutes[("iris", 2, minute_of(NOW))]
    assert (counts.requests, counts.errors, counts.rows) == (3, 1, 0)
    assert counts.latency == bucket_counts(LATENCY_BUCKETS, [0.003, 0.010, 0.001])
    assert telemetry.take_minutes() == {}  # taken once


def test_a_request_no_model_answered_has_empty_labels_and_no_minute() -> None:
    telemetry = Telemetry()
    telemetry.request("predict", "POST", 404, 0.002, error="model-not-found", now=NOW)
    telemetry.request("unmatched", "GET", 404, 0.0001, error="not-found", now=NOW)

    assert telemetry.requests == {
        ("predict", "POST", "404", "", ""): 1,
        ("unmatched", "GET", "404", "", ""): 1,
    }
    assert set(telemetry.durations) == {("predict", "", ""), ("unmatched", "", "")}
    assert telemetry.errors == {("model-not-found", "404"): 1, ("not-found", "404"): 1}
    assert telemetry.take_minutes() == {}


def test_an_error_answer_without_a_problem_type_counts_no_error() -> None:
    telemetry = Telemetry()
    telemetry.request("predict", "POST", 500, 0.5, "iris", 1, now=NOW)
    assert telemetry.errors == {}
    assert telemetry.take_minutes()[("iris", 1, minute_of(NOW))].errors == 1


def test_model_calls_count_rows_once_and_observe_every_batch() -> None:
    telemetry = Telemetry()
    telemetry.model_call("iris", 1, 5, 0.002)
    telemetry.model_call("iris", 1, 5, 0.004, predicted=False)  # predict_proba of the same rows
    telemetry.model_call("iris", 1, 300, 0.03)

    assert telemetry.rows == {("iris", "1"): 305}
    assert telemetry.batch_rows[("iris", "1")].counts == bucket_counts(ROWS_BUCKETS, [5, 5, 300])
    assert telemetry.batch_rows[("iris", "1")].total == 310
    assert telemetry.model_time[("iris", "1")].counts == bucket_counts(LATENCY_BUCKETS, [0.002, 0.004, 0.03])


def test_probabilities_alone_count_no_rows() -> None:
    telemetry = Telemetry()
    telemetry.model_call("iris", 1, 7, 0.001, predicted=False)
    assert telemetry.rows == {}
    assert telemetry.batch_rows[("iris", "1")].count == 1
    assert telemetry.batch_rows[("iris", "1")].total == 7


def test_rows_in_minute_add_to_the_requests_of_that_minute() -> None:
    telemetry = Telemetry()
    telemetry.request("predict", "POST", 200, 0.003, "iris", 1, now=NOW)
    telemetry.rows_in_minute("iris", 1, minute_of(NOW), 5)
    telemetry.rows_in_minute("iris", 1, minute_of(NOW), 3)
    telemetry.rows_in_minute("iris", 1, minute_of(NOW) + 1, 2)  # counted off the request path, later
    minutes = telemetry.take_minutes()
    assert (minutes[("iris", 1, minute_of(NOW))].requests, minutes[("iris", 1, minute_of(NOW))].rows) == (
        1,
        8,
    )
    assert (
        minutes[("iris", 1, minute_of(NOW) + 1)].requests,
        minutes[("iris", 1, minute_of(NOW) + 1)].rows,
    ) == (
        0,
        2,
    )


def test_outputs_values_cache_and_loads_accumulate() -> None:
    telemetry = Telemetry()
    telemetry.outputs("iris", 1, [("setosa", 2), ("virginica", 1)])
    telemetry.outputs("iris", 1, [("setosa", 3)])
    telemetry.values_summary("houses", 1, 4, 10.5)
    telemetry.values_summary("houses", 1, 2, -0.5)
    telemetry.cache_lookup("iris", 1, hit=True)
    telemetry.cache_lookup("iris", 1, hit=False)
    telemetry.cache_lookup("iris", 1, hit=False)
    telemetry.loaded("iris", 1, 0.3)
    telemetry.loaded("iris", 1, 70.0)

    assert telemetry.classes == {("iris", "1", "setosa"): 5, ("iris", "1", "virginica"): 1}
    assert telemetry.values == {("houses", "1"): [6.0, 10.0]}
    assert telemetry.cache == {("iris", "1", "hit"): 1, ("iris", "1", "miss"): 2}
    assert telemetry.loads[("iris", "1")].counts == bucket_counts(LOAD_BUCKETS, [0.3, 70.0])


# -- snapshots and merge -----------------------------------------------------------------------------


def feed(telemetry: Telemetry, seed: int) -> None:
    """Known, seeded traffic of two models."""
    rng = np.random.default_rng(seed)
    for seconds in rng.exponential(0.01, 20):
        telemetry.request("predict", "POST", 200, float(seconds), "iris", 1, now=NOW)
    for _ in range(int(rng.integers(1, 5))):
        telemetry.request("predict", "POST", 422, 0.001, "iris", 1, error="invalid-input", now=NOW)
    telemetry.request("predict", "POST", 404, 0.002, error="model-not-found", now=NOW)
    for rows in rng.integers(1, 2000, 10):
        telemetry.model_call("iris", 1, int(rows), float(rng.exponential(0.005)))
    telemetry.model_call("houses", 3, int(rng.integers(1, 50)), 0.002)
    telemetry.outputs(
        "iris", 1, [("setosa", int(rng.integers(0, 100))), ("versicolor", int(rng.integers(0, 100)))]
    )
    telemetry.values_summary("houses", 3, int(rng.integers(1, 50)), float(rng.normal(100, 10)))
    telemetry.cache_lookup("iris", 1, hit=bool(rng.integers(0, 2)))
    telemetry.loaded("iris", 1, float(rng.uniform(0, 5)))


def as_table(rows: list[list[Any]], width: int) -> dict[tuple[Any, ...], list[Any]]:
    """A snapshot's rows keyed by their first ``width`` entries."""
    return {tuple(row[:width]): row[width:] for row in rows}


def test_merge_of_two_snapshots_is_their_element_wise_sum() -> None:
    one, two = Telemetry(), Telemetry()
    feed(one, 1)
    feed(two, 2)
    two.request("health", "GET", 200, 0.0002, now=NOW)  # a key only one process has
    a, b = one.snapshot(), two.snapshot()
    total = merge([a, b])

    widths = {"requests": 5, "errors": 2, "rows": 2, "classes": 3, "cache": 3}
    for name, width in widths.items():
        left, right = as_table(a[name], width), as_table(b[name], width)
        expected = {key: left.get(key, [0])[0] + right.get(key, [0])[0] for key in left.keys() | right.keys()}
        assert total[name] == expected, name
    left, right = as_table(a["values"], 2), as_table(b["values"], 2)
    assert total["values"] == {
        key: (
            left.get(key, [0, 0])[0] + right.get(key, [0, 0])[0],
            left.get(key, [0, 0])[1] + right.get(key, [0, 0])[1],
        )
        for key in left.keys() | right.keys()
    }
    for name, width in {"durations": 3, "model_time": 2, "batch_rows": 2, "loads": 2}.items():
        left, right = as_table(a[name], width), as_table(b[name], width)
        assert set(total[name]) == left.keys() | right.keys(), name
        for key, (counts, value_sum) in total[name].items():
            mine = [left[key]] if key in left else []
            theirs = [right[key]] if key in right else []
            parts = mine + theirs
            np.testing.assert_array_equal(counts, np.sum([p[0] for p in parts], axis=0))
            assert value_sum == pytest.approx(sum(p[1] for p in parts))

    # And against the live objects themselves, not only their snapshots.
    assert total["requests"][("predict", "POST", "200", "iris", "1")] == 40
    assert total["rows"][("iris", "1")] == one.rows[("iris", "1")] + two.rows[("iris", "1")]
    assert total["requests"][("health", "GET", "200", "", "")] == 1


def test_merge_of_one_snapshot_round_trips_through_json() -> None:
    telemetry = Telemetry()
    feed(telemetry, 3)
    total = merge([orjson.loads(orjson.dumps(telemetry.snapshot()))])
    assert total["requests"] == telemetry.requests
    assert total["rows"] == telemetry.rows
    assert total["batch_rows"] == {k: (h.counts, h.total) for k, h in telemetry.batch_rows.items()}


def dead_pid() -> int:
    """The pid of a process this test started and waited for."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert not alive(child.pid)
    return child.pid


def test_alive() -> None:
    assert alive(os.getpid())
    assert not alive(dead_pid())


def test_loaded_counts_only_live_processes() -> None:
    mine = Telemetry()
    mine.loaded_versions = lambda: [("iris", 1), ("houses", 3)]
    gone = Telemetry()
    gone.loaded_versions = lambda: [("iris", 1)]
    gone.request("predict", "POST", 200, 0.01, "iris", 1, now=NOW)
    gone_snapshot = {**gone.snapshot(), "pid": dead_pid()}
    live_other = {**gone.snapshot(), "pid": os.getppid()}  # another live process (pytest's parent)

    total = merge([mine.snapshot(), gone_snapshot, live_other])
    assert total["loaded"] == {("iris", "1"): 2, ("houses", "3"): 1}
    # A dead worker's counters stay in the sum: totals never go down.
    assert total["requests"][("predict", "POST", "200", "iris", "1")] == 2


# -- files -------------------------------------------------------------------------------------------


def test_write_without_a_folder_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    telemetry = Telemetry()
    telemetry.request("predict", "POST", 200, 0.01, "iris", 1, now=NOW)
    telemetry.write()
    assert telemetry.others() == []
    assert list(tmp_path.iterdir()) == []


def test_write_is_atomic_and_only_when_something_changed(tmp_path: Path) -> None:
    telemetry = Telemetry(tmp_path)
    feed(telemetry, 4)
    telemetry.write()
    target = tmp_path / f"{os.getpid()}.json"
    assert [p.name for p in tmp_path.iterdir()] == [target.name]  # no scratch file left
    assert orjson.loads(target.read_bytes()) == orjson.loads(orjson.dumps(telemetry.snapshot()))

    target.unlink()
    telemetry.write()  # nothing changed since
    assert not target.exists()

    telemetry.request("predict", "POST", 200, 0.01, "iris", 1, now=NOW)
    telemetry.write()
    written = orjson.loads(target.read_bytes())
    assert as_table(written["requests"], 5)[("predict", "POST", "200", "iris", "1")] == [21]
    assert [p.name for p in tmp_path.iterdir()] == [target.name]


@pytest.mark.parametrize(
    "change",
    [
        lambda t: t.model_call("iris", 1, 4, 0.01),
        lambda t: t.outputs("iris", 1, [("setosa", 1)]),
        lambda t: t.cache_lookup("iris", 1, hit=True),
        lambda t: t.loaded("iris", 2, 0.5),
    ],
    ids=["rows", "classes", "cache", "load"],
)
def test_write_follows_every_counted_change(tmp_path: Path, change: Any) -> None:
    telemetry = Telemetry(tmp_path)
    telemetry.request("predict", "POST", 200, 0.01, "iris", 1, now=NOW)
    telemetry.write()
    target = tmp_path / f"{os.getpid()}.json"
    target.unlink()
    change(telemetry)
    telemetry.write()
    assert orjson.loads(target.read_bytes()) == orjson.loads(orjson.dumps(telemetry.snapshot()))


def test_a_worker_that_unloads_a_version_stops_reporting_it_loaded(tmp_path: Path) -> None:
    """The ``loaded`` gauge is in the snapshot: a worker that drops a version (deleted, replaced
    by a refresh) without answering anything since must still rewrite its file, or every other
    worker's /metrics keeps counting the version as loaded there."""
    held = [("iris", 1), ("iris", 2)]
    telemetry = Telemetry(tmp_path)
    telemetry.loaded_versions = lambda: list(held)
    telemetry.loaded("iris", 1, 0.1)
    telemetry.loaded("iris", 2, 0.1)
    telemetry.write()
    held.remove(("iris", 1))
    telemetry.write()

    written = orjson.loads((tmp_path / f"{os.getpid()}.json").read_bytes())
    assert written["loaded"] == [["iris", "2"]]
    assert merge([written])["loaded"] == {("iris", "2"): 1}


def test_others_reads_other_workers_and_skips_its_own_and_corrupt_files(tmp_path: Path) -> None:
    other = Telemetry()
    feed(other, 5)
    other_snapshot = {**other.snapshot(), "pid": dead_pid()}
    (tmp_path / f"{other_snapshot['pid']}.json").write_bytes(orjson.dumps(other_snapshot))
    (tmp_path / "999999999.json").write_bytes(b'{"pid": 999999999, "requests": [[')  # cut mid-write
    (tmp_path / "12345.tmp").write_bytes(b"{}")  # a scratch file is no snapshot

    mine = Telemetry(tmp_path)
    mine.request("predict", "POST", 200, 0.01, "iris", 1, now=NOW)
    mine.write()
    found = mine.others()
    assert found == [orjson.loads(orjson.dumps(other_snapshot))]

    total = merge([mine.snapshot(), *found])
    assert total["requests"][("predict", "POST", "200", "iris", "1")] == 21
    assert total["rows"] == other.rows  # mine predicted nothing


def test_others_without_the_folder_is_empty(tmp_path: Path) -> None:
    assert Telemetry(tmp_path / "missing").others() == []


# -- the metered runtime -------------------------------------------------------------------------------


class Doubler:
    """A runtime predicting twice the first column; ``fail`` makes ``predict`` raise."""

    format = "test"
    framework = "numpy"
    made_with: dict[str, str] = {}
    signature = None

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail

    def predict(self, batch: Batch) -> np.ndarray:
        if self.fail:
            raise RuntimeError("model failed")
        return batch.as_array()[:, 0] * 2

    def predict_proba(self, batch: Batch) -> np.ndarray | None:
        return np.full((batch.n_rows, 2), 0.5)


def test_metered_runtime_counts_rows_of_predict_and_times_both_calls() -> None:
    telemetry = Telemetry()
    metered = MeteredRuntime(Doubler(), telemetry, "twice", 4)  # type: ignore[arg-type]
    batch = Batch(["x"], array=np.arange(6, dtype=float).reshape(3, 2))

    np.testing.assert_array_equal(metered.predict(batch), [0.0, 4.0, 8.0])
    np.testing.assert_array_equal(metered.predict_proba(batch), np.full((3, 2), 0.5))

    assert telemetry.rows == {("twice", "4"): 3}
    assert telemetry.model_time[("twice", "4")].count == 2
    assert telemetry.batch_rows[("twice", "4")].counts == bucket_counts(ROWS_BUCKETS, [3, 3])


def test_metered_runtime_records_a_failed_call_too() -> None:
    telemetry = Telemetry()
    metered = MeteredRuntime(Doubler(fail=True), telemetry, "twice", 1)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="model failed"):
        metered.predict(Batch(["x"], array=np.ones((5, 1))))
    assert telemetry.model_time[("twice", "1")].count == 1
    assert telemetry.batch_rows[("twice", "1")].total == 5

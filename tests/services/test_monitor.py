"""The monitor: predictions counted off the request path, per-minute counts written by several
processes to one database and summed by readers, drift over a sliding window, and writes that
survive a database failure."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from wharf import Settings
from wharf.batch import Batch
from wharf.services import build_services, monitor
from wharf.services.drift import bin_counts, compare
from wharf.services.monitor import MAX_PENDING_CELLS, Monitor, quantile
from wharf.services.telemetry import LATENCY_BUCKETS, Telemetry, minute_of
from wharf.signature import Column, Output, Signature
from wharf.storage import MetadataStore

START = 1_700_000_040.0
"""A fake clock's start: the first second of a minute."""
COLUMNS = ["age", "income"]
SPECIES = np.array(["setosa", "versicolor", "virginica"])


def runtime(classes: list[Any] | None) -> Any:
    """What ``observe`` looks at of a runtime: its signature (classes for a classifier)."""
    kind = "regression" if classes is None else "classification"
    inputs = [Column(name=name) for name in COLUMNS]
    return SimpleNamespace(signature=Signature(inputs=inputs, output=Output(kind=kind, classes=classes)))


CLASSIFIER = runtime(SPECIES.tolist())
REGRESSOR = runtime(None)


def version_fields() -> dict[str, Any]:
    return {
        "format": "joblib",
        "signature": {"inputs": [{"name": c} for c in COLUMNS], "output": {"kind": "classification"}},
        "sha256": "ab" * 32,
        "size": 1,
        "artifact": "sha256/ab/" + "ab" * 32,
        "filename": "model.joblib",
        "description": "",
        "tags": {},
        "library_versions": {},
        "warnings": [],
        "extra": {},
    }


def sample(seed: int, n: int, *, shift: float = 0.0) -> np.ndarray:
    """``n`` rows of (age, income); ``shift`` moves age by that many standard deviations."""
    rng = np.random.default_rng(seed)
    return np.column_stack([rng.normal(40 + 12 * shift, 12, n), rng.lognormal(10, 0.5, n)])


class Clock:
    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, *, minutes: float = 0, hours: float = 0) -> None:
        self.now += minutes * 60 + hours * 3600


@pytest.fixture(autouse=True)
def _no_background_ticks(monkeypatch: pytest.MonkeyPatch) -> None:
    """The counting thread (started by the first observation) waits out the test: the test ticks
    and flushes itself, so nothing races it."""
    monkeypatch.setattr(monitor, "TICK_SECONDS", 3600.0)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[MetadataStore]:
    store = MetadataStore(f"sqlite:///{tmp_path / 'wharf.db'}")
    store.add_version("iris", **version_fields())
    store.add_version("iris", **version_fields())
    yield store
    store.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def make_monitor(store: MetadataStore, clock: Clock) -> Iterator[Callable[..., Monitor]]:
    """``make_monitor(min_rows=10, ...)``: one process's Telemetry and Monitor over ``store``."""
    made: list[Monitor] = []

    def make(**options: Any) -> Monitor:
        options.setdefault("min_rows", 100)
        made.append(Monitor(Telemetry(), store.monitoring, latest=lambda name: 2, clock=clock, **options))
        return made[-1]

    yield make
    for one in made:
        one.stop()


def observe(mon: Monitor, rows: np.ndarray, predictions: np.ndarray, *, version: int = 1, **kw: Any) -> None:
    mon.observe("iris", version, Batch(COLUMNS, array=rows), predictions, kw.get("runtime", CLASSIFIER))


# -- outputs ------------------------------------------------------------------------------------------


def test_predicted_classes_are_counted_as_numpy_counts_them(make_monitor: Callable[..., Monitor]) -> None:
    mon = make_monitor()
    rng = np.random.default_rng(0)
    batches = [rng.choice(SPECIES, n, p=[0.5, 0.3, 0.2]) for n in (7, 130, 1, 42)]
    for i, predictions in enumerate(batches):
        observe(mon, sample(i, len(predictions)), predictions)
    assert mon.telemetry.classes == {}  # nothing is counted on the request path
    mon.tick()

    labels, counts = np.unique(np.concatenate(batches), return_counts=True)
    assert mon.telemetry.classes == {
        ("iris", "1", str(label)): int(n) for label, n in zip(labels, counts, strict=True)
    }
    minutes = mon.telemetry.take_minutes()
    assert minutes[("iris", 1, minute_of(START))].rows == sum(map(len, batches))


def test_integer_and_object_labels_are_counted_by_their_text(make_monitor: Callable[..., Monitor]) -> None:
    mon = make_monitor()
    ints = np.array([0, 2, 2, 1, 2])
    observe(mon, sample(0, 5), ints, runtime=runtime([0, 1, 2]))
    objects = np.array(["no", "yes", "yes"], dtype=object)  # no classes declared: object dtype says it
    observe(mon, sample(1, 3), objects, version=2, runtime=REGRESSOR)
    mon.tick()
    assert mon.telemetry.classes == {
        ("iris", "1", "0"): 1,
        ("iris", "1", "1"): 1,
        ("iris", "1", "2"): 3,
        ("iris", "2", "no"): 1,
        ("iris", "2", "yes"): 2,
    }


def test_regressor_values_are_summed_over_finite_predictions(make_monitor: Callable[..., Monitor]) -> None:
    mon = make_monitor()
    rng = np.random.default_rng(1)
    batches = [rng.normal(250.0, 40.0, n) for n in (20, 3, 77)]
    batches[1][1] = np.nan  # a model may answer NaN or inf: neither counts in the sum
    batches[2][5] = np.inf
    for i, values in enumerate(batches):
        observe(mon, sample(i, len(values)), values, runtime=REGRESSOR)
    mon.tick()

    everything = np.concatenate(batches)
    finite = everything[np.isfinite(everything)]
    count, total = mon.telemetry.values[("iris", "1")]
    assert count == finite.size == 98
    assert total == pytest.approx(float(finite.sum()))
    assert mon.telemetry.classes == {}


def test_observations_beyond_the_pending_limit_are_dropped_and_counted(
    make_monitor: Callable[..., Monitor],
) -> None:
    mon = make_monitor()
    limit = MAX_PENDING_CELLS // 2  # rows of two columns
    kept = limit - 10
    observe(mon, np.zeros((kept, 2)), np.full(kept, "setosa"))
    observe(mon, np.zeros((11, 2)), np.full(11, "virginica"))  # one row too many: all 11 dropped
    observe(mon, np.zeros((10, 2)), np.full(10, "versicolor"))  # fits exactly
    assert mon.dropped == 1
    mon.tick()
    assert mon.telemetry.classes == {("iris", "1", "setosa"): kept, ("iris", "1", "versicolor"): 10}
    assert mon.telemetry.take_minutes()[("iris", 1, minute_of(START))].rows == limit

    observe(mon, np.zeros((11, 2)), np.full(11, "virginica"))  # counted: room again
    mon.tick()
    assert mon.dropped == 1
    assert mon.telemetry.classes[("iris", "1", "virginica")] == 11


# -- per-minute history ---------------------------------------------------------------------------


def test_flush_writes_one_row_per_version_and_minute(
    make_monitor: Callable[..., Monitor], store: MetadataStore, clock: Clock
) -> None:
    mon = make_monitor()
    telemetry = mon.telemetry
    observe(mon, sample(0, 12), np.full(12, "setosa"))
    telemetry.request("predict", "POST", 200, 0.003, "iris", 1, now=clock())
    telemetry.request("predict", "POST", 422, 0.001, "iris", 1, error="invalid-input", now=clock())
    clock.advance(minutes=1)
    observe(mon, sample(1, 4), np.full(4, "setosa"), version=2)
    telemetry.request("predict", "POST", 200, 0.02, "iris", 2, now=clock())
    mon.flush()

    rows = store.monitoring.minutes("iris", 0)
    first = minute_of(START)
    assert [(m.version, m.minute, m.requests, m.errors, m.rows) for m in rows] == [
        (1, first, 2, 1, 12),
        (2, first + 1, 1, 0, 4),
    ]
    assert rows[0].latency == [
        int(np.sum(np.searchsorted(LATENCY_BUCKETS, [0.003, 0.001]) == i))
        for i in range(len(LATENCY_BUCKETS) + 1)
    ]
    mon.flush()  # nothing new: nothing written
    assert len(store.monitoring.minutes("iris", 0)) == 2


def hand_quantile(low: float, high: float, before: int, inside: int, rank: float) -> float:
    """Linear interpolation inside the bucket (low, high] holding ranks before..before+inside."""
    return low + (high - low) * (rank - before) / inside


def test_quantile_interpolates_inside_the_bucket_as_prometheus_does() -> None:
    counts = [0] * (len(LATENCY_BUCKETS) + 1)
    counts[LATENCY_BUCKETS.index(0.005)] = 4  # (0.0025, 0.005]
    counts[LATENCY_BUCKETS.index(0.025)] = 6  # (0.01, 0.025]
    assert quantile(counts, 0.5) == pytest.approx(hand_quantile(0.01, 0.025, 4, 6, 5.0))
    assert quantile(counts, 0.95) == pytest.approx(hand_quantile(0.01, 0.025, 4, 6, 9.5))
    assert quantile(counts, 0.3) == pytest.approx(hand_quantile(0.0025, 0.005, 0, 4, 3.0))
    first = [5] + [0] * len(LATENCY_BUCKETS)  # the first bucket starts at zero
    assert quantile(first, 0.5) == pytest.approx(hand_quantile(0.0, 0.0005, 0, 5, 2.5))
    above = [0] * len(LATENCY_BUCKETS) + [3]  # beyond the last bound all one knows is that bound
    assert quantile(above, 0.5) == LATENCY_BUCKETS[-1]
    assert quantile([0] * (len(LATENCY_BUCKETS) + 1), 0.5) is None


def test_history_sums_every_process_per_minute(make_monitor: Callable[..., Monitor], clock: Clock) -> None:
    one, two = make_monitor(), make_monitor()  # two workers sharing one database
    first = minute_of(START)
    # Minute 0: 4 fast and 2 slow requests in one worker, 4 slow ones in the other.
    for seconds in [0.003] * 4 + [0.02] * 2:
        one.telemetry.request("predict", "POST", 200, seconds, "iris", 1, now=clock())
    for seconds in [0.02] * 4:
        two.telemetry.request("predict", "POST", 200, seconds, "iris", 2, now=clock())
    observe(one, sample(0, 30), np.full(30, "setosa"))
    observe(two, sample(1, 8), np.full(8, "setosa"), version=2)
    # Minute 2: errors in both, one request slower than the last bound.
    clock.advance(minutes=2)
    one.telemetry.request("predict", "POST", 422, 0.001, "iris", 1, error="invalid-input", now=clock())
    two.telemetry.request("predict", "POST", 503, 30.0, "iris", 2, error="overloaded", now=clock())
    two.telemetry.request("predict", "POST", 200, 30.0, "iris", 2, now=clock())
    # Another model's traffic stays out.
    one.telemetry.request("predict", "POST", 200, 0.003, "other", 1, now=clock())
    one.flush()
    two.flush()
    clock.advance(minutes=1)

    for reader in (one, two):
        history = reader.history("iris", minutes=5)
        assert history["minutes"] == list(range(first - 1, first + 4))  # ending at the clock's minute
        assert history["requests"] == [0, 10, 0, 3, 0]
        assert history["errors"] == [0, 0, 0, 2, 0]
        assert history["rows"] == [0, 38, 0, 0, 0]
        p50, p95, p99 = (history["latency_ms"][q] for q in ("p50", "p95", "p99"))
        assert p50[1] == pytest.approx(1000 * hand_quantile(0.01, 0.025, 4, 6, 5.0))
        assert p95[1] == pytest.approx(1000 * hand_quantile(0.01, 0.025, 4, 6, 9.5))
        assert p99[1] == pytest.approx(1000 * hand_quantile(0.01, 0.025, 4, 6, 9.9))
        assert p50[3] == 1000 * LATENCY_BUCKETS[-1]
        assert p50[0] is p50[2] is p50[4] is None

    assert one.history("iris", minutes=2)["requests"] == [3, 0]


# -- drift ----------------------------------------------------------------------------------------


def columns_of(rows: np.ndarray) -> dict[str, np.ndarray]:
    return {name: rows[:, i] for i, name in enumerate(COLUMNS)}


def test_drift_without_a_reference(make_monitor: Callable[..., Monitor]) -> None:
    report = make_monitor().drift("iris", 1)
    assert (report["status"], report["rows"], report["drifting"], report["columns"]) == (
        "no-reference",
        0,
        False,
        [],
    )


def test_drift_ok_unshifted_and_drifting_shifted(make_monitor: Callable[..., Monitor]) -> None:
    mon = make_monitor()
    reference = sample(100, 5000)
    mon.set_reference("iris", 1, columns_of(reference), source="upload")
    mon.set_reference("iris", 2, columns_of(reference), source="upload")

    live = sample(1, 500)
    observe(mon, live, np.full(500, "setosa"))
    shifted = sample(2, 500, shift=1.0)
    observe(mon, shifted, np.full(500, "setosa"), version=2)
    mon.flush()

    same = mon.drift("iris", 1)
    assert same["status"] == "ok"
    assert same["rows"] == 500
    assert same["drifting"] is False
    assert [(c["name"], c["rows"], c["drifting"]) for c in same["columns"]] == [
        ("age", 500, False),
        ("income", 500, False),
    ]
    assert same["reference"]["rows"] == 5000
    assert same["reference"]["source"] == "upload"

    moved = mon.drift("iris")  # the latest version: 2
    assert moved["version"] == 2
    assert moved["status"] == "ok"
    assert moved["drifting"] is True
    assert {c["name"]: c["drifting"] for c in moved["columns"]} == {"age": True, "income": False}

    # The statistics are those of the drift module on the same rows, independently binned.
    stored = mon.reference("iris", 2)
    assert stored is not None
    expected = compare(stored, bin_counts(stored, columns_of(shifted)), min_rows=100)
    for got, want in zip(moved["columns"], expected.columns, strict=True):
        assert got["psi"] == pytest.approx(want.psi)
        assert got["p_value"] == pytest.approx(want.p_value)


def test_drift_counts_every_process(make_monitor: Callable[..., Monitor]) -> None:
    one, two = make_monitor(), make_monitor()
    one.set_reference("iris", 1, columns_of(sample(100, 2000)), source="upload")
    observe(one, sample(1, 300), np.full(300, "setosa"))
    observe(two, sample(2, 250), np.full(250, "setosa"))  # reads the reference from the database
    one.flush()
    two.flush()
    for reader in (one, two):
        assert reader.drift("iris", 1)["rows"] == 550


def test_drift_needs_min_rows(make_monitor: Callable[..., Monitor]) -> None:
    mon = make_monitor(min_rows=100)
    mon.set_reference("iris", 1, columns_of(sample(100, 2000)), source="upload")
    observe(mon, sample(1, 99, shift=5.0), np.full(99, "setosa"))
    mon.flush()
    report = mon.drift("iris", 1)
    assert (report["status"], report["rows"], report["drifting"]) == ("insufficient-data", 99, False)

    observe(mon, sample(2, 1, shift=5.0), np.full(1, "setosa"))
    mon.flush()
    report = mon.drift("iris", 1)
    assert (report["status"], report["rows"], report["drifting"]) == ("ok", 100, True)


def test_drift_window_leaves_older_counts_out(make_monitor: Callable[..., Monitor], clock: Clock) -> None:
    mon = make_monitor(window_minutes=10, min_rows=10)
    mon.set_reference("iris", 1, columns_of(sample(100, 2000)), source="upload")
    observe(mon, sample(1, 200), np.full(200, "setosa"))
    clock.advance(minutes=3)
    observe(mon, sample(2, 50), np.full(50, "setosa"))
    mon.flush()

    assert mon.drift("iris", 1)["rows"] == 250
    clock.advance(minutes=6)  # minute 9 of a 10-minute window: both still in
    assert mon.drift("iris", 1)["rows"] == 250
    clock.advance(minutes=1)  # the first minute has left the window
    assert mon.drift("iris", 1)["rows"] == 50
    clock.advance(minutes=3)
    report = mon.drift("iris", 1)
    assert (report["status"], report["rows"]) == ("insufficient-data", 0)


def test_drift_history_is_hourly(make_monitor: Callable[..., Monitor], clock: Clock) -> None:
    mon = make_monitor()
    mon.set_reference("iris", 2, columns_of(sample(100, 5000)), source="upload")
    shifted, same = sample(1, 400, shift=1.0), sample(2, 400)
    observe(mon, shifted[:300], np.full(300, "setosa"), version=2)
    clock.advance(minutes=30)  # same hour (START is minute 20 of its hour)
    observe(mon, shifted[300:], np.full(100, "setosa"), version=2)
    clock.advance(hours=2)
    observe(mon, same, np.full(400, "setosa"), version=2)
    mon.flush()

    history = mon.drift_history("iris", hours=3)
    hour = minute_of(clock()) // 60 * 60
    assert history["version"] == 2
    assert history["times"] == [hour - 120, hour - 60, hour]
    assert minute_of(START) // 60 * 60 == hour - 120
    reference = mon.reference("iris", 2)
    assert reference is not None
    for name in COLUMNS:
        psi = history["columns"][name]
        assert psi[1] is None  # no rows that hour
        for got, rows in ((psi[0], shifted), (psi[2], same)):
            want = compare(reference, bin_counts(reference, columns_of(rows)))
            assert got == pytest.approx(next(c.psi for c in want.columns if c.name == name))
    assert history["columns"]["age"][0] > 0.2 > history["columns"]["age"][2]


def test_drift_history_without_a_reference(make_monitor: Callable[..., Monitor]) -> None:
    history = make_monitor().drift_history("iris", hours=4)
    assert history["columns"] == {}
    assert len(history["times"]) == 4


def test_prune_removes_rows_older_than_the_retention(
    make_monitor: Callable[..., Monitor], store: MetadataStore, clock: Clock
) -> None:
    mon = make_monitor(retention_days=1, min_rows=1)
    mon.set_reference("iris", 1, columns_of(sample(100, 500)), source="upload")
    old_minute = minute_of(clock())
    observe(mon, sample(1, 5), np.full(5, "setosa"))
    mon.telemetry.request("predict", "POST", 200, 0.01, "iris", 1, now=clock())
    mon.flush()
    clock.advance(hours=24)  # exactly a day: the old minute is still kept
    observe(mon, sample(2, 7), np.full(7, "setosa"))
    mon.flush()

    assert mon.prune() == 0
    clock.advance(minutes=1)
    assert mon.prune() == 2  # the old serving minute and the old drift counts
    assert [m.minute for m in store.monitoring.minutes("iris", 0)] == [old_minute + 24 * 60]
    stored = store.monitoring.reference("iris", 1)
    assert stored is not None
    digest = stored.digest
    assert [(m, n) for m, n, _ in store.monitoring.drift_counts("iris", 1, 0, digest)] == [
        (old_minute + 24 * 60, 7)
    ]


# -- a database that fails ------------------------------------------------------------------------


def fail_once(
    mon: Monitor, monkeypatch: pytest.MonkeyPatch, during: Callable[[], None] = lambda: None
) -> None:
    """Make the next write of ``mon``'s tables fail, running ``during`` first (what happens while
    the database hangs)."""
    real = mon.tables.add
    calls = []

    def add(*args: Any) -> None:
        if not calls:
            calls.append(args)
            during()
            raise ConnectionError("the database is away")
        real(*args)

    monkeypatch.setattr(mon.tables, "add", add)


def test_a_failed_flush_keeps_its_counts_for_the_next(
    make_monitor: Callable[..., Monitor], store: MetadataStore, monkeypatch: pytest.MonkeyPatch, clock: Clock
) -> None:
    mon = make_monitor(min_rows=1)
    mon.set_reference("iris", 1, columns_of(sample(100, 500)), source="upload")
    observe(mon, sample(1, 9), np.full(9, "setosa"))
    mon.telemetry.request("predict", "POST", 200, 0.01, "iris", 1, now=clock())
    fail_once(mon, monkeypatch)
    with pytest.raises(ConnectionError):
        mon.flush()
    assert store.monitoring.minutes("iris", 0) == []

    mon.flush()
    [written] = store.monitoring.minutes("iris", 0)
    assert (written.requests, written.rows) == (1, 9)
    assert mon.drift("iris", 1)["rows"] == 9


def test_a_failed_flush_keeps_its_counts_when_the_same_minute_goes_on(
    make_monitor: Callable[..., Monitor], store: MetadataStore, monkeypatch: pytest.MonkeyPatch, clock: Clock
) -> None:
    """Requests keep coming while a write fails (the database hangs, then errors): the minute they
    fall in already holds counts the failed write gives back, and both must be kept."""
    mon = make_monitor()
    for _ in range(5):
        mon.telemetry.request("predict", "POST", 200, 0.01, "iris", 1, now=clock())

    def one_more_request() -> None:
        mon.telemetry.request("predict", "POST", 200, 0.01, "iris", 1, now=clock())

    fail_once(mon, monkeypatch, during=one_more_request)
    with pytest.raises(ConnectionError):
        mon.flush()
    mon.flush()
    assert sum(m.requests for m in store.monitoring.minutes("iris", 0)) == 6
    assert mon.history("iris", minutes=1)["requests"] == [6]


# -- wiring ---------------------------------------------------------------------------------------


def test_build_services_wires_one_telemetry_and_the_drift_settings(tmp_path: Path) -> None:
    settings = Settings(
        home=tmp_path / "home",
        refresh_seconds=0,
        drift_window_minutes=30,
        drift_min_rows=50,
        drift_psi_threshold=0.3,
        drift_p_value=0.01,
        monitor_flush_seconds=5,
        monitor_retention_days=3,
    )
    services = build_services(settings)
    try:
        mon = services.monitor
        assert mon.telemetry is services.telemetry is services.inference.telemetry
        assert services.inference.monitor is mon
        assert mon.tables is services.registry.metadata.monitoring
        assert (mon.window_minutes, mon.min_rows, mon.psi_threshold, mon.p_value) == (30, 50, 0.3, 0.01)
        assert (mon.flush_seconds, mon.retention_days) == (5, 3)
    finally:
        services.close()


def test_a_replaced_reference_still_gives_a_report(make_monitor: Callable[..., Monitor]) -> None:
    """Counts binned against a version's former reference have that reference's bins: once a new
    reference replaces it (PUT .../reference), the window must still give a report."""
    mon = make_monitor(min_rows=40)
    whole_years = np.round(sample(100, 200))  # ages in whole years: few distinct edges
    mon.set_reference("iris", 1, columns_of(whole_years), source="registration")
    observe(mon, sample(1, 50), np.full(50, "setosa"))
    mon.flush()
    assert mon.drift("iris", 1)["rows"] == 50

    mon.set_reference("iris", 1, columns_of(sample(101, 5000)), source="upload")  # 100 bins
    observe(mon, sample(2, 30), np.full(30, "setosa"))
    mon.flush()
    report = mon.drift("iris", 1)
    assert report["reference"]["rows"] == 5000
    assert report["status"] == "insufficient-data"
    assert report["rows"] == 30  # only rows binned against the reference it compares with
    history = mon.drift_history("iris", hours=1, version=1)
    assert set(history["columns"]) == set(COLUMNS)

"""``make bench``: wharf against the tutorial Flask app and against the in-process limit.

Trains the two benchmark models, checks every server's predictions equal in-process ones, then
drives each server (pinned to core 1) with wrk (pinned to core 0): 3 s warm-up, 15 s measured.
Writes a markdown table and the raw figures to bench/results/.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import orjson
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from wharf.services.decoding import Decoder
from wharf.signature import Signature

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
LUA = HERE / "wrk" / "post.lua"
SERVER_CORE = "1"
CLIENT_CORE = "0"
BIG_ROWS = 1000


def train(folder: Path) -> dict[str, tuple[Path, Any]]:
    X, y = make_classification(n_samples=20000, n_features=20, random_state=0)
    models = {
        "logreg": Pipeline([("scale", StandardScaler()), ("model", LogisticRegression())]).fit(X, y),
        "forest": RandomForestClassifier(n_estimators=200, max_depth=12, random_state=0).fit(X, y),
    }
    out = {}
    for name, model in models.items():
        path = folder / f"{name}.joblib"
        joblib.dump(model, path)
        out[name] = (path, model)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


API_KEY = f"wharf_{secrets.token_hex(4)}_{secrets.token_urlsafe(32)}"
"""wharf serves the benchmark with auth on, as in production: every request carries this key
(a fresh one per run). Rate limits are off: one client sending thousands of requests a second is
what the benchmark measures, and the default per-address limit would cut it short."""
WHARF_ENV = {"WHARF_ADMIN_KEY": API_KEY, "WHARF_RATE_LIMITS": "{}"}


def post(url: str, body: bytes) -> Any:
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {API_KEY}"}
    request = urllib.request.Request(url, data=body, headers=headers)
    with urllib.request.urlopen(request, timeout=30) as response:
        return orjson.loads(response.read())


@contextmanager
def server(command: list[str], ready_url: str, env: dict[str, str] | None = None):
    """Run ``command`` pinned to the server core until the block ends; yields the Popen."""
    process = subprocess.Popen(
        ["taskset", "-c", SERVER_CORE, *command],
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    try:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{command[0]} exited: {process.stderr.read().decode()[-2000:]}")
            try:
                urllib.request.urlopen(ready_url, timeout=2).read()
                break
            except urllib.error.HTTPError:
                break  # it answers: ready (the tutorial app has no health route)
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{command[0]} did not become ready") from None
                time.sleep(0.2)
        yield process
    finally:
        os.killpg(process.pid, 15)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.wait()


def wrk(url: str, body_file: Path, connections: int, seconds: float) -> dict[str, float]:
    command = [
        "taskset",
        "-c",
        CLIENT_CORE,
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--latency",
        "--timeout",
        "10s",
        "-s",
        str(LUA),
        url,
    ]
    out = subprocess.run(
        command,
        env={**os.environ, "BODY_FILE": str(body_file), "API_KEY": API_KEY},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    result = json.loads(out.strip().splitlines()[-1])
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    return result


def measure(url: str, body_file: Path, connections: int, warmup: float, seconds: float) -> dict[str, float]:
    wrk(url, body_file, connections, warmup)
    return wrk(url, body_file, connections, seconds)


def combine(runs: list[dict[str, float]]) -> dict[str, float]:
    """Rounds of one measurement as one: rates summed over the rounds, latencies their median."""
    out = {key: float(np.median([r[key] for r in runs])) for key in runs[0]}
    for total in ("requests", "duration_us", "errors", "non2xx"):
        if total in runs[0]:
            out[total] = sum(r[total] for r in runs)
    if "requests" in out:
        out["rps"] = out["requests"] / (out["duration_us"] / 1e6)
    return out


Decode = Callable[[bytes], np.ndarray]
"""A request body to the rows array the model takes."""


def standard_decode(body: bytes) -> np.ndarray:
    """The limit's decoding: orjson, then numpy over the parsed lists."""
    return np.asarray(orjson.loads(body)["instances"], dtype=np.float64)


WHARF_DECODER = Decoder(Signature.numbered(20), max_rows=BIG_ROWS)


def wharf_decode(body: bytes) -> np.ndarray:
    """wharf's own decoding of the same body (its decoder for 20 numeric features)."""
    batch = WHARF_DECODER.decode_plain(body)
    if batch is None:
        raise SystemExit("wharf's decoder did not take the benchmark's body")
    return batch.as_array()


def limit(model: Any, body: bytes, seconds: float, decode: Decode = standard_decode) -> dict[str, float]:
    """In process, no HTTP, on the server core: decode the same JSON body, predict, encode."""
    previous = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {int(SERVER_CORE)})
    try:
        return _limit(model, body, seconds, decode)
    finally:
        os.sched_setaffinity(0, previous)


def _limit(model: Any, body: bytes, seconds: float, decode: Decode) -> dict[str, float]:
    calls = 0
    rows = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        X = decode(body)
        predictions = model.predict(X)
        orjson.dumps({"predictions": predictions}, option=orjson.OPT_SERIALIZE_NUMPY)
        calls += 1
        rows += len(X)
    elapsed = time.perf_counter() - started
    return {"calls_per_s": calls / elapsed, "rows_per_s": rows / elapsed, "call_us": elapsed / calls * 1e6}


def pss_kib(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                total += int(line.split()[1])
    return total


def process_tree(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [pid, *[p for c in children for p in process_tree(int(c))]]


def wharf(home: Path, *args: str) -> None:
    subprocess.run(
        [str(BIN / "wharf"), "--home", str(home), "--log-level", "WARNING", *args],
        check=True,
        stdout=subprocess.DEVNULL,
    )


def wharf_server(home: Path, port: int, names: list[str], workers: int, threads: int):
    command = [
        str(BIN / "wharf"),
        "--home",
        str(home),
        "--log-level",
        "WARNING",
        "serve",
        *names,
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--threads",
        str(threads),
    ]
    return server(command, f"http://127.0.0.1:{port}/readyz", WHARF_ENV)


def check(actual: Any, expected: np.ndarray, what: str) -> None:
    if not np.array_equal(np.asarray(actual), expected):
        raise SystemExit(f"{what}: predictions differ from in-process ones; not timing it")


class OnnxTwin:
    """The in-process limit of a model that answers through its ONNX twin: ONNX Runtime itself,
    on the twin wharf registered, with the session options wharf uses (one thread)."""

    def __init__(self, path: Path) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name
        self.label = self.session.get_outputs()[0].name

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.session.run([self.label], {self.input: X.astype(np.float32)})[0]


def make_fast(name: str, X: np.ndarray, home: Path, work: Path) -> OnnxTwin:
    """Convert ``name``:1 to ONNX with a parity check on training rows, and let the twin answer."""
    sample = work / f"{name}-sample.json"
    sample.write_bytes(orjson.dumps({"instances": X[:2000].tolist()}))
    wharf(home, "convert", f"{name}:1", "--to", "onnx", "--sample", str(sample))
    wharf(home, "models", "set-fast", f"{name}:1")
    from wharf.services import build_services
    from wharf.settings import Settings

    services = build_services(Settings(home=home))
    record = services.registry.get(name, services.registry.get(name, 1).extra["answered_by"])
    return OnnxTwin(services.registry.artifacts.local_path(record.artifact))


def run_model(
    name: str, model: Any, X: np.ndarray, home: Path, args: argparse.Namespace, work: Path
) -> list[dict[str, Any]]:
    answering = make_fast(name, X, home, work) if name in args.fast.split(",") else model
    one = work / f"{name}-one.json"
    one.write_bytes(orjson.dumps({"instances": [X[0].tolist()]}))
    big = work / f"{name}-big.json"
    big.write_bytes(orjson.dumps({"instances": X[:BIG_ROWS].tolist()}))
    tutorial = work / f"{name}-tutorial.json"
    tutorial.write_bytes(orjson.dumps({"features": X[0].tolist()}))
    base_port, wharf_port = free_port(), free_port()
    env = {"MODEL_PATH": str(work / f"{name}.joblib")}
    baseline_cmd = [str(BIN / "gunicorn"), "-w", "2", "-b", f"127.0.0.1:{base_port}", "--chdir", str(HERE)]
    baseline_cmd += ["--log-level", "warning", "tutorial_app:app"]
    base_url = f"http://127.0.0.1:{base_port}/predict"
    url = f"http://127.0.0.1:{wharf_port}/v1/models/{name}/versions/1/predict"
    # Both servers run side by side on the server core (an idle one costs nothing) and every
    # figure is taken in rounds that alternate between them and the in-process limit, so a noisy
    # neighbour on this shared machine weighs on all three alike.
    with (
        server(baseline_cmd, base_url, env),
        wharf_server(home, wharf_port, [name], args.workers, args.threads),
    ):
        check([post(base_url, tutorial.read_bytes())["prediction"]], model.predict(X[:1]), f"tutorial {name}")
        check(post(url, big.read_bytes())["predictions"], model.predict(X[:BIG_ROWS]), f"wharf {name}")
        runs: dict[str, list[dict[str, float]]] = {}
        plan = [
            ("base_w1", base_url, tutorial, 1),
            ("base_w2", base_url, tutorial, 64),
            ("w1", url, one, 1),
            ("w2", url, one, 64),
            ("w3", url, big, 4),
        ]
        for _key, target, body, connections in plan:
            wrk(target, body, connections, args.warmup)
        round_seconds = args.seconds / args.rounds
        for _ in range(args.rounds):
            runs.setdefault("lim_one", []).append(
                limit(answering, one.read_bytes(), args.limit_seconds / args.rounds)
            )
            runs.setdefault("lim_big", []).append(
                limit(answering, big.read_bytes(), args.limit_seconds / args.rounds)
            )
            for key, body in (("own_one", one), ("own_big", big)):
                measured = limit(answering, body.read_bytes(), args.limit_seconds / args.rounds, wharf_decode)
                runs.setdefault(key, []).append(measured)
            for key, target, body, connections in plan:
                runs.setdefault(key, []).append(wrk(target, body, connections, round_seconds))
    base_w1, base_w2, w1, w2, w3 = (combine(runs[k]) for k in ("base_w1", "base_w2", "w1", "w2", "w3"))
    lim_one, lim_big = combine(runs["lim_one"]), combine(runs["lim_big"])
    own_one, own_big = combine(runs["own_one"]), combine(runs["own_big"])

    w1_name, w2_name, w3_name = "W1 1 row, 1 conn", "W2 1 row, 64 conn", f"W3 {BIG_ROWS} rows, 4 conn"
    ms = 1e-3
    # (workload, metric, baseline, wharf, limit, lower is better)
    table = [
        (w1_name, "p50 ms", base_w1["p50_us"] * ms, w1["p50_us"] * ms, lim_one["call_us"] * ms, True),
        (w1_name, "p99 ms", base_w1["p99_us"] * ms, w1["p99_us"] * ms, None, True),
        (w2_name, "req/s", base_w2["rps"], w2["rps"], lim_one["calls_per_s"], False),
        (w2_name, "p99 ms", base_w2["p99_us"] * ms, w2["p99_us"] * ms, None, True),
        (w3_name, "rows/s", None, w3["rps"] * BIG_ROWS, lim_big["rows_per_s"], False),
    ]
    rows = [
        {
            "model": name,
            "workload": workload,
            "metric": metric,
            "baseline": base,
            "wharf": ours,
            "limit": lim,
            "lower_is_better": lower,
        }
        for workload, metric, base, ours, lim, lower in table
    ]
    errors = {
        k: v["errors"] + v["non2xx"]
        for k, v in {"baseline W1": base_w1, "baseline W2": base_w2, "W1": w1, "W2": w2, "W3": w3}.items()
    }
    rows.append({"model": name, "errors": errors})
    # The served path against wharf's own in one process: what HTTP, threads and batching cost.
    rows.append(
        {
            "model": name,
            "in_process": {
                "W1 p50 ms": (own_one["call_us"] * ms, w1["p50_us"] * ms, True),
                "W3 rows/s": (own_big["rows_per_s"], w3["rps"] * BIG_ROWS, False),
            },
        }
    )
    return rows


def run_memory(work: Path, models: dict[str, tuple[Path, Any]], args: argparse.Namespace) -> dict[str, Any]:
    home = work / "memory-home"
    names = []
    for i in range(args.memory_models):
        kind = "logreg" if i % 2 == 0 else "forest"
        name = f"m{i:02d}-{kind}"
        wharf(home, "models", "register", name, str(models[kind][0]))
        names.append(name)
    result: dict[str, Any] = {"models": len(names)}
    for workers in (1, 4):
        port = free_port()
        with wharf_server(home, port, [], workers, args.threads) as process:
            time.sleep(2)  # every worker has loaded its models: readyz answered from one of them
            pids = process_tree(process.pid)
            result[f"workers_{workers}"] = {"processes": len(pids), "pss_mib": pss_kib(pids) / 1024}
    result["ratio"] = result["workers_4"]["pss_mib"] / result["workers_1"]["pss_mib"]
    return result


def fmt(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def ratio(a: float | None, b: float | None, lower_is_better: bool) -> str:
    if a is None or b is None or a == 0 or b == 0:
        return "n/a"
    return f"{(b / a if lower_is_better else a / b):.2f}x"


def report(rows: list[dict[str, Any]], memory: dict[str, Any] | None, args: argparse.Namespace) -> str:
    lines = [
        f"# wharf benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}. "
        f"Server pinned to core {SERVER_CORE}, wrk to core {CLIENT_CORE}; {args.warmup:g} s warm-up, "
        f"{args.seconds:g} s measured in {args.rounds} alternating rounds. "
        f"wharf: {args.workers} worker(s) x {args.threads} threads. "
        "Baseline: bench/tutorial_app.py under gunicorn, 2 sync workers. Limit: in one process, "
        "decode the same JSON body, predict with the runtime that answers, encode. "
        f"Answering through a verified ONNX twin (wharf convert + set-fast): {args.fast or 'none'}; "
        "their limit is ONNX Runtime.",
        "",
        "Ratios: wharf vs baseline and wharf vs limit, >1x means wharf is better (faster / more).",
        "",
        "| model | workload | metric | baseline | wharf | limit | wharf vs baseline | wharf vs limit |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        if "metric" not in r:
            continue
        low = r.get("lower_is_better", False)
        cells = [r["model"], r["workload"], r["metric"], fmt(r["baseline"]), fmt(r["wharf"]), fmt(r["limit"])]
        cells += [ratio(r["wharf"], r["baseline"], low), ratio(r["wharf"], r["limit"], low)]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Served against wharf's own path in one process (wharf's decoder, the runtime that answers, "
        "encode; no HTTP), to show what HTTP, threads and batching cost. The limit above decodes "
        "with orjson and numpy; wharf parses numeric rows straight into a float array.",
        "",
        "| model | workload, metric | in process | served | served vs in process |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for r in rows:
        for metric, (alone, served, low) in r.get("in_process", {}).items():
            cells = [r["model"], metric, fmt(alone), fmt(served), ratio(served, alone, low)]
            lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    for r in rows:
        if "errors" in r:
            lines.append(f"Failed requests ({r['model']}): {r['errors']}")
    if memory:
        lines += [
            "",
            f"Memory: {memory['models']} registered models; proportional set size summed over the server's "
            "processes (master included).",
            "",
            "| workers | processes | PSS MiB |",
            "| ---: | ---: | ---: |",
            f"| 1 | {memory['workers_1']['processes']} | {memory['workers_1']['pss_mib']:.0f} |",
            f"| 4 | {memory['workers_4']['processes']} | {memory['workers_4']['pss_mib']:.0f} |",
            "",
            f"4 workers use {memory['ratio']:.2f}x the memory of 1 worker.",
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=15.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=3.0, help="warm-up seconds per run")
    parser.add_argument("--limit-seconds", type=float, default=3.0, help="seconds per in-process limit run")
    parser.add_argument(
        "--rounds", type=int, default=3, help="alternating rounds the measured seconds split into"
    )
    parser.add_argument("--workers", type=int, default=1, help="wharf worker processes")
    parser.add_argument("--threads", type=int, default=32, help="wharf threads per worker")
    parser.add_argument("--models", default="logreg,forest", help="comma-separated: logreg, forest")
    parser.add_argument(
        "--fast",
        default="forest",
        help="comma-separated models served through their verified ONNX twin (wharf convert, set-fast)",
    )
    parser.add_argument("--memory-models", type=int, default=20, help="models for the memory run (0: skip)")
    parser.add_argument("--out", type=Path, default=HERE / "results", help="results folder")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install wrk (make bench does this)")

    X, _ = make_classification(n_samples=20000, n_features=20, random_state=0)
    with tempfile.TemporaryDirectory(prefix="wharf-bench-") as tmp:
        work = Path(tmp)
        models = train(work)
        home = work / "home"
        for name in models:
            wharf(home, "models", "register", name, str(models[name][0]))
        rows: list[dict[str, Any]] = []
        for name in args.models.split(","):
            print(f"benchmarking {name} ...", file=sys.stderr)
            rows += run_model(name, models[name][1], X, home, args, work)
        memory = run_memory(work, models, args) if args.memory_models else None

    text = report(rows, memory, args)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latest.md").write_text(text)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (args.out / f"{stamp}.json").write_text(
        json.dumps({"rows": rows, "memory": memory, "args": vars(args)}, default=str, indent=2)
    )
    print(text)


if __name__ == "__main__":
    main()

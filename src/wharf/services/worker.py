"""A job's worker process: ``python -m wharf.services.worker JOB_ID SERVER_PID``, settings on stdin.

It runs one job and records how it ended. Training crashes, bad parameters and running out of memory
fail the job with a message; the server that started it keeps serving. A thread beats the job's
heartbeat and fails it (then exits) when the server that started this process is gone.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from wharf.errors import WharfError
from wharf.services import Services, build_services
from wharf.services.jobs import HEARTBEAT_SECONDS, pid_alive
from wharf.services.registry import LINEAGE, METRICS, TRAINING, Registration
from wharf.settings import Settings
from wharf.storage.jobs import JobRecord, JobTable

log = logging.getLogger("wharf.worker")

PROGRESS_EVERY = 0.5
"""Least seconds between two progress writes (the last one of a stage is always written)."""


class Worker:
    """Runs job ``job_id`` of ``table`` and keeps its heartbeat while it does."""

    def __init__(self, services: Services, job_id: int, server_pid: int) -> None:
        self.services = services
        self.table: JobTable = services.registry.metadata.jobs
        self.job_id = job_id
        self.server_pid = server_pid
        self.finishing = threading.Lock()
        """Held while the result is registered: the watch never exits halfway through it."""
        self._last = 0.0
        self._stage = ""

    def progress(self, fraction: float, stage: str) -> None:
        """Record progress: at most every :data:`PROGRESS_EVERY` s, and always when the stage changes."""
        now = time.monotonic()
        if stage != self._stage or now - self._last >= PROGRESS_EVERY or fraction >= 1.0:
            self._last, self._stage = now, stage
            self.table.report(self.job_id, round(fraction, 6), stage)

    def watch(self) -> None:
        """Beat the heartbeat; fail the job and exit once the server is gone."""
        while True:
            time.sleep(HEARTBEAT_SECONDS)
            if not pid_alive(self.server_pid) or os.getppid() != self.server_pid:
                with self.finishing:
                    self.table.finish(
                        self.job_id,
                        "failed",
                        error="The server running this job stopped before it finished; submit it again.",
                    )
                    os._exit(1)
            if not self.table.heartbeat(self.job_id):
                os._exit(0)  # cancelled, or failed by a replica: nothing more to do here

    def run(self) -> None:
        job = self.table.get(self.job_id)
        if job is None or job.state != "running":
            return
        try:
            result = RUNNERS[job.kind](self, job)
        except WharfError as exc:
            self.table.finish(self.job_id, "failed", error=exc.detail, result=_where(exc))
        except MemoryError:
            limit = self.services.settings.job_memory_mb
            within = f" within its limit of {limit} MiB (job_memory_mb)" if limit else ""
            self.table.finish(self.job_id, "failed", error=f"The job ran out of memory{within}.")
        except Exception as exc:
            traceback.print_exc()
            self.table.finish(
                self.job_id, "failed", error=f"Training failed: {type(exc).__name__}: {exc}"[:2000]
            )
        else:
            with self.finishing:
                self.table.finish(self.job_id, "succeeded", result=result)


def _where(exc: WharfError) -> dict[str, Any] | None:
    problem = {k: v for k, v in exc.to_problem().items() if k in ("type", "field", "row", "column")}
    return {"problem": problem}


def run_train(worker: Worker, job: JobRecord) -> dict[str, Any]:
    """Train from the job's spec, register the pipeline, return the job's result."""
    import joblib

    from wharf.services.training.spec import TrainSpec
    from wharf.services.training.trainer import train

    services = worker.services
    spec = TrainSpec.model_validate(job.spec)
    worker.progress(0.0, "loading data")
    dataset = services.datasets.get(spec.dataset)
    frame = services.datasets.frame(spec.dataset)

    # Loading takes the first 5% of the bar and registering the last 5%; training reports 0..1
    # (its "done" is not the job's: registering follows).
    def report(fraction: float, stage: str) -> None:
        worker.progress(0.05 + 0.9 * fraction, "registering" if stage == "done" else stage)

    trained = train(spec, frame, report)
    worker.progress(0.95, "registering")
    name = spec.register_as or dataset.name
    registry = services.registry
    with tempfile.TemporaryDirectory(prefix="wharf-job-") as tmp:
        holdout = None
        if trained.holdout is not None:
            holdout_path = Path(tmp) / "holdout.parquet"
            trained.holdout.to_parquet(holdout_path, index=False)
            from wharf.services.registry import sha256_of

            digest = sha256_of(holdout_path)
            key, _ = registry.artifacts.put(holdout_path, digest)
            holdout = {"artifact": key, "sha256": digest, "rows": len(trained.holdout)}
        model_path = Path(tmp) / f"{name}.joblib"
        joblib.dump(trained.pipeline, model_path)
        with worker.finishing:
            record = registry.register(
                name,
                model_path,
                model_path.name,
                Registration(
                    format="joblib",
                    signature=trained.signature,
                    description=f"{spec.algorithm} trained on dataset {dataset.name!r} by job {job.id}",
                    tags={"algorithm": spec.algorithm, "task": trained.task},
                    reference={column: frame[column].to_numpy() for column in trained.features},
                    reference_source="training",
                    provenance={
                        LINEAGE: {
                            "dataset": {"id": dataset.id, "name": dataset.name, "sha256": dataset.sha256},
                            "job": job.id,
                            "target": spec.target,
                            "holdout": holdout,
                        },
                        METRICS: trained.metrics,
                        TRAINING: {
                            "algorithm": spec.algorithm,
                            "task": trained.task,
                            "spec": job.spec,
                            "features": trained.features,
                            "kinds": trained.kinds,
                            "validation": trained.validation,
                            "cv_scores": trained.cv_scores,
                            "best_params": trained.best_params,
                            "dropped_rows": trained.dropped_rows,
                            "warnings": trained.warnings,
                            "explanation": trained.explanation,
                            "timings": trained.timings,
                        },
                    },
                ),
            )
    return {
        "model": record.name,
        "version": record.version,
        "task": trained.task,
        "metrics": trained.metrics,
        "dropped_rows": trained.dropped_rows,
        "warnings": trained.warnings,
    }


RUNNERS = {"train": run_train}


def _prepare() -> None:
    """Import what training uses and start the math libraries' threads, before any memory limit:
    the limit is then what the job itself may use on top of a ready worker."""
    import numpy as np

    import wharf.services.training.trainer  # noqa: F401  scikit-learn and the catalogue

    np.ones((64, 64)) @ np.ones((64, 64))  # BLAS allocates its thread buffers on first use


def _limit_memory(megabytes: int | None) -> None:
    """Cap the address space at what the worker maps now plus ``megabytes``."""
    if megabytes:
        with open("/proc/self/statm") as fh:
            mapped = int(fh.read().split()[0]) * resource.getpagesize()
        limit = mapped + megabytes * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def main(argv: list[str]) -> int:
    job_id, server_pid = int(argv[1]), int(argv[2])
    settings = Settings(**json.loads(sys.stdin.read()))
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    services = build_services(settings)
    worker = Worker(services, job_id, server_pid)
    try:
        threading.Thread(target=worker.watch, name="wharf-heartbeat", daemon=True).start()
        _prepare()
        _limit_memory(settings.job_memory_mb)
        worker.run()
    except MemoryError:
        worker.table.finish(job_id, "failed", error="The job ran out of memory before it started.")
    except BaseException as exc:  # the job must end with a reason, whatever stopped the worker
        traceback.print_exc()
        worker.table.finish(job_id, "failed", error=f"The worker failed: {type(exc).__name__}: {exc}"[:2000])
        raise
    finally:
        services.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

"""The production HTTP server behind ``wharf serve``: Granian, serving the WSGI app.

Chosen by measurement (bench/README.md): on one core, an empty Flask route answers about 15,000
requests a second under Granian's Rust HTTP stack and 4,400 under gunicorn's threaded workers.

The parent process builds the application and loads the models before it forks the workers, then
freezes the garbage collector's view of them: the workers share those pages copy-on-write, so N
workers cost far less than N times one. Nothing in the parent predicts (thread pools of OpenMP
or ONNX Runtime do not survive a fork); each worker drops the inherited database connections and
warms its models before it serves. Granian gives HTTP/1.1 keep-alive, worker respawn, graceful
restarts (SIGHUP) and graceful stops (SIGTERM, SIGINT).
"""

from __future__ import annotations

import ctypes
import gc
import os
import shutil
import signal
import socket
import tempfile
from collections.abc import Callable
from multiprocessing.util import Finalize
from pathlib import Path
from typing import Any

from wharf.settings import Settings

GRACEFUL_SECONDS = 30
PR_SET_PDEATHSIG = 1
BACKLOG = 2048


def free_port(host: str) -> int:
    """A port the OS reports free on ``host`` (for ``--port 0``)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def _die_with_parent(parent: int) -> None:
    """In a worker: be killed when the main process dies, however it dies (SIGKILL included), so
    no orphan keeps the port or runs jobs that the restarted server has failed. Linux only."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the main process died before the request took effect
        os._exit(1)


def serve(settings: Settings, on_ready: Callable[[str], None] | None = None) -> None:
    """Load the app, fork ``settings.workers`` workers of ``settings.threads`` threads, serve.

    :param on_ready: called with the URL served at, once the models are loaded.
    """
    from granian import Granian
    from granian.constants import Interfaces

    from wharf.app import create_app

    if settings.port == 0:
        settings = settings.replace(port=free_port(settings.host))
    app = create_app(settings, warm=False)
    metrics_folder = _metrics_folder()
    telemetry = app.extensions["wharf"].telemetry
    telemetry.folder = metrics_folder
    telemetry.write(loaded=False)  # the loads done here, before the fork, counted once
    gc.collect()
    gc.freeze()  # the loaded models' objects stay out of collections: their pages stay shared

    main_pid = os.getpid()

    def worker_app() -> Any:
        _die_with_parent(main_pid)
        services = app.extensions["wharf"]
        services.after_fork()  # the workers start their counts from zero
        # A graceful stop writes what the worker still holds (log lines, counts, sampled
        # predictions). Granian's workers are multiprocessing children, which end with os._exit:
        # atexit handlers never run there, multiprocessing's finalizers do.
        Finalize(services, services.close, exitpriority=10)
        services.inference.warm_loaded()
        services.inference.watch()  # follow registrations and alias moves made anywhere
        services.jobs.start()  # each worker runs queued jobs (and fails those its predecessor left)
        services.monitor.start()  # counts outputs and inputs, writes this worker's metrics snapshot
        services.predictions.start()
        return app

    server = Granian(
        "wharf.app:create_app",  # for Granian's logs; the app itself comes from worker_app
        address=settings.host,
        port=settings.port,
        interface=Interfaces.WSGI,
        workers=settings.workers,
        blocking_threads=settings.threads,
        backlog=BACKLOG,
        log_level=settings.log_level.lower(),  # type: ignore[arg-type]
        respawn_failed_workers=True,
        workers_kill_timeout=GRACEFUL_SECONDS,
        ssl_cert=settings.certfile,
        ssl_key=settings.keyfile,
    )
    if on_ready is not None:
        host = f"[{settings.host}]" if ":" in settings.host else settings.host
        scheme = "https" if settings.certfile is not None else "http"
        on_ready(f"{scheme}://{host}:{settings.port}")
    try:
        server.serve(target_loader=worker_app, wrap_loader=False)
    finally:
        shutil.rmtree(metrics_folder, ignore_errors=True)


def _metrics_folder() -> Path:
    """A new folder, private to this server, for its workers' metric snapshots (``/metrics`` sums
    them). In the machine's temporary folder, not in WHARF_HOME: replicas sharing a home (and
    containers, where every server is pid 1) must not read or clear each other's."""
    return Path(tempfile.mkdtemp(prefix="wharf-metrics-"))

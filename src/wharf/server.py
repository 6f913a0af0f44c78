"""The production WSGI server behind ``wharf serve``: gunicorn with threaded workers.

Each worker builds the application (and loads its models) itself, so no model state crosses a
fork; gunicorn gives keep-alive, worker supervision and graceful restarts (SIGHUP) and stops
(SIGTERM).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gunicorn.app.base import BaseApplication

from wharf.settings import Settings

KEEPALIVE_SECONDS = 5
GRACEFUL_SECONDS = 30


class WharfServer(BaseApplication):
    """gunicorn running ``create_app(settings)`` in ``settings.workers`` x ``settings.threads``.

    :param on_ready: called in the master once the socket is bound, with the URL it listens at
        (the real port where ``settings.port`` is 0).
    """

    def __init__(self, settings: Settings, on_ready: Callable[[str], None] | None = None) -> None:
        self.settings = settings
        self.on_ready = on_ready
        super().__init__()

    def load_config(self) -> None:
        s = self.settings
        options: dict[str, Any] = {
            "bind": f"{s.host}:{s.port}" if ":" not in s.host else f"[{s.host}]:{s.port}",
            "workers": s.workers,
            "threads": s.threads,
            "worker_class": "gthread",
            "timeout": s.timeout,
            "keepalive": KEEPALIVE_SECONDS,
            "graceful_timeout": GRACEFUL_SECONDS,
            "loglevel": s.log_level.lower(),
            "errorlog": "-",
            "proc_name": "wharf",
            "when_ready": self._when_ready,
            # gunicorn >= 25 opens a control socket in $HOME; one per user clashes between servers.
            "control_socket_disable": True,
        }
        for key, value in options.items():
            if key in self.cfg.settings:
                self.cfg.set(key, value)

    def _when_ready(self, arbiter: Any) -> None:
        if self.on_ready is not None:
            self.on_ready(str(arbiter.LISTENERS[0]))  # "http://127.0.0.1:8000"

    def load(self) -> Any:
        from wharf.app import create_app

        return create_app(self.settings)


def serve(settings: Settings, on_ready: Callable[[str], None] | None = None) -> None:
    """Run the server until it is stopped."""
    WharfServer(settings, on_ready).run()

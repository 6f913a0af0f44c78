"""wharf as a Flask extension: ``Wharf(app)`` adds the model API to your own application.

::

    from flask import Flask
    from wharf.flask import Wharf

    app = Flask(__name__)
    Wharf(app, url_prefix="/ml")   # /ml/v1/models/<name>/predict, /ml/docs, ...
"""

from __future__ import annotations

from flask import Flask

from wharf.http import make_blueprint, observe
from wharf.http.hotpath import DirectPredict
from wharf.http.ui import make_ui_blueprint
from wharf.services import build_services
from wharf.settings import Settings

EXTENSION = "wharf"


class Wharf:
    """Mounts wharf's API on a Flask application.

    :param app: the application, or None to call :meth:`init_app` later.
    :param settings: wharf settings; default: read from ``WHARF_*`` variables and the config file.
    :param url_prefix: where the routes are mounted.
    :param preload: load every served model before the first request.
    :param warm: predict once with each model as it loads.
    :param observe_app: log and count every request of the application (where wharf is the whole
        application, unknown paths included), not only wharf's routes.
    :param direct_predict: answer prediction requests in a WSGI middleware ahead of Flask's
        dispatch (:mod:`wharf.http.hotpath`), with wharf's own admission, errors, headers and
        logging but none of the application's hooks. Off by default for an application of your
        own (its ``before_request`` functions would not see predictions); ``create_app`` turns it on.
    """

    def __init__(
        self,
        app: Flask | None = None,
        settings: Settings | None = None,
        *,
        url_prefix: str = "",
        preload: bool = True,
        warm: bool = True,
        observe_app: bool = False,
        direct_predict: bool = False,
    ) -> None:
        self.settings = settings
        self.observe_app = observe_app
        self.direct_predict = direct_predict
        self.url_prefix = url_prefix
        self.preload = preload
        self.warm = warm
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask, settings: Settings | None = None) -> None:
        settings = settings or self.settings or Settings()
        services = build_services(settings)
        app.extensions[EXTENSION] = services
        api, ui = make_blueprint(), make_ui_blueprint()
        if self.observe_app:
            observe.register(app)
        else:
            observe.register(api)
            observe.register(ui)
        app.register_blueprint(api, url_prefix=self.url_prefix or None)
        app.register_blueprint(ui, url_prefix=(self.url_prefix or "") + "/ui")
        if self.direct_predict:
            app.wsgi_app = DirectPredict(app.wsgi_app, services, self.url_prefix)  # type: ignore[method-assign]
        services.inference.warm_on_load = self.warm
        if self.preload:
            services.inference.preload()
        else:
            services.inference.ready.set()

"""HTTP: parse the request, call one service, render the answer.

Rule of this layer: no ML libraries, no SQL. Errors are raised as :mod:`wharf.errors` and rendered
as RFC 9457 problem+json by :mod:`wharf.http.problems`, the one place that does it.
"""

from wharf.http.blueprint import make_blueprint as make_blueprint

"""Every route of the app, sent malformed and hostile requests, answers without a 500."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator

from flask import Flask
from flask.testing import FlaskClient
from httpcases import PROBLEM, Trained

SKIPPED_ENDPOINTS = {"wharf.docs_asset"}
"""Swagger UI's static files: served from disk, not wharf's own handling of input."""

NORMAL = {
    "name": "iris",
    "version": "1",
    "filename": "wharf-docs.js",
    "job_id": "1",
    "dataset_id": "1",
    "key_id": "0123abcd",
    "alias": "production",
}
HOSTILE_PARAMS = {
    "name": [
        "no-such-model",
        "irsi",
        "a" * 300,
        "..",
        "%2e%2e%2f",
        "%00",
        "%ff",
        "%C3%A9%E4%B8%AD",
        "a%20b",
        "-",
        "iris@",
        "iris@no-such-alias",
        "iris@latest",
        "iris@%00",
        "iris@" + "a" * 300,
        "@production",
    ],
    "version": ["0", "99", str(2**63 - 1), str(2**63), str(10**30)],
    "filename": ["../../../etc/passwd", "%2e%2e/%2e%2e/x", "x" * 300, "%00"],
    "job_id": ["0", "99", str(2**63), str(10**30)],
    "dataset_id": ["0", "99", str(2**63), str(10**30)],
    "key_id": ["zzzzzzzz", "a" * 300, "%00", "..", "%2e%2e%2f"],
    "alias": ["latest", "Production", "a" * 300, "%00", "..", "1", "%C3%A9"],
}
CONVERTER = re.compile(r"<(?:[a-z]+:)?(\w+)>")

MULTIPART_NOT_A_MODEL = (
    b'--x\r\nContent-Disposition: form-data; name="file"; filename="m.onnx"\r\n\r\n'
    + os.urandom(256)
    + b'\r\n--x\r\nContent-Disposition: form-data; name="metadata"\r\n\r\n{"format": [1]}\r\n--x--\r\n'
)
HOSTILE_BODIES: list[tuple[bytes, str | None]] = [
    (b"", None),
    (b"", "application/json"),
    (b"{", "application/json"),
    (b"[]", "application/json"),
    (b"null", "application/json"),
    (b"[" * 50_000 + b"]" * 50_000, "application/json"),
    (b'{"instances": [[1, 2, 3, ' + b"[" * 1000 + b"]" * 1000 + b"]]}", "application/json"),
    (b'{"instances": [[["x"]]], "return": [[1]]}', "application/json"),
    (b'{"dataframe_split": {"columns": [[1], {"a": 1}], "data": [[1]]}}', "application/json"),
    (b'{"inputs": {"sepal_length": "1"}, "params": {"x": [1]}}', "application/json"),
    (b'{"instances": [[1e300, -1e300, 1e-300, 0]], "return": "probabilities"}', "application/json"),
    (b'{"instances": [[1, 2, 3, 4]], "instances": 5}', "application/json"),
    (os.urandom(2048), "application/octet-stream"),
    (os.urandom(2048), "application/json"),
    (b"\xff\xfe,\x00\n1", "text/csv"),
    (b"a,b\n1", "text/csv"),
    (b'sepal_length,sepal_width,petal_length,petal_width\n"1,2\n', "text/csv"),
    (MULTIPART_NOT_A_MODEL, "multipart/form-data; boundary=x"),
    (b"garbage", "multipart/form-data"),
    (b"garbage", "multipart/form-data; boundary=x"),
    (b"<predict/>", "application/xml"),
    (b"a=1&b=%ff", "application/x-www-form-urlencoded"),
]
QUERIES = ["", "?probabilities=%ff&probabilities=true", "?" + "x=1&" * 200]


def urls(rule: str) -> Iterator[str]:
    """``rule`` with normal values, then with each hostile value in one place at a time."""
    params = CONVERTER.findall(rule)

    def fill(values: dict[str, str]) -> str:
        return CONVERTER.sub(lambda m: values[m.group(1)], rule)

    yield fill(NORMAL)
    for param in params:
        for value in HOSTILE_PARAMS[param]:
            yield fill({**NORMAL, param: value})


def test_every_route_survives_hostile_requests(
    app: Flask, client: FlaskClient, served: dict[str, Trained]
) -> None:
    rules = [r for r in app.url_map.iter_rules() if r.endpoint not in SKIPPED_ENDPOINTS]
    assert {r.endpoint for r in rules} >= {"wharf.predict", "wharf.upload_version", "wharf.delete_model"}
    requests: list[tuple[str, str, bytes, str | None]] = []
    for rule in rules:
        methods = [*sorted(rule.methods or ()), "PUT", "PATCH"]
        for url in urls(rule.rule):
            for method in methods:
                bodies = HOSTILE_BODIES if method in {"POST", "PUT", "PATCH"} else HOSTILE_BODIES[:3]
                for query in QUERIES if method == "POST" else QUERIES[:1]:
                    requests += [(method, url + query, body, kind) for body, kind in bodies]
    requests.sort(key=lambda r: r[0] == "DELETE")  # delete last: the other requests find models to act on

    failures = []
    seen: set[str] = set()
    for method, url, body, kind in requests:
        response = client.open(url, method=method, data=body, content_type=kind)
        seen.add(url)
        where = f"{method} {url[:80]} {kind} {body[:40]!r}"
        if response.status_code >= 500:
            failures.append(f"{where} -> {response.status_code} {response.get_data(as_text=True)[:200]}")
        elif response.status_code >= 400 and method != "HEAD":
            if response.mimetype != PROBLEM:
                failures.append(f"{where} -> {response.status_code} {response.mimetype}")
            elif response.get_json(force=True)["status"] != response.status_code:
                failures.append(f"{where} -> status differs from the problem's")
    assert not failures, "\n".join(failures[:20])
    assert len(seen) >= len(rules)
    assert len(requests) > 1_000

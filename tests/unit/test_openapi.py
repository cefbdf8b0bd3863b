"""The OpenAPI document: each operation's statuses, one Problem shape, and examples that are real."""

from __future__ import annotations

import json
import re
from typing import Any

import jsonschema_rs
import msgspec
import pytest

from gateway.api.app import create_app
from gateway.settings import load_settings

KEYLESS = {"/healthz", "/readyz", "/l/{code}"}  # /l/{code}: the short links members tap
CALLBACKS = ("/v1/inbound/", "/v1/unsubscribe/")


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    app = create_app(load_settings({}), "redis://127.0.0.1:1/0")  # not started: no connection is made
    return json.loads(msgspec.json.encode(app.openapi_schema.to_schema()))  # type: ignore[no-any-return]


def operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(path, method, op) for path, item in doc["paths"].items() for method, op in item.items()]


def test_every_error_is_the_one_problem_schema(doc: dict[str, Any]) -> None:
    schemas = doc["components"]["schemas"]
    assert "Problem" in schemas and schemas["Problem"]["properties"]["status"]["type"] == "integer"
    # Litestar's own validation body (status_code, detail, extra) is never sent, so never documented.
    assert "status_code" not in json.dumps(doc)
    for path, method, op in operations(doc):
        for status, response in op["responses"].items():
            if int(status) < 400 or (path == "/readyz" and status == "503"):
                continue
            (media, content), *others = response["content"].items()
            assert not others and media == "application/problem+json", (path, method, status)
            assert content["schema"] == {"$ref": "#/components/schemas/Problem"}, (path, method, status)


def test_each_operation_lists_the_statuses_it_can_answer(doc: dict[str, Any]) -> None:
    for path, method, op in operations(doc):
        statuses = {int(s) for s in op["responses"]}
        keyed = path not in KEYLESS and not path.startswith(CALLBACKS)
        if keyed:
            assert {401, 403, 429, 503} <= statuses, (path, method)
            assert op.get("security") is None  # the document's default: the bearer API key
        else:
            assert op["security"] == [], (path, method)
            assert 401 not in statuses and 429 not in statuses, (path, method)
        if "requestBody" in op:
            assert {400, 413} <= statuses, (path, method)
        assert op["operationId"].isidentifier(), op["operationId"]
    assert doc["components"]["securitySchemes"]["apiKey"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key: `tidings keys create`",
    }
    rejection = doc["paths"]["/v1/notify"]["post"]["responses"]["422"]["content"]["application/problem+json"]
    example = next(iter(rejection["examples"].values()))["value"]
    assert example["status"] == 422 and example["type"].endswith("/rejected") and example["reasons"]


def examples_of(doc: dict[str, Any]) -> list[tuple[str, dict[str, Any], Any]]:
    """(where, schema, example value) for every response and request body example."""
    found = []
    for path, method, op in operations(doc):
        bodies = [(f"{status}", r.get("content", {})) for status, r in op["responses"].items()]
        if "requestBody" in op:
            bodies.append(("request", op["requestBody"]["content"]))
        for where, content in bodies:
            for media, entry in content.items():
                for name, example in (entry.get("examples") or {}).items():
                    found.append(
                        (f"{method.upper()} {path} {where} {media} {name}", entry["schema"], example["value"])
                    )
                # A request body's example sits in its schema (JSON Schema ``examples``).
                for n, value in enumerate(entry["schema"].get("examples") or []):
                    found.append((f"{method.upper()} {path} {where} {media} {n}", entry["schema"], value))
    return found


def strings(value: Any) -> list[str]:
    """Every string in a JSON value, keys included."""
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (k, *strings(v))]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    return [value] if isinstance(value, str) else []


def test_examples_are_real_values_that_fit_their_schemas(doc: dict[str, Any]) -> None:
    found = examples_of(doc)
    ops = operations(doc)
    # Every operation shows what it answers, and every body it takes.
    assert {(m, p) for p, m, _ in ops} == {(w.split()[0].lower(), w.split()[1]) for w, _, _ in found}
    assert sum(w.split()[2] == "request" for w, _, _ in found) == sum("requestBody" in op for *_, op in ops)
    for where, schema, value in found:
        jsonschema_rs.validate({**schema, "components": doc["components"]}, value)
        # Litestar's generated examples were random: 20 ASCII letters, or short hex under random keys.
        random_looking = [v for v in strings(value) if re.fullmatch(r"[A-Za-z]{20}|[0-9a-f]{1,10}", v)]
        if where.startswith("POST /v1/verifications/check request"):  # a code is six digits, for real
            random_looking.remove(value["code"])
        assert not random_looking, (where, random_looking)
    # Component schemas carry only the request examples written for them, never generated ones.
    bodies = {
        ref.rsplit("/", 1)[-1]
        for *_, op in ops
        if "requestBody" in op
        for entry in op["requestBody"]["content"].values()
        for ref in [entry["schema"].get("$ref") or entry["schema"].get("allOf", [{}])[0].get("$ref", "")]
    }
    for name, schema in doc["components"]["schemas"].items():
        for value in schema.get("examples", []):
            assert name in bodies, name
            jsonschema_rs.validate({**schema, "components": doc["components"]}, value)
            code = [value["code"]] if name == "VerificationCheck" else []  # six digits, for real
            assert [v for v in strings(value) if re.fullmatch(r"[A-Za-z]{20}|[0-9a-f]{1,10}", v)] == code

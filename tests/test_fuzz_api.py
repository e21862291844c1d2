"""Schemathesis against the real server: every documented operation, valid and invalid input.

For each operation a bounded number of generated requests go over loopback with a key that holds every
scope. A response must never be a 500, must use a documented status and media type, must match the
documented schema, must come back within the per-request timeout, and input that breaks the schema
must be refused. Generation is derandomised so a failure reproduces on the next run.
"""

from __future__ import annotations

import smtplib
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from jsonschema import Draft202012Validator
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from backend.api import all_routes
from backend.auth import ALL_SCOPES
from backend.openapi import build_document
from tests.mailtools import make_inbox

EXAMPLES = 4
REQUEST_TIMEOUT = 10.0
# An endless event stream has no single response to judge; the live-events tests cover it.
STREAMING = {("GET", "/v1/events")}
MODES = (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE)


def _operations() -> list[tuple[str, str]]:
    return [(r.method, r.template) for r in all_routes() if (r.method, r.template) not in STREAMING]


def refuses_invalid_data(ctx: Any, response: Any, case: Any) -> bool | None:
    """Schemathesis' negative-data check, minus what the API accepts on purpose (CONTRACT.md §2).

    An empty or blank JSON body reads as `{}` and an empty query value as an absent one, because the
    official clients send both; a case mutated only that way is not a schema violation the server
    should refuse.
    """
    body = case.body
    if isinstance(body, (str, bytes)) and not body.strip():
        return None
    if isinstance(body, dict) and _valid_once_stripped(case):
        return None
    sent = parse_qs(urlsplit(str(response.request.url)).query, keep_blank_values=True)
    if any("" in values for values in sent.values()):
        return None
    return negative_data_rejection(ctx, response, case)


def _stripped(value: Any) -> Any:
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, dict):
        return {k: _stripped(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_stripped(v) for v in value]
    return value


def _valid_once_stripped(case: Any) -> bool:
    """Strings are read without surrounding whitespace (the document says so), then validated."""
    document = case.operation.schema.raw_schema
    operation = document["paths"][case.operation.path][case.method.lower()]
    content = operation.get("requestBody", {}).get("content", {}).get("application/json")
    if content is None:
        return False
    validator = Draft202012Validator({**content["schema"], "components": document["components"]})
    return validator.is_valid(_stripped(case.body))


CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance, refuses_invalid_data]


@pytest.fixture(scope="module")
def fuzz_key(running) -> str:
    return running.new_key(list(ALL_SCOPES))


@pytest.fixture(scope="module")
def fuzz_schema(running, fuzz_key: str) -> Any:
    schema = schemathesis.openapi.from_dict(build_document(running.server.app.routes))
    # Unknown query parameters are ignored on purpose (clients add their own); the key is not fuzzed.
    schema.config.generation.update(allow_extra_parameters=False, with_security_parameters=False)
    schema.config.update(headers={"Authorization": f"Bearer {fuzz_key}"})
    return schema


def _seed(api: httpx.Client, smtp_port: int) -> dict[str, str]:
    inbox = make_inbox(api)
    with smtplib.SMTP("127.0.0.1", smtp_port, timeout=10) as smtp:
        smtp.sendmail("seed@example.net", [inbox["address"]], b"Subject: seed\r\n\r\nhello\r\n")
    message = api.get("/v1/messages", params={"inbox_id": inbox["id"]}).json()["data"][0]
    upload = api.post("/v1/attachments/upload", json={"content": "aGk=", "filename": "seed.txt"})
    return {"inbox_id": inbox["id"], "domain_id": inbox["domain_id"], "thread_id": message["thread_id"],
            "attachment_id": upload.json()["data"]["attachment_id"]}


@pytest.fixture(scope="module")
def seeded() -> dict[str, str]:
    return {}


@pytest.fixture
def real_ids(running, fuzz_key: str, seeded: dict[str, str]) -> dict[str, str]:
    """Ids that exist in the fuzzing organisation, made afresh when an earlier case deleted them."""
    with running.client(fuzz_key) as api:
        if not seeded or any(api.get(path).status_code != 200 for path in (
                f"/v1/inboxes/{seeded['inbox_id']}", f"/v1/threads/{seeded['thread_id']}",
                f"/v1/attachments/{seeded['attachment_id']}")):
            seeded.update(_seed(api, running.server.smtp_port))
    return seeded


def _opaque(parameter: dict[str, Any]) -> bool:
    """A parameter no value can break: a path segment that is any non-empty string (an empty one would
    change the route, so Schemathesis drops it), or an optional query string without constraints."""
    schema = parameter.get("schema")
    if parameter.get("in") == "path":
        return schema in ({"type": "string"}, {"type": "string", "minLength": 1})
    return parameter.get("in") == "query" and not parameter.get("required") and schema == {"type": "string"}


def _negatable(documented: dict[str, Any]) -> bool:
    """Whether a request to the operation can be made invalid: it takes a body, or a parameter that is
    not opaque. For the others Hypothesis would only draw ~460 cases that Schemathesis filters out before
    giving up (Unsatisfiable), sending no request; test_opaque_parameters_cannot_be_made_invalid keeps
    that true."""
    return "requestBody" in documented or not all(_opaque(p) for p in documented["parameters"])


FUZZ_SETTINGS = settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                         phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))


def _fuzz(operation: Any, mode: schemathesis.GenerationMode, base_url: str, real_ids: dict[str, str]) -> None:
    """Send the generated requests of one mode to the operation and check each response."""

    @FUZZ_SETTINGS
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        if mode is schemathesis.GenerationMode.POSITIVE and case.path_parameters:
            # Valid input on real resources reaches past the 404; invalid input keeps random ids.
            case.path_parameters = {k: real_ids.get(k, v) for k, v in case.path_parameters.items()}
        if operation.path == "/v1/messages/wait":
            case.query = {**(case.query or {}), "timeout": "0"}  # answer now instead of long-polling
        case.call_and_validate(base_url=base_url, timeout=REQUEST_TIMEOUT, checks=CHECKS)

    run()


@pytest.mark.parametrize(("method", "path"), _operations(), ids=lambda v: v)
def test_operation_survives_generated_requests(running, fuzz_schema, real_ids: dict[str, str], method: str,
                                               path: str) -> None:
    operation = fuzz_schema[path][method]
    documented = fuzz_schema.raw_schema["paths"][path][method.lower()]
    failures = []
    for mode in MODES if _negatable(documented) else MODES[:1]:
        try:
            _fuzz(operation, mode, running.url, real_ids)
        except Unsatisfiable:
            continue  # nothing in this operation can be made invalid
        except (AssertionError, BaseExceptionGroup) as exc:
            failures.append(f"[{mode.value}] {exc}")
    assert not failures, "\n\n".join(failures)
    health = running.client("").get("/health")
    assert health.status_code == 200


@pytest.mark.parametrize(("method", "path"), [("GET", "/v1/threads/{thread_id}"), ("GET", "/v1/outbox/counts")],
                         ids=lambda v: v)
def test_opaque_parameters_cannot_be_made_invalid(fuzz_schema, method: str, path: str) -> None:
    """Why the test above sends no invalid input to operations whose parameters are all opaque (a path id,
    an optional query id): Schemathesis cannot make one such request invalid."""
    documented = fuzz_schema.raw_schema["paths"][path][method.lower()]
    assert documented["parameters"] and not _negatable(documented)
    operation = fuzz_schema[path][method]

    @FUZZ_SETTINGS
    @given(case=operation.as_strategy(generation_mode=schemathesis.GenerationMode.NEGATIVE))
    def run(case: Any) -> None:
        raise AssertionError(f"Schemathesis made an invalid request: {case!r}")

    with pytest.raises(Unsatisfiable):
        run()

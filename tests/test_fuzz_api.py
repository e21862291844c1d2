"""Schemathesis against the real server: every documented operation, valid and invalid input.

For each operation a bounded number of generated requests go over loopback with a key that holds every
scope. A response must never be a 500, must use a documented status and media type, must match the
documented schema, must come back within the per-request timeout, and input that breaks the schema
must be refused. Generation is derandomised so a failure reproduces on the next run.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
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

EXAMPLES = 5
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
    sent = parse_qs(urlsplit(str(response.request.url)).query, keep_blank_values=True)
    if any("" in values for values in sent.values()):
        return None
    return negative_data_rejection(ctx, response, case)


CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance, refuses_invalid_data]


@pytest.fixture(scope="module")
def fuzz_schema(running) -> Any:
    key = running.new_key(list(ALL_SCOPES))
    schema = schemathesis.openapi.from_dict(build_document(running.server.app.routes))
    # Unknown query parameters are ignored on purpose (clients add their own); the key is not fuzzed.
    schema.config.generation.update(allow_extra_parameters=False, with_security_parameters=False)
    schema.config.update(headers={"Authorization": f"Bearer {key}"})
    return schema


@pytest.mark.parametrize(("method", "path"), _operations(), ids=lambda v: v)
def test_operation_survives_generated_requests(running, fuzz_schema, method: str, path: str) -> None:
    operation = fuzz_schema[path][method]
    documented = fuzz_schema.raw_schema["paths"][path][method.lower()]
    # With no parameters and no body there is nothing to make invalid.
    negatable = documented["parameters"] or "requestBody" in documented
    failures = []
    for mode in MODES if negatable else MODES[:1]:

        @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                  phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy(generation_mode=mode))
        def run(case: Any) -> None:
            if path == "/v1/messages/wait":
                case.query = {**(case.query or {}), "timeout": "0"}  # answer now instead of long-polling
            case.call_and_validate(base_url=running.url, timeout=REQUEST_TIMEOUT, checks=CHECKS)

        try:
            run()
        except Unsatisfiable:
            continue  # nothing in this operation can be made invalid (no parameters, no body)
        except (AssertionError, BaseExceptionGroup) as exc:
            failures.append(f"[{mode.value}] {exc}")
    assert not failures, "\n\n".join(failures)
    health = running.client("").get("/health")
    assert health.status_code == 200

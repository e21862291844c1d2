"""The published OpenAPI document: valid 3.1, complete against the live route table, honest about scopes."""

from __future__ import annotations

import httpx
from openapi_spec_validator import validate

from backend.http.router import PARAM


def _document(running) -> dict:
    response = httpx.get(f"{running.url}/v1/openapi.json", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    return response.json()


def test_document_is_public_and_valid_openapi_31(running) -> None:
    document = _document(running)
    assert document["openapi"].startswith("3.1")
    validate(document)
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"


def test_every_route_appears_with_its_scope_and_path_parameters(running) -> None:
    document = _document(running)
    routes = running.server.app.routes
    assert len(routes) > 40
    for route in routes:
        operation = document["paths"][route.template][route.method.lower()]
        assert operation["x-required-scope"] == route.scope, route
        assert bool(operation["security"]) == (route.scope is not None), route
        documented = {p["name"] for p in operation["parameters"] if p["in"] == "path"}
        assert documented == set(PARAM.findall(route.template)), route
        assert operation["summary"]
    documented_operations = sum(len(ops) for ops in document["paths"].values())
    assert documented_operations == len(routes)


def test_no_description_outlives_its_route(running) -> None:
    from backend.openapi import OPERATIONS

    assert set(OPERATIONS) <= {(r.method, r.template) for r in running.server.app.routes}


def test_errors_share_one_schema_and_scoped_routes_document_auth_failures(running) -> None:
    document = _document(running)
    assert document["components"]["schemas"]["Error"]["required"] == ["error"]
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            expected = {"400", "404"} | ({"401", "403", "429"} if operation["x-required-scope"] else set())
            assert expected <= set(responses), (method, path)
            for status in expected:
                schema = responses[status]["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/Error"}


def test_request_bodies_come_from_the_models_the_handlers_validate_with(running) -> None:
    document = _document(running)
    send = document["paths"]["/v1/messages/send"]["post"]
    body = send["requestBody"]["content"]["application/json"]["schema"]
    schema = document["components"]["schemas"][body["$ref"].rsplit("/", 1)[-1]]
    assert {"to", "subject"} <= set(schema["required"])
    assert schema["properties"]["subject"]["maxLength"] == 500
    domain = document["paths"]["/v1/domains"]["post"]["requestBody"]["content"]["application/json"]
    assert domain["schema"] == {"$ref": "#/components/schemas/CreateDomain"}
    threads = document["paths"]["/v1/threads"]["get"]
    limit = next(p for p in threads["parameters"] if p["name"] == "limit")
    assert limit["schema"]["maximum"] == 100


def test_a_route_without_a_description_still_appears_with_generic_shapes() -> None:
    from backend.http.router import Route
    from backend.openapi import build_document

    async def handler(ctx):
        return {}

    document = build_document([Route("POST", "/v1/things/{thing_id}", handler, "threads:write", "")])
    operation = document["paths"]["/v1/things/{thing_id}"]["post"]
    assert operation["x-required-scope"] == "threads:write"
    assert operation["requestBody"]["content"]["application/json"]["schema"] == {"type": "object"}
    assert operation["responses"]["200"]["content"]["application/json"]["schema"] == {"type": "object"}
    validate(document)

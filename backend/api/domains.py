"""Domains: list, create, get, DNS records, verify.

A name may be held by several organisations while unverified; only the one that publishes its own
ownership token (and the other records) verifies it, and from then on no other can create or verify it.
"""

from __future__ import annotations

import asyncio

from ..dns.records import DKIM_SELECTOR, generate_dkim_key, new_ownership_token, required_records
from ..dns.verify import verify_records
from ..http.errors import Conflict, Forbidden, NotFound
from ..http.router import Route
from ..models.addressing import CreateDomain, domain_json
from ..store.domains import DomainTaken
from ._common import Context, data, parse_body, store_work


def visible_domain(ctx: Context, domain_id: str) -> dict:
    domain = ctx.services.domains.get_domain(ctx.org_id, domain_id)
    if domain is None:
        raise NotFound("Domain not found")
    return domain


@store_work
def list_domains(ctx: Context) -> dict:
    store = ctx.services.domains
    domains = store.list_domains(ctx.org_id)
    inboxes = store.inboxes_for_domains(ctx.org_id, [d["id"] for d in domains])
    return data([domain_json(d, inboxes[d["id"]]) for d in domains])


def refuse_if_owned_elsewhere(ctx: Context, name: str, domain_id: str | None = None) -> None:
    """409 when another row already receives mail for `name`: verified by another organisation, or shared."""
    owner = ctx.services.domains.domain_by_name(name)
    if owner is None or owner["id"] == domain_id:
        return
    if owner["shared"]:
        raise Conflict(f"Domain {name} is this server's shared domain")
    raise Conflict(f"Domain {name} is already verified by another organisation")


def _creatable(ctx: Context) -> CreateDomain:
    body = parse_body(ctx.request, CreateDomain)
    if ctx.services.domains.own_domain_by_name(ctx.org_id, body.name) is not None:
        raise Conflict(f"Domain {body.name} already exists")
    refuse_if_owned_elsewhere(ctx, body.name)
    return body


def _create(ctx: Context, body: CreateDomain, records: list, private_pem: str) -> dict:
    try:
        domain = ctx.services.domains.create_domain(ctx.org_id, body.name, body.region, records, private_pem,
                                                    DKIM_SELECTOR)
    except DomainTaken as exc:  # a concurrent create of the same name in this organisation
        raise Conflict(f"Domain {body.name} already exists") from exc
    ctx.services.audit.record(ctx.org_id, ctx.key.id, "domain.created", "domain", domain["id"],
                              {"name": domain["name"]})
    return domain


async def create_domain(ctx: Context) -> tuple[int, dict]:
    body = await ctx.run(_creatable, ctx)
    # RSA key generation takes ~100 ms of CPU: keep it off the event loop.
    private_pem, public_b64 = await asyncio.to_thread(generate_dkim_key)
    records = required_records(body.name, ctx.services.settings.hostname, public_b64,
                               ownership_token=new_ownership_token())
    domain = await ctx.run(_create, ctx, body, records, private_pem)
    return 201, data(domain_json(domain, []))


@store_work
def get_domain(ctx: Context) -> dict:
    domain = visible_domain(ctx, ctx.params["domain_id"])
    inboxes = ctx.services.domains.inboxes_for_domains(ctx.org_id, [domain["id"]])
    return data(domain_json(domain, inboxes[domain["id"]]))


@store_work
def get_records(ctx: Context) -> dict:
    domain = visible_domain(ctx, ctx.params["domain_id"])
    return data(domain["records"])


def _verifiable(ctx: Context) -> dict:
    domain = visible_domain(ctx, ctx.params["domain_id"])
    if domain["shared"]:
        if domain.get("org_id") not in (None, ctx.org_id):
            raise Forbidden("The shared domain is managed by the server")
    else:
        refuse_if_owned_elsewhere(ctx, domain["name"], domain["id"])
    return domain


def _record_verification(ctx: Context, domain: dict, status: str, records: list) -> None:
    try:
        ctx.services.domains.update_domain_status(domain["id"], status, records)
    except DomainTaken as exc:  # another organisation verified the name while we looked it up
        raise Conflict(f"Domain {domain['name']} is already verified by another organisation") from exc
    ctx.services.audit.record(ctx.org_id, ctx.key.id, "domain.verified", "domain", domain["id"],
                              {"status": status})


async def verify_domain(ctx: Context) -> dict:
    domain = await ctx.run(_verifiable, ctx)
    if domain["shared"]:
        return data({"id": domain["id"], "status": domain["status"], "records": domain["records"]},
                    id=domain["id"], status=domain["status"])
    status, records = await verify_records(ctx.services.resolver, domain["records"])
    await ctx.run(_record_verification, ctx, domain, status, records)
    return data({"id": domain["id"], "status": status, "records": records}, id=domain["id"], status=status)


ROUTES = [
    Route("GET", "/v1/domains", list_domains, "domains:read", "List domains"),
    Route("POST", "/v1/domains", create_domain, "domains:write", "Create a domain"),
    Route("GET", "/v1/domains/{domain_id}", get_domain, "domains:read", "Get a domain"),
    Route("GET", "/v1/domains/{domain_id}/records", get_records, "domains:read", "DNS records to publish"),
    Route("POST", "/v1/domains/{domain_id}/verify", verify_domain, "domains:write", "Verify DNS records"),
]

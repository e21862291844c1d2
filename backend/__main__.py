"""`commune-server`: run the server (`serve`), bring the database schema up to date (`migrate`) or
manage API keys (`keys create|list|revoke`)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from typing import TYPE_CHECKING

from pydantic import ValidationError

from .auth import DEFAULT_SCOPES, validate_scopes
from .config import Settings
from .copy import command as copy_command

if TYPE_CHECKING:
    from .services import Services


def _add_server_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", help="database, blobs, server secret, admin.key (COMMUNE_DATA_DIR)")
    _add_database_flag(parser)
    parser.add_argument("--host", help="listen address for HTTP and SMTP (COMMUNE_HOST, 127.0.0.1)")
    parser.add_argument("--port", type=int, help="HTTP API port, 0 = any free one (COMMUNE_PORT, 8025)")
    parser.add_argument("--smtp-port", type=int, help="inbound SMTP port, 0 = any (COMMUNE_SMTP_PORT, 2525)")
    parser.add_argument("--hostname", help="this server's mail host name (COMMUNE_HOSTNAME, localhost)")
    parser.add_argument("--default-domain", help="shared domain for new inboxes (COMMUNE_DEFAULT_DOMAIN)")
    parser.add_argument("--relay", help="outbound smarthost host:port; empty = direct MX (COMMUNE_RELAY)")
    parser.add_argument("--dns-servers", help="resolvers ip[:port],… (COMMUNE_DNS_SERVERS)")
    parser.add_argument("--rate-limit", type=float, help="requests/s per key, 0 = off (COMMUNE_RATE_LIMIT)")


def _add_database_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--database", dest="database_url", metavar="URL",
                        help="postgresql://user:pass@host:port/db instead of the SQLite file in the data dir"
                             " (COMMUNE_DATABASE_URL)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="commune-server", description="Commune email server")
    sub = parser.add_subparsers(dest="command")
    serve = sub.add_parser("serve", help="run the server in the foreground")
    _add_server_flags(serve)
    serve.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING (default INFO)")

    migrate = sub.add_parser("migrate", help="bring the database schema up to date and exit")
    migrate.add_argument("--data-dir")
    _add_database_flag(migrate)

    copy_command.add_parser(sub)

    keys = sub.add_parser("keys", help="manage API keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser("create", help="create a key and print it on the last line")
    create.add_argument("--data-dir")
    _add_database_flag(create)
    create.add_argument("--org", default="default", help="organisation name (created if new)")
    create.add_argument("--scopes", default=",".join(DEFAULT_SCOPES), help="comma-separated scopes")
    create.add_argument("--name", default="", help="a label for the key")
    create.add_argument("--hold-sends", action="store_true",
                        help="every send with this key waits for a person's approval (an agent's key)")
    listing = keys_sub.add_parser("list", help="list keys (never the secret)")
    listing.add_argument("--data-dir")
    _add_database_flag(listing)
    listing.add_argument("--org", help="only this organisation")
    revoke = keys_sub.add_parser("revoke", help="revoke a key by id")
    revoke.add_argument("key_id")
    revoke.add_argument("--data-dir")
    _add_database_flag(revoke)
    revoke.add_argument("--org", default="default")
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    names = ("data_dir", "database_url", "host", "port", "smtp_port", "hostname", "default_domain", "relay",
             "dns_servers", "rate_limit")
    overrides = {name: getattr(args, name, None) for name in names}
    try:
        return Settings.load(overrides)
    except ValidationError as exc:
        raise SystemExit(f"commune-server: invalid configuration: {exc}") from exc


def run_serve(args: argparse.Namespace) -> int:
    from .datalock import DataDirInUse
    from .listeners import PortInUse
    from .server import Server

    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    settings = _settings(args)

    async def main() -> None:
        # Handlers first: a SIGTERM that comes as soon as the listeners are announced still shuts down cleanly.
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        server = Server(settings)
        await server.start()
        await stop.wait()
        logging.getLogger("commune.server").info("shutting down")
        await server.stop()

    try:
        asyncio.run(main())
    except (PortInUse, DataDirInUse) as exc:
        print(f"commune-server: {exc}", file=sys.stderr)
        return 1
    return 0


def run_migrate(args: argparse.Namespace) -> int:
    """`migrate`: run the schema migrations not yet applied (once, whichever node or command gets there
    first: PostgreSQL migrations run under an advisory lock) and report how many ran."""
    settings = _settings(args)
    if settings.database_url:
        import psycopg

        from .store.pg_migrations import migrate

        try:
            with psycopg.connect(settings.database_url, autocommit=True) as conn:
                ran = migrate(conn)
        except psycopg.OperationalError as exc:
            print(f"commune-server: cannot reach the database: {exc}", file=sys.stderr)
            return 1
    else:
        from .services import prepare_data_dir
        from .store.database import Database, connect

        prepare_data_dir(settings.data_dir)
        probe = connect(settings.db_path)
        before = probe.execute("PRAGMA user_version").fetchone()[0]
        probe.close()
        database = Database(settings.db_path)
        ran = database.one("PRAGMA user_version")[0] - before
        database.close()
    print(f"{ran} migration(s) applied; the schema is up to date")
    return 0


def run_keys(args: argparse.Namespace) -> int:
    from .services import Services

    settings = _settings(args)
    if not settings.database_url and not settings.db_path.is_file():
        # Opening the store would create an empty one; keys there would open no existing server.
        print(f"commune-server: no Commune data in {settings.data_dir} (no {settings.db_path.name});"
              " check --data-dir, or run `commune-server serve` once to create it", file=sys.stderr)
        return 1
    services = Services(settings)
    try:
        if args.keys_command == "create":
            try:
                scopes = validate_scopes([s.strip() for s in args.scopes.split(",") if s.strip()])
            except ValueError as exc:
                print(f"commune-server: {exc}", file=sys.stderr)
                return 2
            org = services.orgs.get_or_create_org(args.org)
            key, record = services.keys.create(org["id"], scopes, args.name, args.hold_sends)
            services.audit.record(org["id"], None, "key.created", "api_key", record.id,
                                  {"scopes": scopes, "via": "cli", "hold_sends": args.hold_sends})
            held = " (its sends wait for approval)" if args.hold_sends else ""
            print(f"Created key {record.id} for organisation '{org['name']}' with scopes {','.join(scopes)}{held}")
            print(key)
        elif args.keys_command == "list":
            for org_name, record in services.orgs.all_keys():
                if args.org and org_name != args.org:
                    continue
                state = "revoked" if record.revoked_at else "active"
                print(f"{record.id}\t{org_name}\t{record.prefix}…\t{','.join(record.scopes)}\t{state}\t{record.name}")
        elif args.keys_command == "revoke":
            return revoke_key(services, args.org, args.key_id)
    finally:
        services.close()
    return 0


def revoke_key(services: Services, org_name: str, key_id: str) -> int:
    """`keys revoke`: refuses (exit 1) to revoke an organisation's last active admin key."""
    from .store.orgs import LastAdminKey

    org = services.orgs.org_by_name(org_name)
    if org is None:
        print(f"commune-server: no organisation named '{org_name}'", file=sys.stderr)
        return 1
    try:
        revoked = services.orgs.revoke_key(org["id"], key_id)
    except LastAdminKey as exc:
        print(f"commune-server: refused: {exc}"
              f" (commune-server keys create --org {org_name} --scopes admin)", file=sys.stderr)
        return 1
    if not revoked:
        print(f"commune-server: no active key {key_id} in '{org_name}'", file=sys.stderr)
        return 1
    services.audit.record(org["id"], None, "key.revoked", "api_key", key_id, {"via": "cli"})
    print(f"Revoked {key_id}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0].startswith("-") and argv[0] not in ("-h", "--help"):
        argv = ["serve", *argv]
    args = parser.parse_args(argv)
    if args.command == "keys":
        return run_keys(args)
    if args.command == "migrate":
        return run_migrate(args)
    if args.command == "copy":
        return copy_command.run(args)
    return run_serve(args)


if __name__ == "__main__":
    sys.exit(main())

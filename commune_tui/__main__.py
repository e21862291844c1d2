"""`commune-tui`: the terminal mail client; without --server it runs the bundled server."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .config import Settings


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line: server, key, data dir, theme, polling."""
    parser = argparse.ArgumentParser(prog="commune-tui", description="Commune terminal mail client.")
    parser.add_argument("--server", metavar="URL",
                        help="Commune server to use (env COMMUNE_BASE_URL); default: the bundled server")
    parser.add_argument("--api-key", metavar="KEY", help="API key (env COMMUNE_API_KEY)")
    parser.add_argument("--data-dir", metavar="DIR", type=Path,
                        help="data directory of the bundled server (env COMMUNE_DATA_DIR)")
    parser.add_argument("--theme", choices=["commune-dark", "commune-light"], help="colour theme")
    parser.add_argument("--poll-interval", type=float, metavar="SECONDS",
                        help="how often to check for mail when the server has no event stream")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the client; returns the process exit code."""
    from .app import make_app

    args = parse_args(argv)
    try:
        settings = Settings.from_env(base_url=args.server, api_key=args.api_key, data_dir=args.data_dir,
                                     theme=args.theme, poll_interval=args.poll_interval)
    except ValueError as exc:
        print(f"commune-tui: {exc}", file=sys.stderr)
        return 2
    if settings.base_url and not settings.api_key:
        print("commune-tui: --server needs an API key: pass --api-key KEY or set COMMUNE_API_KEY.",
              file=sys.stderr)
        return 2
    try:
        app = make_app(settings)
    except RuntimeError as exc:
        print(f"commune-tui: could not start the bundled server: {exc.__cause__ or exc}", file=sys.stderr)
        return 1
    app.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())

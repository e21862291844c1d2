"""`commune-tui` entry point."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    print("commune-tui: the terminal client is being built; run `commune-server serve` for now.")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`commune-server copy --from DATA_DIR --to postgresql://…`: move a stopped SQLite install into PostgreSQL.

The source is opened read-only while this command holds its data directory's lock, so no server runs on
it meanwhile. The target gets the PostgreSQL migrations, then every table's rows in batches read in key
order, then every blob file as a row of the `blobs` table. Each batch commits together with its progress
record (`copy_progress`), so a copy stopped at any point (Ctrl-C, SIGKILL, a lost connection) and run
again continues after the last committed batch; the inserts also skip rows already there.

Rows go in as they are, with the target's triggers held off for the batch: the tables the triggers keep
(labels, counters, contacts, participants) are copied, not recomputed. SQLite's full-text tables (FTS5)
stay behind: PostgreSQL's search indexes are built on the messages themselves. The server secret moves
into the database, so signed links stay valid, and API keys move with their table. At the end every
table's row count and the blobs' number and bytes are compared, and a difference exits non-zero.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import Settings
from ..datalock import DataDirInUse, DataDirLock
from .progress import Progress, human_bytes
from .source import RowBatch, SourceInstall, SourceRefused

if TYPE_CHECKING:  # the PostgreSQL driver is an optional extra: imported when a copy runs
    from .target import TablePlan, TargetDatabase

BATCH_ROWS = 2000
BATCH_BYTES = 16 * 1024 * 1024
"""A batch ends at whichever comes first; big message bodies make small batches."""
BLOB_BATCH_FILES = 500


def add_parser(commands: Any) -> None:
    """The `copy` command's arguments, under `commune-server`'s subcommands."""
    parser = commands.add_parser(
        "copy", help="copy a stopped SQLite install into PostgreSQL (resumable, verified by counts)")
    parser.add_argument("--from", dest="source", required=True, metavar="DATA_DIR",
                        help="the data directory of the install to copy (its server must be stopped)")
    parser.add_argument("--to", dest="target", required=True, metavar="URL",
                        help="postgresql://user:pass@host:port/db: an empty database, or an earlier"
                             " copy of the same install to finish")


def run(args: argparse.Namespace) -> int:
    """`commune-server copy`: 0 when every count matches, 1 on a refusal, error or mismatch, 130 when
    interrupted (run the same command again to continue)."""
    try:
        target_url = Settings(database_url=args.target).database_url
    except ValueError:
        return _fail(f"--to takes a postgresql:// URL, not {args.target!r}")
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        return copy_install(Path(args.source).expanduser(), target_url, sys.stderr)
    except KeyboardInterrupt:
        print("\ncommune-server: copy interrupted; run the same command again to continue",
              file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _fail(message: str) -> int:
    print(f"commune-server: {message}", file=sys.stderr)
    return 1


def copy_install(data_dir: Path, url: str, stream: Any) -> int:
    """Copy the install in `data_dir` into the database at `url`; the exit status (see `run`)."""
    import psycopg

    from .target import BLOB_ITEM, CopyRefused, TargetDatabase, plan_tables

    with ExitStack() as cleanup:
        try:
            source = SourceInstall(data_dir)
            lock = DataDirLock(data_dir)
            lock.acquire()
            cleanup.callback(lock.release)
            source.open()
            cleanup.callback(source.close)
            target = TargetDatabase(url)
            cleanup.callback(target.close)
            plans = plan_tables(source.tables(), target)
            done = target.claim(source.identity(), source.fingerprint(), [p.name for p in plans])
            progress = Progress(stream)
            for plan in plans:
                _copy_table(source, target, plan, done[plan.name], progress)
            blobs = source.blob_summary()
            _copy_blobs(source, target, done[BLOB_ITEM], blobs, progress)
            added = target.move_server_state(source.secret_hex(), source.admin_key_exists(),
                                             source.state_names())
            target.finish()
        except (SourceRefused, CopyRefused, DataDirInUse) as exc:
            return _fail(str(exc))
        except PermissionError as exc:
            return _fail(f"cannot open {exc.filename} ({exc.strerror}); run the copy as the user the"
                         " server runs as")
        except psycopg.OperationalError as exc:
            return _fail(f"the target database is out of reach (run the copy again to continue): {exc}")
        except psycopg.Error as exc:
            return _fail(f"the copy stopped on a database error: {exc}")
        return _verify(source, target, plans, added, blobs)


def _copy_table(source: SourceInstall, target: TargetDatabase, plan: TablePlan, state: dict,
                progress: Progress) -> None:
    if state["done"]:
        return
    after = json.loads(state["last_key"]) if state["last_key"] else None
    total = source.count(plan.name)
    progress.start(plan.name, total, state["copied"])
    if state["copied"] == 0 and state["deferred"] is None and total > BATCH_ROWS:
        state["deferred"] = target.defer_indexes(plan)
    for batch in source.batches(plan.name, plan.select, plan.key, after, BATCH_ROWS, BATCH_BYTES):
        target.write_rows(plan, batch.rows, json.dumps(batch.last_key))
        progress.advance(len(batch.rows))
    if state["deferred"] and json.loads(state["deferred"]):
        progress.note("building indexes")
    target.finish_table(plan)
    progress.finish()


def _copy_blobs(source: SourceInstall, target: TargetDatabase, state: dict, total: tuple[int, int],
                progress: Progress) -> None:
    if state["done"]:
        return
    after = tuple(json.loads(state["last_key"])) if state["last_key"] else None
    progress.start("blobs", total[0], state["copied"], state["nbytes"])
    for batch in _blob_batches(source, after):
        size = sum(len(row[2]) for row in batch.rows)
        target.write_blobs(batch.rows, json.dumps(batch.last_key), size)
        progress.advance(len(batch.rows), size)
    target.finish_blobs()
    progress.finish()


def _blob_batches(source: SourceInstall, after: tuple[str, str] | None) -> Iterator[RowBatch]:
    rows: list[tuple] = []
    size = 0
    for org_id, digest, path in source.blob_files(after):
        content = path.read_bytes()
        rows.append((org_id, digest, content))
        size += len(content)
        if len(rows) >= BLOB_BATCH_FILES or size >= BATCH_BYTES:
            yield RowBatch(rows, [org_id, digest])
            rows, size = [], 0
    if rows:
        yield RowBatch(rows, list(rows[-1][:2]))


def _verify(source: SourceInstall, target: TargetDatabase, plans: list[TablePlan],
            added: dict[str, int], blobs: tuple[int, int]) -> int:
    """Print every table's count on both sides; 1 when any differs."""
    lines = [("table", "SQLite", "PostgreSQL", "")]
    mismatches = 0
    for plan in plans:
        expected = source.count(plan.name) + added.get(plan.name, 0)
        found = target.count(plan.name)
        mismatches += expected != found
        lines.append((plan.name, f"{expected:,}", f"{found:,}", "" if expected == found else "MISMATCH"))
    target_blobs = target.blob_summary()
    for label, expected, found in (("blob files", blobs[0], target_blobs[0]),
                                   ("blob bytes", blobs[1], target_blobs[1])):
        mismatches += expected != found
        lines.append((label, f"{expected:,}", f"{found:,}", "" if expected == found else "MISMATCH"))
    width = max(len(line[0]) for line in lines)
    for name, left, right, flag in lines:
        print(f"{name:<{width}}  {left:>12}  {right:>12}  {flag}".rstrip())
    if mismatches:
        print(f"commune-server: {mismatches} count(s) differ between the install and the copy",
              file=sys.stderr)
        return 1
    print(f"Copied and verified {len(plans)} tables and {blobs[0]:,} blobs ({human_bytes(blobs[1])}).")
    print("Start the server with --database (or COMMUNE_DATABASE_URL) set to the target; the API keys"
          " and the admin key of the install keep working.")
    return 0

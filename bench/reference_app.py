"""The reference for the HTTP benchmark: the thread-list query and its JSON, served by uvicorn + Starlette.

No authentication, no rate limit, no cursor checks: a framework doing less than our stack. Run by
`http_bench.py` in its own process (`python3 bench/reference_app.py DATA_DIR PORT`); uvicorn and
Starlette are installed only for the benchmark, never as a runtime dependency.
"""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from backend.models.mail import thread_json
from backend.store.database import connect


def make_app(db_path: Path, org_id: str) -> Starlette:
    """A Starlette app answering `GET /v1/threads?inbox_id=…&limit=…` with the same SQL and JSON as ours."""
    conn: sqlite3.Connection = connect(db_path)

    async def list_threads(request: Request) -> JSONResponse:
        inbox_id = request.query_params["inbox_id"]
        limit = int(request.query_params.get("limit", "20"))
        # Our default list: threads neither quarantined nor in the trash (`hidden = 0`, in the index).
        rows = conn.execute(
            "SELECT * FROM threads WHERE inbox_id = ? AND hidden = 0 AND +org_id = ?"
            " ORDER BY last_message_at DESC, id DESC LIMIT ?",
            (inbox_id, org_id, limit + 1),
        ).fetchall()
        page = rows[:limit]
        return JSONResponse({"data": [thread_json(r) for r in page], "next_cursor": None,
                             "has_more": len(rows) > limit})

    return Starlette(routes=[Route("/v1/threads", list_threads)])


def main() -> None:
    data_dir, port, org_id = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    app = make_app(data_dir / "commune.db", org_id)
    uvicorn.run(app, host="127.0.0.1", port=port, http="httptools", loop="asyncio",
                log_level="warning", access_log=False)


if __name__ == "__main__":
    main()

"""Which program opens a file or a link: `$COMMUNE_OPENER`, then mailcap, then `xdg-open`.

No textual import: the screens run what `open_command` returns and say so when it returns None.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import shutil
from collections.abc import Mapping
from pathlib import Path

DEFAULT_MAILCAPS = ("~/.mailcap", "/etc/mailcap", "/usr/etc/mailcap", "/usr/local/etc/mailcap")
LAUNCH_GRACE = 1.0
"""An opener that fails (no handler, bad file) does so at once; one still running after this
works."""


def _fill(template: str, path: str) -> list[str]:
    """A command template with `%s` for the file (appended when the template has none)."""
    parts = shlex.split(template)
    if any("%s" in part for part in parts):
        return [part.replace("%s", path) for part in parts]
    return [*parts, path]


def mailcap_files(env: Mapping[str, str]) -> list[Path]:
    listed = env.get("MAILCAPS")
    names = listed.split(":") if listed else DEFAULT_MAILCAPS
    return [Path(name).expanduser() for name in names if name]


def mailcap_command(mime_type: str, path: str, env: Mapping[str, str]) -> list[str] | None:
    """The view command of the first mailcap entry for `mime_type` (or `type/*`) without a test."""
    wanted = {mime_type.lower(), mime_type.split("/", 1)[0].lower() + "/*"}
    for file in mailcap_files(env):
        try:
            text = file.read_text(errors="replace")
        except OSError:
            continue
        for raw in text.replace("\\\n", "").splitlines():
            fields = [f.strip() for f in raw.split(";")]
            if raw.lstrip().startswith("#") or len(fields) < 2 or fields[0].lower() not in wanted:
                continue
            flags = {f.split("=", 1)[0].strip().lower() for f in fields[2:]}
            if "test" in flags or "needsterminal" in flags or "copiousoutput" in flags:
                continue  # only programs that open their own window can run beside the client
            if fields[1]:
                return _fill(fields[1], path)
    return None


def open_command(path: str, mime_type: str = "application/octet-stream",
                 env: Mapping[str, str] | None = None) -> list[str] | None:
    """The command that opens `path`, or None when nothing on this machine can."""
    env = os.environ if env is None else env
    if env.get("COMMUNE_OPENER"):
        return _fill(env["COMMUNE_OPENER"], path)
    command = mailcap_command(mime_type, path, env)
    if command is not None:
        return command
    xdg_open = shutil.which("xdg-open", path=env.get("PATH"))
    return [xdg_open, path] if xdg_open else None


def browser_command(url: str, env: Mapping[str, str] | None = None) -> list[str] | None:
    """`$BROWSER` (the first of a `:` list) on `url`, else the file opener chain."""
    env = os.environ if env is None else env
    browser = (env.get("BROWSER") or "").split(":")[0].strip()
    if browser:
        return _fill(browser, url)
    return open_command(url, "text/html", env)


async def launch(command: list[str]) -> str | None:
    """Start `command` detached from the terminal; the reason it failed, or None once it runs."""
    try:
        process = await asyncio.create_subprocess_exec(
            *command, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE, start_new_session=True)
    except OSError as exc:
        return f"{command[0]}: {exc.strerror or exc}"
    try:
        await asyncio.wait_for(process.wait(), LAUNCH_GRACE)
    except TimeoutError:
        return None  # still running: it opened
    if process.returncode == 0:
        return None
    assert process.stderr is not None
    detail = (await process.stderr.read()).decode(errors="replace").strip().splitlines()
    return f"{Path(command[0]).name} exited with status {process.returncode}" + (
        f": {detail[-1]}" if detail else "")


async def pipe_to(command: str, text: str, timeout: float = 30.0) -> tuple[int, str]:
    """Run `command` in the shell with `text` on its stdin; its exit status and combined output."""
    process = await asyncio.create_subprocess_shell(
        command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT, start_new_session=True)
    try:
        output, _ = await asyncio.wait_for(process.communicate(text.encode()), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        return -1, f"{command}: still running after {timeout:.0f} s, stopped"
    return process.returncode or 0, output.decode(errors="replace")

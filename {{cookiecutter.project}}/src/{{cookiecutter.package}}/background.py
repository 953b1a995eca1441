"""Processes that outlive the command that starts them (`inv tracking-server`, `inv up`).

Each runs in a session of its own (stopped with its children), writes its output to a log
file, and is waited for until it answers over HTTP; a start that fails is stopped and said
in one line, the log's last. A pid kept in a record is checked against the process's start
time before it is signalled, so a pid the system gave to another process since is left
alone.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from contextlib import suppress
from pathlib import Path

from {{ cookiecutter.package }}.errors import UserError


def in_use(host: str, port: int) -> bool:
    """Whether a server listens on host:port (bound as the server binds: a port a closed
    connection still holds, TIME_WAIT, is free)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False


def spawn(
    command: list[str], log: Path, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    """Start `command` in a session of its own, its output (both streams) to `log`."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        return subprocess.Popen(
            command,
            env=env,
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # it outlives the command; stop() ends it with its children
        )


def wait_until_answers(
    process: subprocess.Popen[bytes], url: str, log: Path, timeout_s: float, what: str
) -> None:
    """Return once `url` answers and `process` is still running; else stop it and raise a
    UserError with the last line of its log."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            urllib.request.urlopen(url, timeout=2)
            answered = True
        except OSError:
            answered = False
        ended = process.poll() is not None  # answered all the same: another server's port
        if answered and not ended:
            return
        if ended or time.monotonic() > deadline:
            stop(process.pid)
            last = log.read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
            why = "it ended" if ended else f"no answer in {timeout_s:.0f} s"
            raise UserError(f"{what} did not start, {why} (log {log}): {last[0]}")
        time.sleep(0.2)


def running(pid: int) -> bool:
    try:
        os.killpg(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def started_at(pid: int) -> int | None:
    """When the process `pid` started (clock ticks since boot, /proc/PID/stat's 22nd field);
    None when there is no such process, or only its exit status is left (a zombie)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # the fields after the command's name
    return None if fields[0] == "Z" else int(fields[19])


def stop(pid: int, grace_s: float = 30) -> bool:
    """End the session started as `pid` (SIGTERM, then SIGKILL after `grace_s`); False when
    it was not running."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        with suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # reap it when it is our child
        if not running(pid):
            return True
        time.sleep(0.1)
    with suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    return True

"""The warm worker's own program (`engines.workers` starts it; its docstring says what a
worker is for).

A version's interpreter runs this file as text (`python -c`), whatever version's code it
hosts: it uses the standard library only and imports nothing of this package, whose code in
that environment may be older than this checkout's. It listens on a Unix socket and forks
a child for each run it is asked for; a child runs the run's script with the run's argv,
environment, working directory and output pipes.

Usage (by `engines.workers`): python -c SOURCE SOCKET IDLE_S IDENTITY [MODULE...], the
modules imported first (those a version lacks are skipped).
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib
import json
import os
import select
import signal
import socket
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from typing import Any


def exit_after(main: Callable[[], object]) -> None:
    """End a forked child as `python -c` would end: main's exit code, a traceback on error.
    Runs get it in their globals: their tasks fork too (`engines.local.FORK_TASKS`)."""
    code = 1
    try:
        main()
        code = 0
    except SystemExit as stop:
        if stop.code is None or isinstance(stop.code, int):
            code = stop.code or 0
        else:
            print(stop.code, file=sys.stderr)
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def send(conn: socket.socket, message: dict[str, Any]) -> None:
    with contextlib.suppress(OSError):
        conn.send(json.dumps(message).encode())


class Worker:
    def __init__(self, path: str, idle_s: float, identity: str) -> None:
        self.path, self.idle_s, self.identity = path, idle_s, identity
        self.started, self.last_active = time.time(), time.monotonic()
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.bound = 0  # the socket file's inode: a newer worker's is left alone
        self.runs: dict[int, socket.socket | None] = {}  # pid: its waiting client (None: gone)
        self.closing = False

    def listen(self) -> bool:
        """Listen on the socket; False when another worker listens there already. One
        worker per environment, whatever raced to start it: under the environment's start
        lock, a worker that finds another one listening leaves the socket to it."""
        with open(self.path[: -len("sock")] + "lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            try:
                probe.connect(self.path)
                return False
            except OSError:  # no socket, or nobody behind it
                pass
            finally:
                probe.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
            self.server.bind(self.path)
            self.server.listen(64)
        self.bound = os.stat(self.path).st_ino
        with contextlib.suppress(FileNotFoundError):  # listening: no longer starting
            os.unlink(self.path + ".starting")
        return True

    def retire(self) -> None:
        """No new runs; the socket goes unless a newer worker has taken its place."""
        self.closing = True
        try:
            if os.stat(self.path).st_ino == self.bound:
                os.unlink(self.path)
        except OSError:
            pass

    def run_child(self, request: dict[str, Any], fds: list[int]) -> None:
        os.setpgid(0, 0)

        def main() -> None:
            self.server.close()
            for conn in self.runs.values():
                if conn is not None:
                    conn.close()
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            null = os.open(os.devnull, os.O_RDONLY)
            os.dup2(null, 0)
            os.dup2(fds[0], 1)
            os.dup2(fds[-1], 2)  # stderr: its own pipe when one was sent, else stdout's
            sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
            os.chdir(request["cwd"])
            os.environ.clear()
            os.environ.update(request["env"])
            tempfile.tempdir = None
            sys.argv = ["-c", *request["argv"]]
            run_globals = {"__name__": "__main__", "exit_after": exit_after}
            exec(compile(request["script"], "<run>", "exec"), run_globals)

        exit_after(main)

    def handle(self, conn: socket.socket) -> None:
        conn.settimeout(10)
        try:
            data, fds, _, _ = socket.recv_fds(conn, 1 << 22, 2)
            request = json.loads(data or b"{}")
        except (OSError, ValueError):
            conn.close()
            return
        op = request.get("op")
        kept: socket.socket | None = conn
        if op == "status":
            idle = round(time.monotonic() - self.last_active, 1)
            send(conn, {"pid": os.getpid(), "python": sys.executable, "started": self.started,
                        "runs": len(self.runs), "idle_s": idle})  # fmt: skip
        elif op == "stop":
            self.retire()
            for pid in self.runs:
                with contextlib.suppress(OSError):
                    os.killpg(pid, signal.SIGKILL)
            send(conn, {"stopped": os.getpid()})
        elif op == "run" and request.get("identity") != self.identity:
            self.retire()  # the environment was rebuilt: a new worker must load it
            send(conn, {"stale": True})
        elif op == "run" and fds and not self.closing:
            self.last_active = time.monotonic()  # a run, not a look at the status, keeps it warm
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                self.run_child(request, fds)
            send(conn, {"pid": pid})
            conn.settimeout(None)
            self.runs[pid] = conn
            kept = None
        else:
            send(conn, {"refused": op})
        for fd in fds:
            os.close(fd)
        if kept is not None:
            kept.close()

    def reap(self) -> None:
        """Tell each finished run's client its exit code."""
        while self.runs:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            conn = self.runs.pop(pid, None)
            if conn is not None:
                send(conn, {"exit": os.waitstatus_to_exitcode(status)})
                conn.close()
            self.last_active = time.monotonic()

    def serve(self) -> None:
        """Take runs until idle for `idle_s` (or stopped) with none in progress."""
        while True:
            self.reap()
            idle = time.monotonic() - self.last_active > self.idle_s
            if not self.runs and (self.closing or idle):
                break
            watched = [] if self.closing else [self.server]
            watched += [c for c in self.runs.values() if c is not None]
            readable = select.select(watched, [], [], 0.1)[0] if watched else []
            if not watched:
                time.sleep(0.1)
            for ready in readable:
                if ready is self.server:
                    self.handle(self.server.accept()[0])
                    continue
                for pid, client in list(self.runs.items()):  # its client went: the run goes too
                    if client is ready:
                        with contextlib.suppress(OSError):
                            os.killpg(pid, signal.SIGKILL)
                        ready.close()
                        self.runs[pid] = None
        if not self.closing:
            self.retire()


def main(argv: list[str]) -> None:
    path, idle_s, identity, preload = argv[0], float(argv[1]), argv[2], argv[3:]
    for name in preload:
        with contextlib.suppress(Exception):
            importlib.import_module(name)
    worker = Worker(path, idle_s, identity)
    if worker.listen():
        worker.serve()


if __name__ == "__main__":
    main(sys.argv[1:])

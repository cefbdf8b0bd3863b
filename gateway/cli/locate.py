"""How every command finds the dev stack and its data: one rule, the same for all of them.

The data dir (where ``tidings dev`` keeps its Redis, ``redis.sock``, and its audit log,
``audit.sqlite3``) is, the first that applies:

1. ``--data-dir DIR`` on the command line;
2. else ``TIDINGS_DATA_DIR``;
3. else the data dir of the running ``tidings dev``, read from the state file it writes once it is
   up and removes when it stops: ``$XDG_STATE_HOME/tidings/dev.json``, else
   ``~/.local/state/tidings/dev.json`` (a file whose pid has exited is ignored);
4. else ``./var`` in the current folder.

The same order as ``docker`` (``-H``, ``DOCKER_HOST``, the current context, the default socket) and
``psql`` (``-h``, ``PGHOST``, the default socket): a flag beats the environment, which beats what is
recorded, which beats the built-in default. ``TIDINGS_REDIS_URL`` and ``TIDINGS_AUDIT_URL``, when set,
still name their own service: the data dir is not consulted for it. ``tidings dev`` places its own
data by rules 1, 2 and 4 (it never takes another dev's).

Nothing here creates a file or a folder. A command that only reads fails (exit 2, one line) with the
path it looked at and how that path was chosen, rather than opening a new, empty store.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import msgspec

from gateway.errors import AuditStoreError, CliError
from gateway.settings import Settings

DEFAULT_DATA_DIR = "./var"
REDIS_SOCKET = "redis.sock"
AUDIT_FILE = "audit.sqlite3"


class DevState(msgspec.Struct, frozen=True, kw_only=True):
    """What a running ``tidings dev`` records about itself (paths absolute)."""

    pid: int
    data_dir: str
    redis_url: str
    audit_url: str
    api_url: str


@dataclass(frozen=True)
class DataDir:
    """A data dir, how it was chosen (said in messages), and the running dev stack it belongs to."""

    path: Path
    how: str
    dev: DevState | None = None


def state_path(environ: Mapping[str, str] | None = None) -> Path:
    """``$XDG_STATE_HOME/tidings/dev.json``, else ``~/.local/state/tidings/dev.json``."""
    env = os.environ if environ is None else environ
    base = env.get("XDG_STATE_HOME", "")
    # The XDG base directory spec: a relative path is invalid and is ignored.
    root = Path(base) if os.path.isabs(base) else Path.home() / ".local" / "state"
    return root / "tidings" / "dev.json"


def read_state(path: Path) -> tuple[DevState | None, str]:
    """The running dev stack recorded at ``path``; else None and why not (for messages)."""
    try:
        state = msgspec.json.decode(path.read_bytes(), type=DevState)
    except FileNotFoundError:
        return None, f"no {path}"
    except (OSError, msgspec.DecodeError):  # a ValidationError is a DecodeError
        return None, f"{path} is unreadable"
    if not _alive(state.pid):
        return None, f"{path} names pid {state.pid}, which has exited"
    return state, ""


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: the pid was reused, our dev is gone
        return False
    return True


def write_state(state: DevState, path: Path) -> None:
    """Record a running dev stack, atomically, readable by its user only (an audit URL may hold a password)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{state.pid}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(msgspec.json.encode(state) + b"\n")
    os.replace(tmp, path)


def remove_state(path: Path, pid: int) -> None:
    """Remove the record if it is still ``pid``'s (a `tidings dev` started since may have replaced it)."""
    with contextlib.suppress(OSError, msgspec.DecodeError):
        if msgspec.json.decode(path.read_bytes(), type=DevState).pid == pid:
            path.unlink()


def _given(flag: str | None, settings: Settings) -> DataDir | None:
    """Rules 1 and 2."""
    if flag is not None:
        return DataDir(Path(flag).expanduser().resolve(), "from --data-dir")
    if settings.data_dir:
        return DataDir(Path(settings.data_dir).expanduser().resolve(), "from TIDINGS_DATA_DIR")
    return None


def dev_data_dir(flag: str | None, settings: Settings) -> DataDir:
    """Where ``tidings dev`` puts its data: rules 1, 2 and 4."""
    return _given(flag, settings) or DataDir(Path(DEFAULT_DATA_DIR).resolve(), "./var by default")


def find_data_dir(flag: str | None, settings: Settings, environ: Mapping[str, str] | None = None) -> DataDir:
    """Rules 1 to 4 (the module's docstring), for the commands that talk to a dev stack's data."""
    record = state_path(environ)
    dev, why_not = read_state(record)
    given = _given(flag, settings)
    if given is not None:
        # The data dir of the running dev, named explicitly: its recorded Redis URL still applies
        # (a TCP port when the socket path was too long, or the dev's own TIDINGS_REDIS_URL).
        mine = dev is not None and Path(dev.data_dir) == given.path
        return DataDir(given.path, given.how, dev if mine else None)
    if dev is not None:
        return DataDir(Path(dev.data_dir), f"from {record}, the `tidings dev` running as pid {dev.pid}", dev)
    how = f"./var by default: no --data-dir, no TIDINGS_DATA_DIR, {why_not}"
    return DataDir(Path(DEFAULT_DATA_DIR).resolve(), how)


def sqlite_url(data_dir: Path) -> str:
    """The URL of the audit log in a data dir."""
    return f"sqlite:///{data_dir / AUDIT_FILE}"


def redis_url_for(settings: Settings, flag: str | None) -> str:
    """TIDINGS_REDIS_URL, else the data dir's Redis: the running dev's recorded URL, else its socket."""
    if settings.redis_url:
        return settings.redis_url
    where = find_data_dir(flag, settings)
    if where.dev is not None:
        return where.dev.redis_url
    sock = where.path / REDIS_SOCKET
    if sock.exists():
        return f"unix://{sock}"
    raise CliError(
        f"no Redis at {sock} (data dir {where.how}); start `tidings dev`, pass --data-dir"
        " or set TIDINGS_REDIS_URL"
    )


def audit_url_for(
    settings: Settings, flag: str | None, *, existing: bool, environ: Mapping[str, str] | None = None
) -> str:
    """TIDINGS_AUDIT_URL when set, else the data dir's audit log (the running dev's recorded URL, else
    ``audit.sqlite3`` in it).

    ``existing``: the command only reads (or prunes), so a SQLite file that is not there is a CliError
    naming the path and how it was chosen; nothing is created."""
    env = os.environ if environ is None else environ
    if "TIDINGS_AUDIT_URL" in env:
        url, how, hint = settings.audit_url, "from TIDINGS_AUDIT_URL", "check TIDINGS_AUDIT_URL"
    else:
        where = find_data_dir(flag, settings, env)
        url = where.dev.audit_url if where.dev is not None else sqlite_url(where.path)
        how, hint = f"data dir {where.how}", "start `tidings dev` or pass --data-dir"
    if existing:
        from gateway.audit.backends import sqlite_path

        try:
            path = sqlite_path(url)
        except AuditStoreError as exc:
            raise CliError(str(exc)) from None
        if path is not None and not path.is_file():
            raise CliError(f"no audit log at {path.resolve()} ({how}); {hint}")
    return url

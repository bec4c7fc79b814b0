"""One host of a run: `HostContext.run` is the one place every remote (or local) command goes
through — dry run, redaction of secrets, the SSH connection reused for the whole run, and a
`HostFailure` with a hint when the connection itself fails."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from invoke import Context

from .. import commands, lazy
from ..config import Settings
from ..model import Host, redacted
from .output import PrefixedWriter, say
from .pool import connection, drop, no_shell, shell_for

if TYPE_CHECKING:
    from fabric import Connection

paramiko = lazy.module("paramiko")
ssh = lazy.module("pydeliver_tasks.fleet.ssh")

# paramiko logs a dropped connection ("Socket exception: ...") through logging's last-resort
# handler straight to stderr; we say it once, in the host's result line, instead.
logging.getLogger("paramiko").addHandler(logging.NullHandler())
logging.getLogger("paramiko").propagate = False

# (address, port, user, root) -> sha256 of the env file this process wrote there
_env_written: dict[tuple[str, int | None, str | None, str], str] = {}
_print_lock = threading.Lock()


class HostFailure(Exception):
    """A step failed on a host: what was checked, what was seen, what to try next."""

    def __init__(self, message: str, detail: str = "", hint: str = "",
                 data: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail
        self.hint = hint
        self.data = data or {}


@dataclass
class CommandResult:
    """What a remote (or local) command returned."""

    stdout: str
    stderr: str
    exited: int

    @property
    def ok(self) -> bool:
        return self.exited == 0

    def tail(self, lines: int = 15) -> str:
        text = (self.stdout + ("\n" + self.stderr if self.stderr else "")).strip()
        return "\n".join(text.splitlines()[-lines:])


class HostContext:
    """Everything a step needs for one host: run/put/get over the run's connection, dry-run aware.

    `local=True` runs on this machine instead (the `build.host: local` case) with the same API.
    """

    def __init__(self, host: Host, settings: Settings, dry_run: bool, local: bool = False) -> None:
        self.host = host
        self.settings = settings
        self.dry_run = dry_run
        self.local = local
        self.prefix = f"[{host.name}] "

    @property
    def conn(self) -> Connection:
        return connection(self.host, self.settings.ssh)

    def reconnect(self) -> None:
        """After a lost connection: the next command logs in again."""
        if not self.local:
            drop(self.host, self.settings.ssh)

    def redact(self, text: str) -> str:
        return redacted(text, self.host.secrets)

    def say(self, message: str) -> None:
        for line in message.splitlines() or [""]:
            say(f"{self.prefix}{self.redact(line)}")

    def run(
        self, command: str, *, changes: bool = True, stream: bool = False,
        timeout: float | None = None, env: dict[str, str] | None = None,
        whole_lines: bool = True,
    ) -> CommandResult:
        """Run a command built in `commands`/`builders`; in dry-run only print it.

        Read-only commands (changes=False) are printed too: a dry run opens no connection.
        """
        if self.dry_run:
            self.say(("would run: " if changes else "would check: ") + command)
            return CommandResult("", "", 0)
        kwargs: dict[str, Any] = {"warn": True, "hide": True, "in_stream": False}
        # stdout and stderr arrive on two threads: each stream keeps its own partial line, so a
        # line is printed whole, never cut by a chunk of the other stream
        # (whole_lines=False: a partial line shows at once, e.g. a prompt in a followed log)
        wait = PrefixedWriter.PARTIAL_WAIT if whole_lines else 0.0
        writers = [PrefixedWriter(self.prefix, self.redact, partial_wait=wait)
                   for _ in range(2)] if stream else []
        if writers:
            kwargs.update(hide=False, out_stream=writers[0], err_stream=writers[1])
        if timeout:
            kwargs["timeout"] = timeout
        if env:
            kwargs["env"] = env
        runner = Context() if self.local else self.conn
        try:
            if commands.ENV_FILE in command:
                self._write_env(runner)
            if not (self.local or writers or env):
                shelled = self._in_shell(command, timeout)
                if shelled is not None:
                    return shelled
            res = runner.run(command, **kwargs)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            where = "locally" if self.local else f"over SSH to {self.host.address}"
            raise HostFailure(f"cannot run commands {where}: {exc or type(exc).__name__}",
                              hint=_ssh_hint(exc)) from exc
        except Exception as exc:  # e.g. invoke's CommandTimedOut: its text carries the reason
            raise HostFailure(f"command failed to complete: {exc}") from exc
        finally:
            for w in writers:
                w.finish()
        return CommandResult(res.stdout, res.stderr, res.exited)

    def _in_shell(self, command: str, timeout: float | None) -> CommandResult | None:
        """Run `command` in the run's shell on the host; None when that shell cannot take it
        (the host cannot run one, or another thread of this run is using it)."""
        shell = shell_for(self.host, self.settings.ssh)
        if shell is None or not shell.lock.acquire(blocking=False):
            return None
        try:  # a ShellTimeout says "did not complete within", as Invoke's own timeout does
            got = shell.run(command, timeout)
        finally:
            shell.lock.release()
        if got is None:
            no_shell(self.host, self.settings.ssh)
            return None
        out, err, exited = got
        return CommandResult(out.decode(errors="replace"), err.decode(errors="replace"), exited)

    def write_env(self) -> None:
        """Write the env files now (before a command run outside this context, e.g. a console)."""
        if self.host.env and not self.dry_run:
            try:
                self._write_env(Context() if self.local else self.conn)
            except (paramiko.SSHException, OSError) as exc:
                raise HostFailure(f"cannot write the env file over SSH to {self.host.address}: "
                                  f"{exc}", hint=_ssh_hint(exc)) from exc

    def _write_env(self, runner: Context | Connection) -> None:
        """Put the host's env on the host as files (0600) before a command sources them; once
        per process unless it changed. A secret never stands on a command line this way."""
        env = self.host.env
        root = self.host.deploy_path.rstrip("/")
        files = {commands.ENV_FILE: commands.env_file_text(env),
                 commands.ENV_TERMS: commands.env_terms_text(env)}
        digest = hashlib.sha256(repr(sorted(files.items())).encode()).hexdigest()
        key = (self.host.address, self.host.port, self.host.user, root)
        if _env_written.get(key) == digest:
            return
        mkdir = commands.mkdir(f"{root}/.deliver")
        res = (None if self.local else self._in_shell(mkdir, None)) or \
            runner.run(mkdir, warn=True, hide=True, in_stream=False)
        if res.exited != 0:
            raise HostFailure(f"cannot create {root}/.deliver for the env file",
                              (res.stdout + res.stderr)[-800:],
                              "check deliver deploy_path and the SSH user's permissions")
        for name, text in files.items():
            path = f"{root}/{name}"
            if self.local:
                _write_private(Path(path).expanduser(), text)
            else:
                sftp = self.conn.sftp()
                with sftp.open(path + ".tmp", "w") as fh:
                    sftp.chmod(path + ".tmp", 0o600)  # before a byte of it is written
                    fh.write(text.encode())
                sftp.posix_rename(path + ".tmp", path)
        _env_written[key] = digest

    def put(self, local: Path, remote: str) -> None:
        if self.dry_run:
            self.say(f"would upload: {local} -> {remote}")
            return
        if self.local:
            shutil.copyfile(local, Path(remote).expanduser())
            return
        self.conn.put(str(local), remote)

    def get(self, remote: str, local: Path) -> None:
        if self.dry_run:
            self.say(f"would download: {remote} -> {local}")
            return
        if self.local:
            shutil.copyfile(Path(remote).expanduser(), local)
            return
        self.conn.get(remote, str(local))


def _write_private(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def _ssh_hint(exc: BaseException) -> str:
    if isinstance(exc, ssh.UnknownHostKey):
        return ""  # its message already says what to do
    if isinstance(exc, paramiko.BadHostKeyException):
        return ("the host's key changed: if that is expected (reinstall), remove the old line "
                "from known_hosts (ssh-keygen -R); otherwise treat it as an attack")
    if isinstance(exc, paramiko.AuthenticationException):
        return "check the SSH user and deliver.ssh.identity_file (or your agent / ssh_config)"
    return "check that the host is up, its sshd listens on that port, and the address is right"



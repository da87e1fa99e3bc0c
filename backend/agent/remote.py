"""The agent on another machine, through the system's OpenSSH client (`--remote [user@]host`).

The command is `$XDPSCOPE_SSH [user@]host -- sudo -n xdpscope agent --stdio` (XDPSCOPE_SSH is
split like a shell line, as git does with GIT_SSH_COMMAND; default `ssh`), so the user's ssh
config, keys, agent, jump hosts and known_hosts all apply. The protocol over it is the same
JSON lines as locally. When the remote cannot run the agent, ssh's and sudo's stderr and exit
status are turned into one line saying what to install or grant there.
"""
from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass

from backend.errors import XdpscopeError

SSH_ENV = "XDPSCOPE_SSH"
# after the user's own options: ssh takes the first value of an option, so theirs win
SSH_OPTIONS = ("-T",                       # no pty: the JSON lines pass untouched
               "-e", "none",               # no escape character in the byte stream
               "-o", "ConnectTimeout=15",
               "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3")  # a dead link: lost in ~15 s
SSH_FAILED = 255                            # ssh's own exit status (the remote command's otherwise)
_NOISE = re.compile(r"^(Warning: Permanently added|Could not chdir to home directory|"
                    r"Pseudo-terminal will not be allocated)")
_HOST = re.compile(r"[^\s\x00-\x1f\x7f]+")


@dataclass(frozen=True)
class Target:
    host: str                   # [user@]host as ssh takes it: an alias from ~/.ssh/config works
    xdpscope: str = "xdpscope"  # the remote launcher: a name on sudo's secure_path, or a path

    @classmethod
    def parse(cls, host: str, xdpscope: str | None = None) -> "Target":
        host = (host or "").strip()
        if not _HOST.fullmatch(host) or host.startswith("-"):
            raise XdpscopeError(f"--remote {host!r}: expected [user@]host")
        if xdpscope is not None and (not xdpscope.strip() or any(c in xdpscope for c in "\n\r\x00")):
            raise XdpscopeError(f"--remote-xdpscope {xdpscope!r}: expected the path of xdpscope on {host}")
        return cls(host, xdpscope.strip() if xdpscope else "xdpscope")

    @property
    def user(self) -> str:
        return self.host.split("@", 1)[0] if "@" in self.host else ""

    def __str__(self) -> str:
        return self.host


def ssh_command() -> list[str]:
    text = os.environ.get(SSH_ENV, "").strip() or "ssh"
    try:
        words = shlex.split(text)
    except ValueError as e:
        raise XdpscopeError(f"{SSH_ENV}={text!r}: {e}") from None
    return words


def remote_words(target: Target, args: list[str]) -> list[str]:
    """What runs on the remote, as words for its shell (ssh joins them with spaces)."""
    return ["sudo", "-n", shlex.quote(target.xdpscope), *(shlex.quote(a) for a in args)]


def agent_command(target: Target, interactive: bool = False, agent_args: list[str] | None = None) -> list[str]:
    """The local command line that runs the agent on the target. interactive: ssh may ask for a
    passphrase or password on the terminal (the CLI on a tty); else BatchMode (the GUI, scripts)."""
    batch = [] if interactive else ["-o", "BatchMode=yes"]
    return [*ssh_command(), *batch, *SSH_OPTIONS, target.host, "--",
            *remote_words(target, ["agent", "--stdio", *(agent_args or [])])]


def _lines(stderr: str) -> list[str]:
    return [ln.strip() for ln in stderr.splitlines() if ln.strip() and not _NOISE.match(ln.strip())]


def _sudoers_hint(target: Target) -> str:
    who = target.user or "YOUR_USER"
    path = target.xdpscope if target.xdpscope.startswith("/") else "/path/to/xdpscope"
    return (f"grant it passwordless sudo for xdpscope there, e.g. "
            f"`echo '{who} ALL=(root) NOPASSWD: {path}' | sudo tee /etc/sudoers.d/xdpscope`")


def _ssh_hint(target: Target, line: str) -> str:
    h = target.host
    if "Permission denied" in line:
        return f"{h} refused the login: install your public key there (ssh-copy-id {h}) or load it into ssh-agent"
    if "Host key verification failed" in line or "REMOTE HOST IDENTIFICATION HAS CHANGED" in line:
        return f"{h}'s host key is unknown or changed: connect once with `ssh {h}` to check and accept it"
    if "Could not resolve hostname" in line:
        return "check the host name (or its Host entry in ~/.ssh/config)"
    if any(s in line for s in ("Connection refused", "timed out", "No route to host", "Network is unreachable")):
        return f"is sshd running on {h} and reachable from here?"
    return ""


def explain(target: Target, code: int | None, stderr: str) -> str:
    """Why the agent on target did not start, in one line: what to install or grant there."""
    lines = _lines(stderr)
    text = "\n".join(lines)
    last = lines[-1] if lines else ""
    h = target.host
    if any(s in text for s in ("a password is required", "a terminal is required", "no tty present",
                               "is not in the sudoers file", "may not run sudo", "is not allowed to execute",
                               "must have a tty")):
        sudo_line = next((ln for ln in lines if ln.startswith("sudo:")), last)
        return f"{h}: `sudo -n {target.xdpscope}` was refused ({sudo_line}): {_sudoers_hint(target)}"
    if code == 127 and re.search(r"\bsudo\b.*not found", text):
        return f"{h}: sudo is not installed there: install it (apt-get install sudo), then {_sudoers_hint(target)}"
    if re.search(rf"sudo: {re.escape(target.xdpscope)}: command not found", text):
        if target.xdpscope == "xdpscope":
            return (f"{h}: xdpscope is not installed there (sudo -n looks on root's secure_path): "
                    f"install it (clone it and run `make setup`) and link it into /usr/local/bin, "
                    f"or pass --remote-xdpscope PATH")
        return (f"{h}: no xdpscope at {target.xdpscope}: install it there (clone it and run `make setup`) "
                f"or pass the right --remote-xdpscope PATH")
    if code == SSH_FAILED:
        hint = _ssh_hint(target, text)
        return f"ssh {h}: {last or 'failed'}" + (f": {hint}" if hint else "")
    status = "could not start" if code is None else f"exited with status {code}"
    return f"{h}: the agent {status} before it was ready" + (f": {last}" if last else "")


def lost(target: Target, code: int | None, stderr: str) -> str:
    """The connection to a ready agent ended without being asked to, in one line. code: ssh's
    exit status, None when a signal ended it."""
    if code is None:
        why = "ssh was ended by a signal"
    elif code == SSH_FAILED:  # ssh's own last word (e.g. "Connection to HOST closed by remote host.")
        ssh_lines = [ln for ln in _lines(stderr) if not ln.startswith(("xdpscope", "bcc", "sudo"))]
        why = ssh_lines[-1].rstrip(".") if ssh_lines else "ssh failed"
    else:
        why = f"the agent exited with status {code}"
    return f"{target.host}: connection lost ({why})"


def missing_ssh(command: list[str]) -> str:
    return (f"cannot run {command[0]!r}: install the OpenSSH client (apt-get install openssh-client) "
            f"or set {SSH_ENV} to your ssh command")

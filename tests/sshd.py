"""A real OpenSSH server for tests: Debian's /usr/sbin/sshd on 127.0.0.1, a free port, its own
config, host key and AuthorizedKeysFile, a generated client key; and the XDPSCOPE_SSH line that
makes the system's ssh client use exactly these (no user or system ssh config)."""
from __future__ import annotations

import contextlib
import os
import pwd
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

SSHD = "/usr/sbin/sshd"
PRIVSEP_DIR = Path("/run/sshd")  # compiled into Debian's sshd; its systemd unit makes it at boot


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "xdpscope-test", "-f", str(path)],
                   check=True, capture_output=True)


def descendants(pid: int) -> list[int]:
    """pid's children, grandchildren, ... (from /proc/PID/task/*/children)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for t in tasks:
            try:
                kids = [int(k) for k in Path(f"/proc/{p}/task/{t}/children").read_text().split()]
            except OSError:
                continue
            out += kids
            todo += kids
    return out


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


@dataclass
class SshServer:
    dir: Path
    port: int
    client_key: Path
    known_hosts: Path
    proc: subprocess.Popen
    log: list[str] = field(default_factory=list)

    def ssh_env(self, key: Path | None = None, port: int | None = None) -> str:
        """XDPSCOPE_SSH for this server: our key and known_hosts only, no ~/.ssh/config."""
        return shlex.join(["ssh", "-F", "/dev/null", "-p", str(port or self.port), "-i", str(key or self.client_key),
                           "-o", "IdentitiesOnly=yes", "-o", f"UserKnownHostsFile={self.known_hosts}",
                           "-o", "GlobalKnownHostsFile=/dev/null", "-o", "StrictHostKeyChecking=yes"])

    def sessions(self) -> list[int]:
        """The per-connection sshd processes (children of the listener)."""
        return [p for p in descendants(self.proc.pid) if cmdline(p).startswith("sshd:")]

    def stop(self) -> None:
        kids = descendants(self.proc.pid)
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for pid in kids:  # connections outlive the listener: end ours
            if cmdline(pid).startswith("sshd:"):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)


@contextlib.contextmanager
def sshd(tmp: Path) -> Iterator[SshServer]:
    """Start sshd; always stopped (and the privilege-separation directory removed if we made it)."""
    made_privsep = not PRIVSEP_DIR.exists()
    if made_privsep:
        PRIVSEP_DIR.mkdir(mode=0o755)
    tmp.mkdir(parents=True, exist_ok=True)
    host_key, client_key = tmp / "host_ed25519", tmp / "client_ed25519"
    _keygen(host_key)
    _keygen(client_key)
    # sshd reads the keys as the user logging in: a directory any user can read (not the test's tmp)
    keys_dir = Path(tempfile.mkdtemp(prefix="xdpscope-sshd-"))
    keys_dir.chmod(0o755)
    authorized = keys_dir / "authorized_keys"
    authorized.write_text(Path(f"{client_key}.pub").read_text())
    authorized.chmod(0o644)
    port = free_port()
    known = tmp / "known_hosts"
    known.write_text(f"[127.0.0.1]:{port} {Path(f'{host_key}.pub').read_text()}")
    config = tmp / "sshd_config"
    config.write_text("\n".join([
        "ListenAddress 127.0.0.1", f"Port {port}", f"HostKey {host_key}", f"PidFile {tmp / 'sshd.pid'}",
        f"AuthorizedKeysFile {authorized}",
        "StrictModes no",                    # the key files live in a test's tmp directory
        "UsePAM no", "PasswordAuthentication no", "KbdInteractiveAuthentication no",
        "PermitRootLogin prohibit-password", "AuthenticationMethods publickey",
        "ClientAliveInterval 2", "ClientAliveCountMax 3",  # a dead client is noticed, its agent ended
        "LogLevel VERBOSE", ""]))
    try:
        proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdin=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
    except BaseException:
        shutil.rmtree(keys_dir, ignore_errors=True)
        raise
    server = SshServer(tmp, port, client_key, known, proc)
    listening = threading.Event()

    def drain() -> None:
        for line in proc.stderr:
            server.log.append(line.rstrip())
            if "Server listening" in line:
                listening.set()
    threading.Thread(target=drain, daemon=True).start()
    try:
        deadline = time.monotonic() + 20
        while not listening.wait(0.1):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"sshd did not start: {server.log}")
        yield server
    finally:
        server.stop()
        shutil.rmtree(keys_dir, ignore_errors=True)
        if made_privsep:
            with contextlib.suppress(OSError):
                PRIVSEP_DIR.rmdir()


@contextlib.contextmanager
def user_without_sudo(name: str) -> Iterator[str]:
    """A temporary login user (shell /bin/sh, no password, not in sudoers); always removed."""
    with contextlib.suppress(KeyError):
        pwd.getpwnam(name)
        subprocess.run(["userdel", name], capture_output=True)
    # '*' (not '!'): no password, but not a locked account, so sshd lets a key log in
    subprocess.run(["useradd", "--no-create-home", "--home-dir", "/nonexistent", "--shell", "/bin/sh",
                    "--password", "*", name], check=True, capture_output=True)
    try:
        yield name
    finally:
        subprocess.run(["userdel", name], capture_output=True)

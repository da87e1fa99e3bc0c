"""Compiler output of our own C kept on disk between processes (a fresh `record`, a new agent), so
only the first run after a change of source, flags, kernel, headers or bcc pays clang.

What is stored is what build_cache keeps in memory (bytecode, map definitions, BTF and its records,
never a kernel object); loading it is loading bytecode as root, so it is trusted only as far as root is
(docs/security.md, "The build cache on disk"):
- the directory is used only by root, only when it is owned by root with mode 0700, and when
  every directory above it is root's and writable by no one else (or sticky); else nothing is
  read or written;
- an entry is read only when it is a regular file owned by root, written by no one else, not a
  link, of bounded size; its text names its full key (checked equal) and a sha256 of its body;
- anything unreadable, malformed or mismatched is ignored (and removed): the caller compiles.
The verifier still checks every program loaded from it, as after a compile.
"""
from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

FORMAT = 2                          # 2: with the programs' BTF (format 1 entries are recompiled)
DEFAULT_DIR = "/var/cache/xdpscope/builds"
ENV = "XDPSCOPE_BUILD_CACHE"        # another directory, or "off"
MAX_BYTES = 4 << 20                 # an entry (our programs' are ~10-60 kB)
MAX_ENTRIES = 64                    # oldest removed beyond (each edit of bpf/ makes a new key)


def directory() -> Path | None:
    """The cache directory when it is safe to use (created 0700 if missing), else None."""
    where = os.environ.get(ENV, DEFAULT_DIR)
    if where == "off" or os.geteuid() != 0 or not os.path.isabs(where):
        return None
    path = Path(os.path.realpath(where))
    try:
        if not path.exists():
            path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
            path.mkdir(mode=0o700)
        st = os.lstat(path)
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != 0 or stat.S_IMODE(st.st_mode) != 0o700:
            return None
        for parent in path.parents:
            st = os.lstat(parent)
            if st.st_uid != 0 or (st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX):
                return None
    except OSError:
        return None
    return path


def _name(key: list) -> str:
    """The entry's file name: of the key and the format, so a tree writing another format (an older
    checkout run meanwhile) does not replace this one's entries, nor this one its."""
    return hashlib.sha256(json.dumps([FORMAT, key]).encode()).hexdigest()[:40] + ".json"


def get(key: list) -> dict | None:
    """The body stored under key, or None (absent, unsafe or damaged: a damaged entry is removed)."""
    d = directory()
    if d is None:
        return None
    name = _name(key)
    try:
        dfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dfd)
        except OSError:
            return None
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode) or st.st_uid != 0 or st.st_mode & 0o022 or st.st_size > MAX_BYTES:
                return None                     # not ours to trust, and not ours to remove
            data = f.read(MAX_BYTES + 1)
        body = _check(data, key)
        if body is None:
            _remove(dfd, name)
        return body
    except OSError:
        return None
    finally:
        os.close(dfd)


def _check(data: bytes, key: list) -> dict | None:
    try:
        doc = json.loads(data)
        body = doc["body"]
        ok = (isinstance(doc, dict) and doc.get("format") == FORMAT and doc.get("key") == key
              and isinstance(body, dict)
              and doc.get("sha256") == hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest())
    except (ValueError, TypeError, KeyError, RecursionError):
        return None
    return body if ok else None


def put(key: list, body: dict) -> None:
    """Store body under key (atomically: a reader sees the old entry, the new one or none).
    Failures are ignored: the cache is an optimisation."""
    d = directory()
    if d is None:
        return
    doc = {"format": FORMAT, "key": key, "body": body,
           "sha256": hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()}
    data = json.dumps(doc).encode()
    if len(data) > MAX_BYTES:
        return
    name = _name(key)
    tmp = f".{name}.{os.getpid()}.{os.urandom(4).hex()}"
    try:
        dfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:
        return
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=dfd)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
        _trim(dfd)
    except OSError:
        _remove(dfd, tmp)
    finally:
        os.close(dfd)


def _trim(dfd: int) -> None:
    """At most MAX_ENTRIES entries: the least recently written go."""
    names = [n for n in os.listdir(dfd) if n.endswith(".json") and not n.startswith(".")]
    if len(names) <= MAX_ENTRIES:
        return
    names.sort(key=lambda n: os.stat(n, dir_fd=dfd, follow_symlinks=False).st_mtime)
    for n in names[:len(names) - MAX_ENTRIES]:
        _remove(dfd, n)


def _remove(dfd: int, name: str) -> None:
    try:
        os.unlink(name, dir_fd=dfd)
    except OSError:
        pass

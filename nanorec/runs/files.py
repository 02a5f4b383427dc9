"""How nanorec writes: one atomic file writer, one writer lock, one folder transaction.

Every output file is written to a temporary file beside it (`.NAME.PID.RANDOM.tmp`: the next
write removes one a killed process left), flushed, given open()'s permissions (0666 minus the
umask) and renamed over the destination: a reader, or a run killed at any instant, sees the old
file or the new one. A whole folder is built in a hidden sibling (`temp_folder`) and renamed into
place (`publish_folder`; `recover_folder` finishes or undoes a rename a killed process left).
`OutputLock` refuses a second writer. A disk error (full, read-only, quota...), also one a
library wraps in its own type, is a DataError naming the path.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import shutil
import stat
import tempfile
from typing import Callable

from ..errors import DataError, UsageError, one_line

# what a disk refuses: one line for the user, not a bug
DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG, errno.EIO)
NEW, OLD = "new", "old"  # a folder being built (temp_folder), a replaced one (publish_folder)


def _umask() -> int:
    # os.umask can only be read by setting it; set it straight back.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str, write: Callable[[str], None]) -> None:
    """Call `write(tmp_path)` to produce the file, then move it to `path`; a DataError naming
    `path` when its folder is missing or not writable, it is a folder, or the disk refuses."""
    path = os.fspath(path)
    if not path.strip():
        raise UsageError("empty output path")
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise DataError(f"{path}: is a folder, expected a file path")
    if is_special(path):  # /dev/null, a FIFO, /dev/stdout: written to, never replaced by a file
        _write_through(path, write)
        return
    _check_folder(path, folder)
    base = os.path.basename(path)
    remove_stale_temps(folder, base)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{base}.{os.getpid()}.", suffix=".tmp", dir=folder)
    except OSError as e:
        raise DataError(f"{path}: cannot write here ({e.strerror})") from None
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:  # the bytes reach the disk before the rename makes them visible
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except Exception as e:  # noqa: BLE001 - a library may wrap the disk's error in its own type
        reason = disk_error(e)
        if reason is None:
            raise
        raise DataError(f"{path}: cannot write ({reason})") from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def is_special(path: str) -> bool:
    """True for an output path to write to as it is, never replace by a renamed file (as root that
    would replace /dev/null itself): a character device, a FIFO, or a link into /proc (/dev/stdout).
    A block device or a socket is a DataError: nanorec writes files, not disks."""
    try:
        mode = os.stat(path).st_mode  # through links
    except OSError:
        return False
    if stat.S_ISBLK(mode) or stat.S_ISSOCK(mode):
        raise DataError(f"{path}: is a {'block device' if stat.S_ISBLK(mode) else 'socket'}, expected a file path")
    return stat.S_ISCHR(mode) or stat.S_ISFIFO(mode) or _links_into_proc(path)


def _links_into_proc(path: str) -> bool:
    """Whether following `path`'s links passes through /proc (/dev/stdout -> /proc/self/fd/1):
    the path names a process's open file, to be written to."""
    path = os.path.abspath(path)
    for _ in range(40):  # the kernel's own limit on links followed
        if path.startswith("/proc/"):
            return True
        if not os.path.islink(path):
            return False
        path = os.path.join(os.path.dirname(path), os.readlink(path))
        path = os.path.join(os.path.realpath(os.path.dirname(path)), os.path.basename(path))
    return False


STDOUT = "/dev/stdout"


def out_path(path: str) -> str:
    """An --out as given, with "-" read as standard output, never as a file named "-"."""
    return STDOUT if path == "-" else path


def is_stdout(path: str) -> bool:
    """Whether writing `path` writes our stdout: then a command's summary goes to stderr."""
    try:
        return os.path.samestat(os.stat(path), os.fstat(1))
    except (OSError, ValueError):
        return False


def _write_through(path: str, write: Callable[[str], None]) -> None:
    """`write(path)` straight into a special file (`is_special`): no temporary file, no rename."""
    try:
        write(path)
    except Exception as e:  # noqa: BLE001 - as atomic_write: the disk's (or the pipe's) error is one line
        reason = disk_error(e)
        if reason is None:
            raise
        if reason == os.strerror(errno.EPIPE):  # `| head`: the reader is done; the CLI stops quietly
            raise BrokenPipeError(errno.EPIPE, reason) from None
        raise DataError(f"{path}: cannot write ({reason})") from None


def disk_error(e: BaseException) -> str | None:
    """The disk's reason ("No space left on device") when `e` is, or wraps, an OS error: an OSError in
    its chain, or a library's "(os error 28)" / "[Errno 28]" text; None for anything else (a bug)."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        m = re.search(r"\(os error (\d+)\)|\[Errno (\d+)\]", str(e))
        code = int(m.group(1) or m.group(2)) if m else None
        if isinstance(e, OSError):
            if e.errno is not None:
                return e.strerror or os.strerror(e.errno)
            return os.strerror(code) if code is not None else one_line(e)
        if code in DISK_ERRNOS:
            return os.strerror(code)
        e = e.__cause__ or e.__context__
    return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_temps(folder: str, base: str) -> None:
    """Remove the `.BASE.PID.*.tmp` files of `folder` whose writer (PID) is no longer running."""
    prefix = f".{base}."
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        if not (name.startswith(prefix) and name.endswith(".tmp")):
            continue
        pid = name[len(prefix):].split(".", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
            try:
                os.remove(os.path.join(folder, name))
            except OSError:
                pass  # gone already, or not ours to remove: ignored, as readers ignore it


def _check_folder(path: str, folder: str) -> None:
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise DataError(f"{path}: {folder} is a file, not a folder")
    if not os.path.isdir(folder):
        raise DataError(f"{path}: folder {folder} does not exist")


def write_file(path: str, dump: Callable, mode: str = "wb") -> None:
    """atomic_write through `dump(f)`, f the temporary file opened in `mode`."""
    def write(tmp):
        with open(tmp, mode, encoding=None if "b" in mode else "utf-8") as f:
            dump(f)
    atomic_write(path, write)


def write_text(path: str, text: str) -> None:
    write_file(path, lambda f: f.write(text), "w")


def write_json(path: str, obj, indent: int | None = 2) -> None:
    write_text(path, json.dumps(obj, indent=indent) + "\n")


def append_line(path: str, line: str) -> None:
    """One line appended to a log: not atomic, by design (readers skip a torn last line)."""
    try:  # O_NOFOLLOW: a link put in a run folder is never appended through, out of the folder
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o666)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise DataError(f"{path}: is a link; nanorec appends to its own log file, never through a link "
                            f"(remove the link)") from None
        raise DataError(f"{path}: cannot write ({e.strerror or e})") from None
    try:
        with open(fd, "a", encoding="utf-8") as f:
            f.write(line + "\n")
    except OSError as e:
        raise DataError(f"{path}: cannot write ({e.strerror or e})") from None


def check_writable_folder(path: str, what: str = "output") -> None:
    """Fail before the work, not after it: `path`'s folder must exist and accept files."""
    if not os.fspath(path).strip():
        raise UsageError(f"empty path for the {what}")
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise DataError(f"{path}: is a folder, expected a file path for the {what}")
    if is_special(path):  # written to as it is (atomic_write): it must take bytes, its folder need not
        if not os.access(path, os.W_OK):
            raise DataError(f"{path}: not writable")
        return
    _check_folder(path, folder)
    if not os.access(folder, os.W_OK):
        raise DataError(f"{path}: folder {folder} is not writable")


def check_output_folder(path: str, what: str = "output folder") -> None:
    """Fail before the work: `path` must be a folder, or a path where one can be created."""
    if not os.fspath(path).strip():
        raise UsageError(f"empty path for the {what}")
    if os.path.exists(path) and not os.path.isdir(path):
        raise DataError(f"{path}: exists and is not a folder")
    ancestor = os.path.abspath(path)  # its first existing ancestor must be a folder
    while not os.path.exists(ancestor):
        ancestor = os.path.dirname(ancestor)
    if not os.path.isdir(ancestor):
        raise DataError(f"{path}: cannot create the {what} ({ancestor} is a file)")


# -----------------------------------------------------------------------------
# the writer lock

class OutputLock:
    """One writer per output path: an exclusive flock on `.NAME.lock` beside it (not inside: the
    folder itself is renamed into place), holding the writer's pid. A second writer gets a
    UsageError "--out in use by process N"; the kernel drops a dead process's flock, so the lock
    file it left is taken over (`previous`: its pid). Use as `with OutputLock(out, "--out"):`."""

    def __init__(self, path: str, option: str = "--out"):
        path = literal_path(path)  # one lock whatever the spelling (./x, a link to its folder)
        self.target, self.option, self.fd, self.previous = path, option, None, None
        self.path = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.lock")

    def check(self) -> None:
        """Refuse now, before any work, if another process holds the lock (changes nothing on disk)."""
        if self.path in _HELD:  # this process's own writer, checking again under its lock
            return
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError:
            return  # no lock file: nobody is writing
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(fd, fcntl.LOCK_UN)
        except BlockingIOError:
            raise self._in_use(_read_pid(fd)) from None
        finally:
            os.close(fd)

    def _in_use(self, holder: int | None) -> UsageError:
        return UsageError(f"{self.option} {self.target}: in use by process {holder or '(unknown)'} (another "
                          f"nanorec is writing it); wait for it to finish, or choose another {self.option}")

    def acquire(self) -> "OutputLock":
        folder = os.path.dirname(self.path)
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as e:
            raise DataError(f"{self.target}: cannot create its folder {folder} ({e.strerror})") from None
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            except OSError as e:
                raise DataError(f"{self.target}: cannot write in {folder} ({e.strerror})") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_pid(fd)
                os.close(fd)
                raise self._in_use(holder) from None
            try:  # its last holder may have removed the file between our open and flock: retry on the new one
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        self.previous = _read_pid(fd)  # a dead process's pid, when it left its lock file behind
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd = fd
        _HELD.add(self.path)
        return self

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            os.remove(self.path)  # while still held: the next writer retries on a fresh file
        except OSError:
            pass
        os.close(self.fd)
        self.fd = None
        _HELD.discard(self.path)

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


_HELD: set[str] = set()  # the lock files this process holds


def _read_pid(fd: int) -> int | None:
    text = os.pread(fd, 32, 0).decode(errors="replace").strip()
    return int(text) if text.isdigit() else None


# -----------------------------------------------------------------------------
# the folder transaction: build beside, rename into place

def literal_path(path) -> str:
    """`path` absolute, its folder's links resolved, its last name as it is: a folder that is a link
    is replaced as a link, and what it points to is never moved aside, deleted or written into."""
    path = os.path.abspath(os.fspath(path))
    return os.path.join(os.path.realpath(os.path.dirname(path)), os.path.basename(path))


def _remove(path: str) -> None:
    """Remove a folder, or a link (never what it points to)."""
    if os.path.islink(path):
        os.unlink(path)
    else:
        shutil.rmtree(path, ignore_errors=True)


def _hidden(path: str, kind: str, pid: int | None = None) -> str:
    """`<parent>/.<name>.nanorec-<kind>-<pid>`: a hidden sibling on the same file system."""
    parent, name = os.path.split(path)
    return os.path.join(parent, f".{name}.nanorec-{kind}-{os.getpid() if pid is None else pid}")


def _siblings(out: str) -> list[tuple[str, str, int]]:
    """(path, kind, pid) of `out`'s hidden siblings (temp_folder's and publish_folder's), by name."""
    parent, name = os.path.split(out)
    pattern = re.compile(rf"\.{re.escape(name)}\.nanorec-({NEW}|{OLD})-(\d+)")
    try:
        names = sorted(os.listdir(parent or "."))
    except OSError:
        return []
    return [(os.path.join(parent, m[0]), m[1], int(m[2])) for m in map(pattern.fullmatch, names) if m]


def temp_folder(out: str) -> str:
    """A new empty folder to build `out` in: `<parent>/.<name>.nanorec-new-<pid>/<name>`."""
    out = literal_path(out)
    if os.path.ismount(out):
        raise DataError(f"{out}: a mount point; the folder is built beside it and renamed into place, "
                        f"so choose a folder inside it")
    holder = _hidden(out, NEW)
    work = os.path.join(holder, os.path.basename(out))
    try:
        if os.path.lexists(holder):  # this process's own earlier attempt (an API caller retrying)
            shutil.rmtree(holder)
        os.makedirs(work)
    except OSError as e:
        raise DataError(f"{out}: cannot create a folder in {os.path.dirname(out)} ({e.strerror})") from None
    return work


def unfinished_folders(out: str) -> list[str]:
    """temp_folder folders of `out` no running writer is building (this process's own count too),
    newest first: what a killed or failed writer left (a run's --resume continues one)."""
    out = literal_path(out)
    found = [(os.path.getmtime(path), os.path.join(path, os.path.basename(out)))
             for path, kind, pid in _siblings(out)
             if kind == NEW and (pid == os.getpid() or not _pid_alive(pid))]
    return [work for _, work in sorted(found, reverse=True) if os.path.isdir(work)]


def final_path(work: str) -> str:
    """The folder that `temp_folder` work will become (any other path: itself)."""
    holder, name = os.path.split(work)
    if re.fullmatch(rf"\.{re.escape(name)}\.nanorec-{NEW}-\d+", os.path.basename(holder)):
        return os.path.join(os.path.dirname(holder), name)
    return work


def publish_folder(work: str, out: str) -> None:
    """Move the complete folder `work` (temp_folder's) to `out`; an existing `out` is renamed aside
    first and removed after, so a crash leaves the old folder whole (recover_folder) or the new one."""
    out = literal_path(out)
    aside = _hidden(out, OLD)
    try:
        if os.path.lexists(out):
            os.rename(out, aside)
        os.rename(work, out)
    except OSError as e:
        if os.path.lexists(aside) and not os.path.lexists(out):
            os.rename(aside, out)  # the old folder back in place
        raise DataError(f"{out}: cannot rename the finished folder into place ({e.strerror})") from None
    _remove(aside)
    discard_folder(work)  # the holder, empty now


def discard_folder(work: str) -> None:
    """Remove a `temp_folder` (an unfinished one: nothing of it stays)."""
    if final_path(work) != work:
        shutil.rmtree(os.path.dirname(work), ignore_errors=True)


def recover_folder(out: str, keep: str | None = None) -> list[str]:
    """Under `out`'s OutputLock (every process that left siblings is gone): put back an old folder a
    killed publish_folder moved aside, remove the other siblings but `keep` (a run being resumed).
    -> one line per thing done, for the log."""
    out = literal_path(out)
    keep = os.path.dirname(literal_path(keep)) if keep else None
    done = []
    for path, kind, pid in _siblings(out):
        if kind == OLD and not os.path.lexists(out):
            try:
                os.rename(path, out)
            except OSError as e:
                raise DataError(f"{out}: cannot put back the previous folder {path} ({e.strerror})") from None
            done.append(f"{out}: put back the previous folder that process {pid} had moved aside "
                        f"before it was interrupted")
        elif path != keep:
            _remove(path)
            what = "unfinished folder" if kind == NEW else "replaced folder"
            done.append(f"{out}: removed the {what} that process {pid} left ({os.path.basename(path)})")
    return done

"""The one atomic writer: every file cje publishes goes through :func:`atomic_writer`.

Contract (docs/contracts.md, "Writing files"):

1. the bytes go to a temporary file in the target's folder, named
   ``.{name}.{host}.{pid}.{random}.tmp`` and created with mode ``0o666`` so the
   kernel applies the process umask (0644 under the usual umask 022; the old
   ``mkstemp`` route gave 0600, unreadable to colleagues on a shared cluster);
2. the file is flushed and ``fsync``-ed;
3. it is renamed over the target (``os.replace``, atomic on POSIX);
4. the folder is ``fsync``-ed so the rename itself survives a power loss.

A reader therefore sees the old file or the new one, never a part. A temporary
file left by a killed writer (its pid no longer running on this host) is removed
the next time the same target is written.

A file that outgrows the process's file-size limit (``ulimit -f``, RLIMIT_FSIZE) is an
:class:`~cje.errors.OutputError` naming the file and the limit (:func:`file_too_large`);
``cje`` ignores SIGXFSZ, which would otherwise kill the process without a word.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import socket
import stat
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator

from cje.errors import OutputError

try:
    import resource  # the file-size limit named in errors (POSIX)
except ImportError:  # pragma: no cover (not POSIX)
    resource = None

__all__ = ["atomic_writer", "atomic_output_path", "atomic_write_bytes", "atomic_write_text", "fsync_directory",
           "temp_name", "is_stale_temp", "remove_stale_temps", "file_too_large", "path_kind", "shown_path",
           "make_parent"]

_HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:40] or "host"
# errors from fsync on a folder that mean "this file system cannot do that" (some network mounts)
_DIR_FSYNC_UNSUPPORTED = {errno.EINVAL, errno.ENOTSUP, errno.EBADF, errno.EACCES, errno.EPERM}


def shown_path(path: str | os.PathLike) -> str:
    """A path for a one-line message: control characters escaped.

    Parameters
    ----------
    path : str or PathLike
        The path.

    Returns
    -------
    str
        The path, printable.
    """
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in os.fspath(path))


def path_kind(path: str | os.PathLike, st: os.stat_result | None = None) -> str:
    """What ``path`` is, in words, without following a symlink at ``path`` itself.

    Parameters
    ----------
    path : str or PathLike
        The path.
    st : os.stat_result or None, default=None
        Its ``lstat`` when already known.

    Returns
    -------
    str
        'missing', 'a file', 'a folder', 'a dangling symlink to X', 'a symbolic link to a
        file (X)', 'a symbolic link loop', 'a FIFO', 'a socket' or 'a device file'.
    """
    if st is None:
        try:
            st = os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            return "missing"
    mode = st.st_mode
    if stat.S_ISLNK(mode):
        try:
            target = shown_path(os.readlink(path))
        except OSError:
            target = "?"
        try:
            followed = os.stat(path)
        except OSError as exc:
            return "a symbolic link loop" if exc.errno == errno.ELOOP else f"a dangling symlink to {target}"
        return f"a symbolic link to a {'folder' if stat.S_ISDIR(followed.st_mode) else 'file'} ({target})"
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISREG(mode):
        return "a file"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a device file"


def make_parent(path: Path) -> None:
    """Create the folders above ``path``; a non-folder in the way is a one-line OutputError.

    Parameters
    ----------
    path : Path
        The file about to be written.

    Raises
    ------
    OutputError
        ``{path}: cannot be written: {ancestor} is a dangling symlink to X, not a folder``
        (or a file, a FIFO, ...), or the folder cannot be created (permission, read-only).
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return
    except (FileExistsError, NotADirectoryError):
        pass
    except OSError as exc:
        raise OutputError(f"{shown_path(path)}: cannot create its folder ({exc.strerror})") from None
    ancestor = path.parent
    for candidate in reversed([path.parent, *path.parent.parents]):  # the first one in the way, from the top
        if os.path.lexists(candidate) and not candidate.is_dir():
            ancestor = candidate
            break
    kind = path_kind(ancestor)
    hint = ("create the folder it points to or remove the link" if kind.startswith("a dangling symlink")
            else "choose another path")
    raise OutputError(f"{shown_path(path)}: cannot be written: {shown_path(ancestor)} is {kind}, not a folder: "
                      f"{hint}")


def file_too_large(path: str | os.PathLike | None, exc: BaseException) -> OutputError | None:
    """The one-line error for a write past the file-size limit (EFBIG), or None for any other error.

    Parameters
    ----------
    path : str, PathLike or None
        The file being written (None: unknown; ``exc.filename`` is used when set).
    exc : BaseException
        What the write raised.

    Returns
    -------
    OutputError or None
        ``{path}: cannot write: the file would exceed the file-size limit of this process
        (ulimit -f: N bytes)``, when ``exc`` is an OSError EFBIG.
    """
    if not isinstance(exc, OSError) or exc.errno != errno.EFBIG:
        return None
    limit = ""
    if resource is not None:
        soft = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
        if soft != resource.RLIM_INFINITY:
            limit = f": {soft:,} bytes"
    where = path if path is not None else exc.filename
    name = os.fspath(where) if where is not None else "a file"
    return OutputError(f"{name}: cannot write: the file would exceed the file-size limit of this process "
                       f"(ulimit -f{limit}); raise the limit (ulimit -f unlimited) or write less")


def fsync_directory(directory: str | os.PathLike) -> None:
    """``fsync`` a folder so renames and creations inside it are durable.

    File systems that refuse fsync on a folder (EINVAL, ENOTSUP, ...) are skipped
    silently: there is nothing more a process can do there.

    Parameters
    ----------
    directory : str or PathLike
        The folder.

    Raises
    ------
    OSError
        Any other failure to open or fsync it.
    """
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError as exc:
        if exc.errno in _DIR_FSYNC_UNSUPPORTED:
            return
        raise
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in _DIR_FSYNC_UNSUPPORTED:
            raise
    finally:
        os.close(fd)


def temp_name(name: str, suffix: str = ".tmp") -> str:
    """A unique hidden sibling name for ``name``: ``.{name}.{host}.{pid}.{random}{suffix}``.

    Parameters
    ----------
    name : str
        The target's file name.
    suffix : str, default='.tmp'
        The ending of the temporary name.

    Returns
    -------
    str
        A hidden name in the target's folder.
    """
    return f".{name}.{_HOST}.{os.getpid()}.{secrets.token_hex(6)}{suffix}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def is_stale_temp(entry: str, name: str, suffix: str = ".tmp") -> bool:
    """True when ``entry`` is a temporary of ``name`` whose writer (same host) is no longer running.

    Parameters
    ----------
    entry : str
        A folder entry.
    name : str
        The target's file name.
    suffix : str, default='.tmp'
        The ending of its temporaries (:func:`temp_name`).

    Returns
    -------
    bool
        False for a temporary of another host, of this process or of a live process.
    """
    prefix = f".{name}.{_HOST}."
    if not (entry.startswith(prefix) and entry.endswith(suffix)):
        return False
    pid = entry[len(prefix):len(entry) - len(suffix)].split(".")[0]
    return pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid))


def remove_stale_temps(directory: str | os.PathLike, name: str, suffix: str = ".tmp") -> int:
    """Delete temporaries of ``directory/name`` left by killed writers; return how many.

    Parameters
    ----------
    directory : str or PathLike
        The folder (an unreadable folder counts as none removed).
    name : str
        The target's file name.
    suffix : str, default='.tmp'
        The ending of its temporaries.

    Returns
    -------
    int
        The number of temporaries removed.
    """
    removed = 0
    try:
        entries = os.listdir(directory)
    except OSError:
        return 0
    for entry in entries:
        if is_stale_temp(entry, name, suffix):
            try:
                os.unlink(os.path.join(directory, entry))
                removed += 1
            except OSError:  # another process removed it first, or it is not ours to remove
                pass
    return removed


@contextmanager
def atomic_output_path(path: str | os.PathLike) -> Iterator[Path]:
    """Context manager yielding a temporary path to fill; it replaces ``path`` on success.

    For libraries that write by file name (a model assembler, ``np.savez``). The
    temporary exists (empty, mode 0666 minus umask) when the block starts; after the
    block it is fsync-ed, given that mode again (in case the writer re-created it),
    renamed over ``path``, and the folder is fsync-ed. On an exception it is deleted
    and ``path`` is unchanged (a write past the file-size limit is then an
    :class:`~cje.errors.OutputError` naming ``path``, :func:`file_too_large`). Parent
    folders are created (a file or a dangling symlink in their way is an OutputError
    naming it, :func:`make_parent`).

    Parameters
    ----------
    path : str or PathLike
        The file to replace.

    Yields
    ------
    Path
        The temporary path, in the same folder.
    """
    path = Path(path)
    parent = path.parent
    make_parent(path)
    remove_stale_temps(parent, path.name)
    tmp = parent / temp_name(path.name)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
    mode = os.fstat(fd).st_mode & 0o7777  # what the kernel gave: 0666 minus the umask
    os.close(fd)
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        try:
            os.fsync(fd)
            if os.fstat(fd).st_mode & 0o7777 != mode:
                os.fchmod(fd, mode)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        too_large = file_too_large(path, exc)
        if too_large is not None:
            raise too_large from None
        raise
    fsync_directory(parent)


@contextmanager
def atomic_writer(path: str | os.PathLike) -> Iterator[IO[bytes]]:
    """Context manager yielding a binary handle whose content replaces ``path`` on success.

    Same contract as :func:`atomic_output_path` (fsync file, rename, fsync folder,
    0666 minus umask); on an exception inside the block ``path`` is unchanged.

    Parameters
    ----------
    path : str or PathLike
        The file to replace.

    Yields
    ------
    file object
        A binary handle open for writing.
    """
    with atomic_output_path(path) as tmp:
        with open(tmp, "wb") as handle:
            yield handle


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically and durably (see :func:`atomic_writer`).

    Parameters
    ----------
    path : str or PathLike
        The file to replace.
    data : bytes
        Its new content.
    """
    with atomic_writer(path) as handle:
        handle.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically and durably (see :func:`atomic_writer`).

    Parameters
    ----------
    path : str or PathLike
        The file to replace.
    text : str
        Its new content.
    """
    atomic_write_bytes(path, text.encode("utf-8"))

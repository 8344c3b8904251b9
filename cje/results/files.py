"""One publication step for an analysis: its output files change together or not at all.

An analysis publishes a *set*: ``estimates.json``, ``estimates.csv``,
``plot_data.npz`` and, with plots, ``plots/`` (three PNGs and the dashboard).
Renaming files one by one is atomic per file but not per set: a kill between two
renames used to leave a new estimates.json beside an old estimates.csv. The
output folder cannot be swapped as a whole either, because it also holds other
runs (``seed_{s}/`` replicate folders written by concurrent Snakemake jobs).

So publication is a small roll-forward transaction (a write-ahead journal):

1. every new file is written into a private staging folder inside the output
   folder, ``OUT/.cje-publish.{host}.{pid}.{random}/``, named ``{member}.new``
   (so a glob for ``estimates.json`` never finds a staged file); files and the
   folder are fsync-ed;
2. ``journal.json`` is written into the staging folder atomically -- the commit
   point. It lists the members to replace and to remove and carries the commit's
   *key* ``(seq, id)``: ``seq`` is one more than the largest sequence number the
   writer can see (the published set's marker and every committed journal in the
   folder), ``id`` a random tie-break. Before the journal exists the old set is
   untouched; once it exists the new set is the published one;
3. the marker ``OUT/.cje-set.json`` is set to the key, then each member is
   renamed into place (``estimates.json`` last; a member the new set lacks, such
   as an earlier run's ``plots/`` on a rerun without ``--plots``, is moved out),
   the output folder is fsync-ed and the staging folder deleted. Before the
   marker and before every rename the writer re-reads the marker and stops when a
   newer commit has taken over.

Ordering never depends on host names, pids or clocks: a commit made after
another was visible has a larger ``seq``, two commits that could not see each
other are ordered by ``id``. Readers (:func:`current_set`, :func:`read_estimates`)
take the committed journal with the largest key that is not older than the
marker, and the files in the folder for members it does not stage; a journal
older than the marker is superseded and never read. So after a kill before step 2
readers see the old set, after it the new one, and a journal left by a writer
killed long ago (on any host) is never preferred to a set published after it.

Writers clean up at the start of ``cje analyze`` (:func:`check_output_dir`) and
around every publication (:func:`recover`):

* a superseded journal (older than the marker) is deleted with its folder;
* a committed journal at least as new as the marker is rolled forward when its
  writer is gone, else left to its writer;
* a staging folder without a journal (nothing committed) is deleted when its
  writer is gone.

"Gone" means: the folder's name says this host and a pid that is not running,
or nothing in the folder changed for :data:`STALE_AFTER_S` seconds (10 minutes)
by the file system's own clock (a probe file's mtime, so a skewed host clock
does not count). A writer on another host is alive for us until then; its
commit, when it lands, is ordered by its key like any other.

Journal members are validated: exactly the names of :data:`SET_MEMBERS`, each
once, ``estimates.json`` and ``estimates.csv`` replaced, staged members of the
right kind (a real file, a real ``plots.new/`` folder, never a symlink), staging
folders real folders directly inside the output folder. Anything else is a
*broken* journal, which no reader follows and which a writer reports as one line
(:class:`cje.errors.OutputError`, exit 2) naming the folder to delete; nothing
outside the output folder is ever renamed or removed. What stands in the way of
publication -- a ``plots`` that is a symlink, a file or a folder this user cannot
move, a member that is a folder or a symlink, a marker that is a folder -- is the
same kind of one-line error, raised before anything is committed, so the folder
is never left half-done and the next run after the fix publishes normally.

Why a journal rather than a completion marker: a marker written last can say
that a set is incomplete, but after a kill mid-way neither the old nor the new
set would be complete. With the journal one of them always is.
"""

from __future__ import annotations

import errno
import io
import json
import os
import secrets
import shutil
import stat
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, NamedTuple

from cje.atomic import (atomic_write_text, file_too_large, fsync_directory, is_stale_temp, remove_stale_temps,
                        temp_name)
from cje.atomic import path_kind as _kind
from cje.atomic import shown_path as _show
from cje.errors import InputError, NullEstimateError, OutputError, json_error_text
from cje.results.model import AnalysisOutput, PlotData, validate_estimates

# Renders the plots/ folder of one analysis: (estimates.json payload, plot arrays, folder) -> written
# paths (PNGs, then the dashboard). The viz layer provides it (cje.viz.render_analysis_plots); it is
# passed in so that the results layer never imports the layer that draws.
Renderer = Callable[[dict, "PlotData | None", Path], "list[Path]"]

__all__ = ["SET_MEMBERS", "MARKER", "STALE_AFTER_S", "publish_analysis", "check_output_dir", "recover",
           "current_set", "read_estimates", "check_no_silent_nulls"]

SET_MEMBERS = ("estimates.json", "estimates.csv", "plot_data.npz", "plots")
MARKER = ".cje-set.json"          # the published set's key: {"seq": int, "id": str, ...}
STALE_AFTER_S = 600               # a staging folder untouched this long belongs to a writer that is gone
_STAGING = "cje-publish"          # staging folders are temp_name(_STAGING, suffix="")
_JOURNAL = "journal.json"
_ORDER = ("plots", "plot_data.npz", "estimates.csv", "estimates.json")  # estimates.json moves last
_MAX_JSON_BYTES = 64 * 1024       # a journal or marker is ~300 bytes; anything far larger is not ours
_MAX_SEQ = 2 ** 62
_NO_SET = (-1, "")                # the key of a folder without a (readable) marker: any journal is newer
_LEGACY = (0, "")                 # the key of a journal written before keys existed (cje <= 0.x)


class _Broken(Exception):
    """A journal or staged member that cannot be followed; the message says why."""


class _Journal(NamedTuple):
    key: tuple[int, str]
    replace: tuple[str, ...]
    remove: tuple[str, ...]
    legacy: bool


# --- looking at paths without following symlinks --------------------------------------------
def _lstat(path: Path) -> os.stat_result | None:
    """``os.lstat``, or None when nothing is there; other errors (a folder this user may not
    read) are raised."""
    try:
        return os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None


def _is_real_dir(st: os.stat_result | None) -> bool:
    return st is not None and stat.S_ISDIR(st.st_mode)  # lstat: a symlink to a folder is not one


def _is_real_file(st: os.stat_result | None) -> bool:
    return st is not None and stat.S_ISREG(st.st_mode)


def _staging_dirs(out: Path) -> list[Path]:
    """The staging folders directly in ``out``: real folders (never symlinks) named ``.cje-publish.*``."""
    try:
        entries = sorted(os.listdir(out))
    except OSError:
        return []
    found = []
    for entry in entries:
        if entry.startswith(f".{_STAGING}."):
            try:
                if _is_real_dir(_lstat(out / entry)):
                    found.append(out / entry)
            except OSError:  # the folder cannot be searched: nothing to read or clean there
                pass
    return found


# --- journal and marker ----------------------------------------------------------------------
def _read_small_json(path: Path, what: str) -> object:
    """Parse a small JSON file that must be a real file; raise _Broken saying why not."""
    try:
        st = _lstat(path)
    except OSError as exc:
        raise _Broken(f"{what} cannot be read ({exc.strerror})") from None
    if not _is_real_file(st):
        raise _Broken(f"{what} is {_kind(path, st)}, not a file")
    if st.st_size > _MAX_JSON_BYTES:
        raise _Broken(f"{what} is {st.st_size:,} bytes, not a journal cje wrote")
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        with os.fdopen(fd, "rb") as handle:
            raw = handle.read(_MAX_JSON_BYTES + 1)
    except OSError as exc:
        raise _Broken(f"{what} cannot be read ({exc.strerror})") from None
    if not raw.strip():
        raise _Broken(f"{what} is empty")
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise _Broken(f"{what} is not UTF-8 text") from None
    except ValueError as exc:
        raise _Broken(f"{what} is not valid JSON ({getattr(exc, 'msg', exc)})") from None


def _parse_key(data: dict, what: str) -> tuple[int, str]:
    seq, ident = data.get("seq"), data.get("id")
    if type(seq) is not int or not 1 <= seq <= _MAX_SEQ:
        raise _Broken(f"{what} has no valid 'seq' (an integer from 1), got {_show(repr(seq))[:40]}")
    if not isinstance(ident, str) or not 1 <= len(ident) <= 64 or not ident.isalnum():
        raise _Broken(f"{what} has no valid 'id', got {_show(repr(ident))[:40]}")
    return seq, ident


def _parse_journal(staging: Path) -> _Journal | None:
    """The journal of ``staging``; None when it has none (nothing committed); _Broken when it is not
    one cje wrote: not JSON, members other than the set's own names, a bad key."""
    path = staging / _JOURNAL
    try:
        if _lstat(path) is None:
            return None
    except OSError as exc:
        raise _Broken(f"{_JOURNAL} cannot be read ({exc.strerror})") from None
    data = _read_small_json(path, _JOURNAL)
    if not isinstance(data, dict):
        raise _Broken(f"{_JOURNAL} is not a JSON object")
    lists = {}
    for field in ("replace", "remove"):
        value = data.get(field)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise _Broken(f"{_JOURNAL} field '{field}' is not a list of names")
        for name in value:
            if name not in SET_MEMBERS:
                raise _Broken(f"{_JOURNAL} lists {_show(repr(name))[:80]}, which is not a member of the set "
                              f"({', '.join(SET_MEMBERS)})")
        lists[field] = tuple(value)
    replace, remove = lists["replace"], lists["remove"]
    if len(set(replace)) != len(replace) or len(set(remove)) != len(remove) or set(replace) & set(remove):
        raise _Broken(f"{_JOURNAL} lists a member twice")
    if set(replace) | set(remove) != set(SET_MEMBERS):
        raise _Broken(f"{_JOURNAL} does not account for every member of the set")
    if not {"estimates.json", "estimates.csv"} <= set(replace):
        raise _Broken(f"{_JOURNAL} does not publish estimates.json and estimates.csv")
    if "seq" not in data and "id" not in data:
        return _Journal(_LEGACY, replace, remove, legacy=True)
    return _Journal(_parse_key(data, _JOURNAL), replace, remove, legacy=False)


def _read_marker(out: Path) -> tuple[int, str]:
    """The key of the published set; ``_NO_SET`` when there is no readable marker (older folders)."""
    try:
        data = _read_small_json(out / MARKER, MARKER)
        if not isinstance(data, dict):
            return _NO_SET
        return _parse_key(data, MARKER)
    except _Broken:
        return _NO_SET


def _check_staged(staging: Path, journal: _Journal, started: bool) -> None:
    """Staged members must be of the right kind; before the first rename (``started`` False) all
    must be there, or rolling forward would mix sets."""
    for name in journal.replace:
        path = staging / f"{name}.new"
        try:
            st = _lstat(path)
        except OSError as exc:
            raise _Broken(f"the staged {name}.new cannot be read ({exc.strerror})") from None
        if st is None:
            if not started and not journal.legacy:
                raise _Broken(f"the staged {name}.new is missing")
            continue
        if not (_is_real_dir(st) if name == "plots" else _is_real_file(st)):
            raise _Broken(f"the staged {name}.new is {_kind(path, st)}")


def _broken_error(out: Path, staging: Path, why: str) -> OutputError:
    return OutputError(f"broken publication journal in {_show(staging)}: {why}; it cannot be finished: "
                       f"delete that folder and run again", path=_show(out))


def _committed(out: Path) -> list[tuple[_Journal, Path]]:
    """Every committed staging folder of ``out`` whose journal is valid, with its journal."""
    found = []
    for staging in _staging_dirs(out):
        try:
            journal = _parse_journal(staging)
        except _Broken:
            continue
        if journal is not None:
            found.append((journal, staging))
    return found


def _next_key(out: Path) -> tuple[int, str]:
    seqs = [_read_marker(out)[0]] + [j.key[0] for j, _ in _committed(out)]
    return max(max(seqs), 0) + 1, secrets.token_hex(8)


# --- what stands in the way ------------------------------------------------------------------
def _check_members(out: Path) -> None:
    """Raise OutputError (one line, naming the path and what to do) when a member of the set, or the
    marker, is something publication must not replace: a symlink, a folder for a file member, a
    file for plots/, a plots/ this user cannot move."""
    sticky = False
    euid = os.geteuid() if hasattr(os, "geteuid") else None
    try:
        sticky = bool(os.stat(out).st_mode & stat.S_ISVTX)
    except OSError:
        pass
    for name in SET_MEMBERS:
        path = out / name
        st = _lstat(path)
        if st is None:
            continue
        want = "the plots folder cje writes" if name == "plots" else "a file cje writes"
        ok = _is_real_dir(st) if name == "plots" else _is_real_file(st)
        if not ok:
            action = "remove the link" if stat.S_ISLNK(st.st_mode) else "move it away"
            raise OutputError(f"{_show(path)} is {_kind(path, st)}, not {want}, and publishing would replace it: "
                              f"{action} or use another output folder", path=_show(out))
        if sticky and euid not in (None, 0) and st.st_uid != euid:
            raise OutputError(f"{_show(path)} belongs to another user (uid {st.st_uid}) in a sticky folder, so "
                              f"it cannot be replaced: ask its owner to remove it or use another output folder",
                              path=_show(out))
        if name == "plots":
            _check_movable(out, path)
    st = _lstat(out / MARKER)
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise OutputError(f"{_show(out / MARKER)} is a folder, not the marker cje writes: remove it or use "
                          f"another output folder", path=_show(out))


def _check_movable(out: Path, plots: Path) -> None:
    """plots/ is moved out of the way (into the staging folder) and deleted: this user needs write
    permission on it and on every folder inside it."""
    effective = {"effective_ids": True} if os.access in os.supports_effective_ids else {}
    for folder, dirs, _ in os.walk(plots):
        if not os.access(folder, os.W_OK | os.X_OK, **effective):
            try:
                owner = f"owned by uid {os.lstat(folder).st_uid}"
            except OSError:
                owner = "not accessible"
            raise OutputError(f"{_show(folder)} cannot be replaced: this user may not change it ({owner}); "
                              f"remove {_show(plots)} (or ask its owner to) or use another output folder",
                              path=_show(out))
        dirs[:] = [d for d in dirs if _is_real_dir(_lstat(Path(folder) / d))]


# --- the writer: roll forward, discard --------------------------------------------------------
def _discard(staging: Path) -> None:
    """Delete a staging folder: its journal first, so what a failure leaves is uncommitted debris."""
    try:
        os.unlink(staging / _JOURNAL)
    except OSError:
        pass
    shutil.rmtree(staging, ignore_errors=True)


def _remove_any(path: Path) -> None:
    """Remove a file, a symlink or a real folder (never following a symlink)."""
    st = _lstat(path)
    if st is None:
        return
    if _is_real_dir(st):
        shutil.rmtree(path)
    else:
        os.unlink(path)


def _write_marker(out: Path, key: tuple[int, str], members: tuple[str, ...]) -> None:
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    atomic_write_text(out / MARKER, json.dumps({"seq": key[0], "id": key[1], "members": list(members),
                                                "published_at": stamp}) + "\n")


def _apply(out: Path, staging: Path, journal: _Journal) -> bool:
    """Step 3: move the staged members into place as the journal says (idempotent).

    Returns False when a newer commit took over first (this one is then discarded).
    """
    def superseded() -> bool:
        return not journal.legacy and _read_marker(out) != journal.key

    try:
        if not journal.legacy:
            current = _read_marker(out)
            if current > journal.key:
                _discard(staging)
                return False
            if current != journal.key:
                _write_marker(out, journal.key, journal.replace)
        for name in (n for n in _ORDER if n in journal.replace):
            src, dst, old = staging / f"{name}.new", out / name, staging / f"{name}.old"
            if _lstat(src) is None:
                continue  # moved before a crash
            if superseded():
                _discard(staging)
                return False
            if _is_real_dir(_lstat(dst)):
                _remove_any(old)
                os.rename(dst, old)  # a folder cannot be replaced by rename: move the old one out first
            os.replace(src, dst)
        for name in journal.remove:
            dst = out / name
            if _lstat(dst) is not None:
                if superseded():
                    _discard(staging)
                    return False
                old = staging / f"{name}.old"
                _remove_any(old)
                os.rename(dst, old)
        fsync_directory(out)
    except OSError as exc:
        where = _show(exc.filename) if exc.filename else _show(out)
        raise OutputError(f"cannot move {where} ({exc.strerror}); the new set is committed in "
                          f"{_show(staging.name)}: fix that and run again to finish it", path=_show(out)) from None
    _discard(staging)
    try:
        fsync_directory(out)
    except OSError:
        pass
    return True


def _fs_now_ns(out: Path) -> int:
    """The file system's clock (a probe file's mtime), so that ages do not depend on this host's clock."""
    try:
        fd, probe = tempfile.mkstemp(dir=out, prefix=temp_name("cje-clock", suffix=""))
    except OSError:
        return time.time_ns()
    try:
        return os.fstat(fd).st_mtime_ns
    finally:
        os.close(fd)
        try:
            os.unlink(probe)
        except OSError:
            pass


def _writer_gone(staging: Path, now_ns: int) -> bool:
    """True when the writer of ``staging`` is no longer running: this host and its pid is gone, or
    nothing in the folder changed for STALE_AFTER_S seconds (any host)."""
    if is_stale_temp(staging.name, _STAGING, suffix=""):
        return True
    newest = 0
    for path in [staging, *(staging / e for e in _listdir(staging))]:
        try:
            st = _lstat(path)
        except OSError:  # not ours to look into: its writer may well be alive
            return False
        if st is not None:
            newest = max(newest, st.st_mtime_ns)
    return now_ns - newest > STALE_AFTER_S * 1_000_000_000


def _listdir(path: Path) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


def _recover(out: Path, strict: bool) -> int:
    done = 0
    for name in (*SET_MEMBERS, MARKER):  # temporaries of per-file atomic writes killed mid-way
        done += remove_stale_temps(out, name)
    for name in ("cje-clock", "cje-write-probe"):  # probe files of a writer killed within microseconds
        done += remove_stale_temps(out, name, suffix="")
    stagings = _staging_dirs(out)
    if not stagings:
        return done
    now: list[int] = []

    def gone(staging: Path) -> bool:
        if not now:
            now.append(_fs_now_ns(out))
        return _writer_gone(staging, now[0])

    committed: list[tuple[_Journal, Path]] = []
    for staging in stagings:
        try:
            journal = _parse_journal(staging)
        except _Broken as exc:
            if strict:
                raise _broken_error(out, staging, str(exc)) from None
            continue
        if journal is not None:
            committed.append((journal, staging))
        elif gone(staging):  # nothing committed: the old set was never touched
            _discard(staging)
            done += 1
    for journal, staging in sorted(committed, key=lambda item: item[0].key):
        published = _read_marker(out)
        if journal.key < published:  # superseded, whoever wrote it: never to be read or applied
            _discard(staging)
            done += 1
            continue
        if not gone(staging):
            continue  # its writer may be applying it right now
        try:
            _check_staged(staging, journal, started=journal.key == published)
        except _Broken as exc:
            if strict:
                raise _broken_error(out, staging, str(exc)) from None
            continue
        _check_members(out)
        _apply(out, staging, journal)
        done += 1
    return done


def recover(out: str | Path) -> int:
    """Finish or discard the transactions that writers gone before finishing left in ``out``.

    A journal older than the published set (the marker) is deleted with its staging folder;
    a committed journal at least as new is rolled forward when its writer is gone (this host
    and its pid not running, or nothing changed in its folder for :data:`STALE_AFTER_S`
    seconds); a staging folder without a journal is deleted when its writer is gone. Folders
    of a writer that may still be running are left alone. Stale temporaries of per-file
    atomic writes of the set's members and the marker are removed too.

    Parameters
    ----------
    out : str or Path
        An output folder.

    Returns
    -------
    int
        The number of staging folders and stale temporaries dealt with.

    Raises
    ------
    OutputError
        One line, exit 2: a journal is broken (not JSON, members that are not the set's own
        names, staged members missing or of the wrong kind), naming the staging folder to
        delete; or a member in the way of rolling forward (see :func:`check_output_dir`).
    """
    return _recover(Path(out), strict=True)


# --- readers -----------------------------------------------------------------------------------
def current_set(out: str | Path) -> dict[str, Path | None]:
    """The published set of ``out`` as a reader must see it: {member: path or None}.

    Without an unfinished transaction that is ``out/member`` (None when absent). With
    committed journals, the one with the largest key not older than the marker is the
    published set: a member it stages and has not moved yet is read from its staging
    folder, a member it drops is None. Superseded and broken journals are ignored, so a
    reader never prefers a set older than the published one. Read-only: safe for readers
    without write permission.

    Parameters
    ----------
    out : str or Path
        An output folder.

    Returns
    -------
    dict of str to (Path or None)
        One entry per member of :data:`SET_MEMBERS`.
    """
    out = Path(out)
    chosen: tuple[_Journal, Path] | None = None
    committed = _committed(out)
    if committed:
        published = _read_marker(out)
        for journal, staging in committed:
            if journal.key < published:
                continue
            try:
                _check_staged(staging, journal, started=True)
            except _Broken:
                continue
            if chosen is None or journal.key > chosen[0].key:
                chosen = (journal, staging)
    found: dict[str, Path | None] = {}
    for name in SET_MEMBERS:
        if chosen is not None and name in chosen[0].replace and os.path.lexists(chosen[1] / f"{name}.new"):
            found[name] = chosen[1] / f"{name}.new"
        elif chosen is not None and name in chosen[0].remove:
            found[name] = None
        else:
            found[name] = out / name if os.path.lexists(out / name) else None
    return found


# --- the writer's entry points -----------------------------------------------------------------
def check_output_dir(out: str | Path) -> Path:
    """Fail fast (before any analysis) when ``out`` cannot take the results; clean it.

    Then :func:`recover` finishes or removes what writers gone before finishing left. Creates
    nothing but what finishing a committed publication writes.

    Parameters
    ----------
    out : str or Path
        The output folder (it need not exist yet).

    Returns
    -------
    Path
        ``out``.

    Raises
    ------
    OutputError
        One line, exit 2: ``out`` or a parent is a file, a dangling symlink or another
        non-folder; the folder (or, when it does not exist yet, its nearest existing parent)
        is not writable; a member of the set is in the way of publication (a ``plots`` that
        is a symlink, a file or a folder this user cannot move; a member that is a folder or
        a symlink); a journal is broken (:func:`recover`). Each names the path and what to do.
    """
    out = Path(out)
    probe = out
    while not os.path.lexists(probe):
        if probe.parent == probe:
            break
        probe = probe.parent
    if os.path.lexists(probe) and not probe.is_dir():
        kind = _kind(probe)
        hint = ("create the folder it points to or remove the link" if kind.startswith("a dangling symlink")
                else "choose another output folder")
        what = (f"is {kind}, not a folder: {hint}" if probe == out else
                f"cannot be created: {_show(probe)} is {kind}, not a folder: {hint}")
        raise OutputError(what, path=_show(out))
    try:
        fd, tmp = tempfile.mkstemp(dir=probe, prefix=temp_name("cje-write-probe", suffix=""))
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        where = "" if probe == out else f" ({_show(probe)} is where it would be created)"
        raise OutputError(f"not writable: {exc.strerror}{where}", path=_show(out)) from None
    if probe == out:
        _check_members(out)
        recover(out)
    return out


def check_no_silent_nulls(result: AnalysisOutput, refuse_unreliable: bool) -> None:
    """The invariant checked before publication: every target's estimate, SE and CI are finite.

    The exception: estimates of unreliable policies withheld by ``--refuse-unreliable``.
    So an analysis never exits 0 with a null estimate a pipeline would take as complete.

    Parameters
    ----------
    result : AnalysisOutput
        The analysis to publish.
    refuse_unreliable : bool
        Whether the run was ``--refuse-unreliable``.

    Raises
    ------
    NullEstimateError
        One line naming the policy and why.
    """
    import math

    for name in result.target_policies:
        r = result.policies[name]
        values = (r.estimate, r.se, r.ci_lower, r.ci_upper)
        if all(v is not None and math.isfinite(v) for v in values):
            continue
        if refuse_unreliable and not r.reliable and r.estimate is None:
            continue
        why = "; ".join(r.reasons) if r.reasons else "the estimator returned no finite value"
        hint = ("" if refuse_unreliable else
                "; pass --refuse-unreliable to publish the other policies with this one withheld")
        raise NullEstimateError(f"no finite estimate for policy '{name}' ({why}); nothing written{hint}")


def _staged_bytes(result: AnalysisOutput) -> dict[str, bytes]:
    payload = result.to_dict()
    validate_estimates(payload)
    files = {"estimates.json": (json.dumps(payload, indent=2, allow_nan=False) + "\n").encode("utf-8"),
             "estimates.csv": result.to_csv().encode("utf-8")}
    if result.plot_data is not None:
        buffer = io.BytesIO()
        result.plot_data.save_to(buffer)
        files["plot_data.npz"] = buffer.getvalue()
    return files


def _write_staged(path: Path, data: bytes) -> None:
    with open(path, "xb") as handle:  # a fresh name in a private folder: nobody else writes it
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def publish_analysis(result: AnalysisOutput, output_dir: str | Path, render: Renderer | None = None,
                     refuse_unreliable: bool = False) -> dict[str, Path]:
    """Write the output set of ``result`` into ``output_dir`` as one transaction.

    Members the new set lacks are removed (no stale dashboard). The commit is ordered after
    every commit visible in the folder (see the module docstring), so it supersedes journals
    left by writers killed on any host; superseded staging folders are deleted afterwards.

    Parameters
    ----------
    result : AnalysisOutput
        The analysis (validated against the estimates.json schema first).
    output_dir : str or Path
        The output folder (created when missing).
    render : Renderer or None, default=None
        The renderer of ``plots/`` (PNGs and the dashboard: :func:`cje.viz.render_analysis_plots`);
        None writes no plots and removes an earlier run's.
    refuse_unreliable : bool, default=False
        Whether the run was ``--refuse-unreliable`` (:func:`check_no_silent_nulls`).

    Returns
    -------
    dict
        ``{"json", "csv"[, "plot_data"][, "plots" (list of PNGs), "dashboard"]}`` -> final paths.

    Raises
    ------
    OutputError
        The folder cannot be written, something is in the way of publication or a journal
        is broken (:func:`check_output_dir`); the previous set is then untouched and nothing
        new is left behind.
    NullEstimateError
        A target has no finite estimate (:func:`check_no_silent_nulls`).
    jsonschema.ValidationError
        The payload breaks the estimates.json schema (before anything touches the folder).
    """
    check_no_silent_nulls(result, refuse_unreliable)
    plots = render is not None
    out = Path(check_output_dir(output_dir))
    files = _staged_bytes(result)  # schema validation fails before anything touches the folder
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot write ({exc.strerror})", path=_show(out)) from None
    recover(out)
    _check_members(out)
    try:
        staging = out / temp_name(_STAGING, suffix="")
        staging.mkdir()
    except OSError as exc:
        raise OutputError(f"cannot write ({exc.strerror})", path=_show(out)) from None
    writing = out
    try:
        for name, data in files.items():
            writing = out / name
            _write_staged(staging / f"{name}.new", data)
        rendered: list[Path] = []
        if plots:
            writing = out / "plots"
            rendered = render(result.to_dict(), result.plot_data, staging / "plots.new")
            fsync_directory(staging / "plots.new")
        fsync_directory(staging)
        replace = tuple(n for n in _ORDER if n in files or (n == "plots" and plots))
        remove = tuple(n for n in SET_MEMBERS if n not in replace)
        key = _next_key(out)
        journal = _Journal(key, replace, remove, legacy=False)
        atomic_write_text(staging / _JOURNAL, json.dumps(
            {"seq": key[0], "id": key[1], "replace": list(replace), "remove": list(remove),
             "committed_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
             "host_pid": staging.name[len(f".{_STAGING}."):].rsplit(".", 1)[0]}) + "\n")
    except BaseException as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EDQUOT):
            raise OutputError(f"cannot write ({exc.strerror})", path=_show(out)) from None
        too_large = file_too_large(_show(writing), exc)  # past `ulimit -f`: name the member
        if too_large is not None:
            raise too_large from None
        raise
    _apply(out, staging, journal)  # past the commit point: a failure here is finished by recover()
    try:
        _recover(out, strict=False)  # delete what this commit superseded (journals of killed writers)
    except OutputError:
        pass  # published; what is in the way is reported by the next run
    paths = {"json": out / "estimates.json", "csv": out / "estimates.csv"}
    if "plot_data.npz" in files:
        paths["plot_data"] = out / "plot_data.npz"
    if plots:
        moved = [out / "plots" / p.name for p in rendered]
        paths["plots"] = [p for p in moved if p.suffix == ".png"]
        paths["dashboard"] = next(p for p in moved if p.suffix == ".html")
    return paths


def read_estimates(path: str | Path) -> dict:
    """Read and validate an estimates.json file (or the output folder holding it).

    Honours an unfinished publication (:func:`current_set`): while a
    new set is being moved into place, the new estimates.json is read from its
    staging folder, so a reader never pairs it with the other set's files, and a
    journal older than the published set is never read.

    Parameters
    ----------
    path : str or Path
        An estimates.json file, or its folder.

    Returns
    -------
    dict
        The payload.

    Raises
    ------
    FileNotFoundError
        No estimates.json is published there.
    InputError
        The file is not JSON (an estimates.csv, say), not UTF-8 text or cannot be read;
        one line naming it.
    jsonschema.ValidationError
        The file breaks the estimates.json schema.
    """
    path = Path(path)
    folder, name = (path, "estimates.json") if path.is_dir() else (path.parent, path.name)
    for attempt in range(3):  # a publisher may move the staged file between lookup and open
        target = current_set(folder).get("estimates.json") if name == "estimates.json" else path
        try:
            if target is None:
                raise FileNotFoundError(str(folder / name))
            text = Path(target).read_bytes().decode("utf-8")
            payload = json.loads(text)
            break
        except FileNotFoundError:
            if attempt == 2:
                raise
        except UnicodeDecodeError:
            raise InputError("not an estimates.json: not UTF-8 text", path=_show(folder / name)) from None
        except json.JSONDecodeError as exc:
            raise InputError(f"not an estimates.json: {json_error_text(exc, line=True)}",
                             path=_show(folder / name)) from None
        except OSError as exc:
            raise InputError(f"cannot read ({exc.strerror})", path=_show(folder / name)) from None
    validate_estimates(payload)
    return payload

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
   point. Before it exists the old set is untouched; once it exists the new set
   is the published one;
3. each member is renamed into place (a member the new set lacks, such as an
   earlier run's ``plots/`` on a rerun without ``--plots``, is moved out), the
   output folder is fsync-ed and the staging folder deleted.

A kill before step 2 leaves the old set; a kill during step 3 leaves the journal,
and :func:`recover` (run at the start of every publication and by
:func:`check_output_dir` when ``cje analyze`` starts) finishes the renames.
Readers honour an unfinished transaction through :func:`current_set`, which
returns the staged file for every member not yet moved; :func:`read_estimates`
uses it. Staging folders of killed writers (pid gone, same host) are removed or
rolled forward on start; those of a live writer are left alone.

Why a journal rather than a completion marker: a marker written last can say
that a set is incomplete, but after a kill mid-way neither the old nor the new
set would be complete. With the journal one of them always is.
"""

from __future__ import annotations

import errno
import io
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

from cje.atomic import atomic_write_text, fsync_directory, is_stale_temp, remove_stale_temps, temp_name
from cje.errors import NullEstimateError, OutputError
from cje.results.model import AnalysisOutput, PlotData, validate_estimates

# Renders the plots/ folder of one analysis: (estimates.json payload, plot arrays, folder) -> written
# paths (PNGs, then the dashboard). The viz layer provides it (cje.viz.render_analysis_plots); it is
# passed in so that the results layer never imports the layer that draws.
Renderer = Callable[[dict, "PlotData | None", Path], "list[Path]"]

__all__ = ["SET_MEMBERS", "publish_analysis", "check_output_dir", "recover", "current_set", "read_estimates",
           "check_no_silent_nulls"]

SET_MEMBERS = ("estimates.json", "estimates.csv", "plot_data.npz", "plots")
_STAGING = "cje-publish"          # staging folders are temp_name(_STAGING, suffix="")
_JOURNAL = "journal.json"
_ORDER = ("plots", "plot_data.npz", "estimates.csv", "estimates.json")  # estimates.json moves last


def _staging_dirs(out: Path) -> list[Path]:
    try:
        entries = sorted(os.listdir(out))
    except OSError:
        return []
    return [out / e for e in entries if e.startswith(f".{_STAGING}.") and (out / e).is_dir()]


def _is_ours_or_live(staging: Path) -> bool:
    """True when the writer that owns ``staging`` may still be running (it is us, it is
    alive on this host, or it ran on another host, where we cannot tell)."""
    return not is_stale_temp(staging.name, _STAGING, suffix="")


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_staged(path: Path, data: bytes) -> None:
    with open(path, "xb") as handle:  # a fresh name in a private folder: nobody else writes it
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _apply(out: Path, staging: Path) -> None:
    """Step 3: move the staged members into place as the journal says (idempotent)."""
    journal = json.loads((staging / _JOURNAL).read_text(encoding="utf-8"))
    for name in journal["replace"]:
        src, dst, old = staging / f"{name}.new", out / name, staging / f"{name}.old"
        if not os.path.lexists(src):
            continue  # moved before a crash
        if dst.is_dir() and not dst.is_symlink():
            if os.path.lexists(old):
                shutil.rmtree(old)
            os.rename(dst, old)  # a folder cannot be replaced by rename: move the old one out first
        os.replace(src, dst)
    for name in journal["remove"]:
        dst = out / name
        if os.path.lexists(dst):
            old = staging / f"{name}.old"
            if os.path.lexists(old):
                shutil.rmtree(old) if old.is_dir() else old.unlink()
            os.rename(dst, old)
    fsync_directory(out)
    shutil.rmtree(staging)
    fsync_directory(out)


def recover(out: str | Path) -> int:
    """Finish or discard the transactions killed writers left in ``out``; return how many.

    A staging folder with a journal is rolled forward (the new set was committed);
    one without is deleted (the old set was never touched). Folders of a writer that
    may still be running are left alone. Stale temporaries of per-file atomic writes
    of the set's members are removed too.

    Parameters
    ----------
    out : str or Path
        An output folder.

    Returns
    -------
    int
        The number of staging folders and stale temporaries dealt with.
    """
    out = Path(out)
    done = 0
    for name in SET_MEMBERS:  # temporaries of per-file atomic writes killed mid-way (older versions too)
        done += remove_stale_temps(out, name)
    for staging in _staging_dirs(out):
        if _is_ours_or_live(staging):
            continue
        if (staging / _JOURNAL).exists():
            _apply(out, staging)
        else:
            shutil.rmtree(staging, ignore_errors=True)
            fsync_directory(out)
        done += 1
    return done


def current_set(out: str | Path) -> dict[str, Path | None]:
    """The published set of ``out`` as a reader must see it: {member: path or None}.

    Without an unfinished transaction that is ``out/member`` (None when absent).
    While a committed transaction is being applied (or was killed while applying),
    a member not yet moved is read from the staging folder, and a member the new
    set drops is None. Read-only: safe for readers without write permission.

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
    committed = [s for s in _staging_dirs(out) if (s / _JOURNAL).exists()]
    journal, staging = ({"replace": [], "remove": []}, None)
    if committed:
        staging = max(committed, key=lambda s: (s / _JOURNAL).stat().st_mtime_ns)
        try:
            journal = json.loads((staging / _JOURNAL).read_text(encoding="utf-8"))
        except (OSError, ValueError):  # finished and deleted meanwhile
            staging = None
    found: dict[str, Path | None] = {}
    for name in SET_MEMBERS:
        staged = staging / f"{name}.new" if staging is not None else None
        if staged is not None and name in journal["replace"] and os.path.lexists(staged):
            found[name] = staged
        elif staging is not None and name in journal["remove"]:
            found[name] = None
        else:
            found[name] = out / name if os.path.lexists(out / name) else None
    return found


def check_output_dir(out: str | Path) -> Path:
    """Fail fast (before any analysis) when ``out`` cannot take the results; clean it.

    Then :func:`recover` finishes or removes what killed runs left. Creates nothing.

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
        One line, exit 2: ``out`` or a parent is a file, or the folder (or, when it does not
        exist yet, its nearest existing parent) is not writable.
    """
    out = Path(out)
    probe = out
    while not os.path.lexists(probe):
        if probe.parent == probe:
            break
        probe = probe.parent
    if os.path.lexists(probe) and not probe.is_dir():
        what = "is a file" if probe == out else f"cannot be created: {probe} is a file"
        raise OutputError(what, path=str(out))
    try:
        fd, tmp = tempfile.mkstemp(dir=probe, prefix=temp_name("cje-write-probe", suffix=""))
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        where = "" if probe == out else f" ({probe} is where it would be created)"
        raise OutputError(f"not writable: {exc.strerror}{where}", path=str(out)) from None
    if probe == out:
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


def publish_analysis(result: AnalysisOutput, output_dir: str | Path, render: Renderer | None = None,
                     refuse_unreliable: bool = False) -> dict[str, Path]:
    """Write the output set of ``result`` into ``output_dir`` as one transaction.

    Members the new set lacks are removed (no stale dashboard).

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
        The folder cannot be written; the previous set is then untouched and nothing new is
        left behind.
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
        recover(out)
        staging = out / temp_name(_STAGING, suffix="")
        staging.mkdir()
    except OSError as exc:
        raise OutputError(f"cannot write ({exc.strerror})", path=str(out)) from None
    try:
        for name, data in files.items():
            _write_staged(staging / f"{name}.new", data)
        rendered: list[Path] = []
        if plots:
            rendered = render(result.to_dict(), result.plot_data, staging / "plots.new")
            fsync_directory(staging / "plots.new")
        fsync_directory(staging)
        replace = [n for n in _ORDER if n in files or (n == "plots" and plots)]
        remove = [n for n in SET_MEMBERS if n not in replace]
        atomic_write_text(staging / _JOURNAL, json.dumps({"replace": replace, "remove": remove}) + "\n")
    except BaseException as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EDQUOT):
            raise OutputError(f"cannot write ({exc.strerror})", path=str(out)) from None
        raise
    _apply(out, staging)  # past the commit point: a failure here is finished by recover()
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
    staging folder, so a reader never pairs it with the other set's files.

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
            payload = json.loads(Path(target).read_text(encoding="utf-8"))
            break
        except FileNotFoundError:
            if attempt == 2:
                raise
    validate_estimates(payload)
    return payload

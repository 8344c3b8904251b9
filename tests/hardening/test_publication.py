"""Issue 19.1: publication that is safe on shared filesystems, through the real ``cje analyze``.

The output folder is attacked the way a SLURM / Kubernetes rerun on another node, a broken
disk or a user meets it: staging folders left by writers killed on another host, journals
naming paths outside the folder, garbage journals, and things in the way of publication
(a ``plots`` that is a symlink, a file or a folder this user cannot move). Each must end
in exit 0 with the new set as every reader sees it, or in one ``cje analyze: error:``
line naming the path and what to do (exit 2), with nothing outside the output folder
touched and the next run after the fix publishing normally.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from hardlib import analyze_argv, assert_one_line_error, is_root, rows, run_cli, write_fresh, write_jsonl

import cje
from cje.atomic import temp_name
from cje.errors import InputError
from cje.results.files import MARKER, SET_MEMBERS, STALE_AFTER_S, current_set, read_estimates

HOUR_AGO = time.time() - 3600
FILES = ("estimates.json", "estimates.csv", "plot_data.npz")


@pytest.fixture
def work(tmp_path) -> Path:
    """A data set, fresh draws, files outside the output folder that must never move."""
    write_jsonl(tmp_path / "logged.jsonl", rows())
    write_fresh(tmp_path / "fresh")
    (tmp_path / "precious.txt").write_text("keep me\n")
    (tmp_path / "preciousdir").mkdir()
    (tmp_path / "preciousdir" / "notes.txt").write_text("keep me too\n")
    return tmp_path


def _analyze(work: Path, out: Path, capsys, estimator: str = "calibrated-ips", *extra) -> tuple[int, str]:
    argv = analyze_argv(work / "logged.jsonl", out, *extra, estimator=estimator)
    if estimator == "direct":
        argv += ["--fresh-draws-dir", str(work / "fresh")]
    code, _, err = run_cli(argv, capsys)
    return code, err


def _outside(work: Path, out: Path) -> dict[str, bytes | str]:
    """Every path under ``work`` but the output folder, with its content (or kind)."""
    found: dict[str, bytes | str] = {}
    for path in sorted(work.rglob("*")):
        if path == out or out in path.parents:
            continue
        if path.is_symlink():
            found[str(path)] = "link:" + os.readlink(path)
        elif path.is_file():
            found[str(path)] = path.read_bytes()
        else:
            found[str(path)] = "dir"
    return found


def _estimator(out: Path) -> str:
    return cje.load_result(out).payload["metadata"]["estimator"]


def _plant_staging(out: Path, source: Path, journal: dict | str | bytes | None, host: str = "otherhost",
                   pid: int = 4242, age: float | None = HOUR_AGO) -> Path:
    """A staging folder as a writer killed after staging ``source``'s files left it."""
    if host == "this":
        name = temp_name("cje-publish", suffix="").replace(f".{os.getpid()}.", f".{pid}.")
    else:
        name = f".cje-publish.{host}.{pid}.0123456789ab"
    staging = out / name
    staging.mkdir()
    for member in FILES:
        shutil.copyfile(source / member, staging / f"{member}.new")
    if journal is not None:
        data = journal if isinstance(journal, (str, bytes)) else json.dumps(journal)
        (staging / "journal.json").write_bytes(data.encode() if isinstance(data, str) else data)
    if age is not None:
        _age(staging, age)
    return staging


def _age(staging: Path, when: float = HOUR_AGO) -> None:
    """Make ``staging`` look untouched since ``when``."""
    for path in [*staging.iterdir(), staging]:
        os.utime(path, (when, when), follow_symlinks=False)


LEGACY = {"replace": ["plot_data.npz", "estimates.csv", "estimates.json"], "remove": ["plots"]}


@pytest.fixture
def old_set(work, capsys) -> Path:
    """A calibrated-ips set published in a folder of its own (the 'old' set planted below)."""
    old = work / "old"
    assert _analyze(work, old, capsys)[0] == 0
    return old


# --- 1. a stale journal from another host never wins -------------------------------------------
@pytest.mark.parametrize("journal", ["legacy", "keyed-older"])
@pytest.mark.parametrize("age", ["fresh", "hour-old"])
@pytest.mark.parametrize("marker", [True, False])
def test_a_stale_foreign_journal_is_superseded_by_the_next_run(work, old_set, capsys, journal, age, marker):
    out = work / "out"
    assert _analyze(work, out, capsys, "raw-ips")[0] == 0
    if not marker:  # a folder published before markers existed
        (out / MARKER).unlink()
    plan = dict(LEGACY) if journal == "legacy" else {**LEGACY, "seq": 1, "id": "0"}
    staging = _plant_staging(out, old_set, plan, age=HOUR_AGO if age == "hour-old" else None)
    if marker:  # the published set's marker is newer than the planted journal: readers ignore it
        assert _estimator(out) == "raw-ips"
    outside = _outside(work, out)
    code, err = _analyze(work, out, capsys, "direct")
    assert code == 0, err
    assert _estimator(out) == "direct"
    assert read_estimates(out)["metadata"]["estimator"] == "direct"
    assert current_set(out) == {m: (out / m if m != "plots" else None) for m in SET_MEMBERS}
    assert not staging.exists()
    assert _outside(work, out) == outside
    code, _, err = run_cli(["summarize", "--inputs", str(out / "estimates.json"), "--output",
                            str(work / "summary.csv")], capsys)
    assert code == 0, err
    with open(work / "summary.csv", newline="") as fh:
        assert {r["estimator"] for r in csv.DictReader(fh)} == {"direct"}


def test_the_issue_attack_through_a_subprocess(work, old_set):
    """The exact report: staging of a job killed on another node, then `cje analyze --estimator direct`."""
    out = work / "out"
    shutil.copytree(old_set, out)
    _plant_staging(out, old_set, LEGACY, host="node17", pid=31337, age=None)
    proc = subprocess.run([sys.executable, "-m", "cje", "analyze", "--data", str(work / "logged.jsonl"),
                           "--fresh-draws-dir", str(work / "fresh"), "--estimator", "direct",
                           "--output-dir", str(out)], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert proc.returncode == 0, proc.stderr
    check = subprocess.run([sys.executable, "-c", "import cje, sys; "
                            "print(cje.load_result(sys.argv[1]).payload['metadata']['estimator'])", str(out)],
                           capture_output=True, text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert check.stdout.strip() == "direct", check.stderr
    assert sorted(os.listdir(out)) == [MARKER, *sorted(FILES)]


def test_a_newer_commit_of_a_writer_gone_elsewhere_is_rolled_forward(work, old_set, capsys):
    """Committed after the published set, its writer silent for an hour: it is the published set for
    readers at once, and the next run (even one that fails) finishes it before anything else."""
    out = work / "out"
    assert _analyze(work, out, capsys, "raw-ips")[0] == 0
    published = json.loads((out / MARKER).read_text())["seq"]
    staging = _plant_staging(out, old_set, {**LEGACY, "seq": published + 1, "id": "f00d"})
    assert _estimator(out) == "calibrated-ips"  # the newer commit is what readers see
    bad = write_jsonl(work / "bad.jsonl", rows(), raw_lines={2: "{oops"})
    code, _, err = run_cli(analyze_argv(bad, out), capsys)
    assert_one_line_error(code, err, "bad.jsonl:3")
    assert not staging.exists()
    assert json.loads((out / MARKER).read_text())["seq"] == published + 1
    assert (out / "estimates.json").read_bytes() == (old_set / "estimates.json").read_bytes()
    assert _analyze(work, out, capsys, "direct")[0] == 0
    assert _estimator(out) == "direct" and json.loads((out / MARKER).read_text())["seq"] == published + 2


def test_a_live_writer_elsewhere_is_left_alone_but_a_later_commit_wins(work, old_set, capsys):
    """A fresh staging folder of another host may belong to a running job: it is not rolled forward
    or deleted while uncommitted; a committed one is superseded by the later commit of this run."""
    out = work / "out"
    assert _analyze(work, out, capsys, "raw-ips")[0] == 0
    seq = json.loads((out / MARKER).read_text())["seq"]
    committed = _plant_staging(out, old_set, {**LEGACY, "seq": seq + 5, "id": "aa"}, host="nodeA", age=None)
    uncommitted = _plant_staging(out, old_set, None, host="nodeB", age=None)
    gone = _plant_staging(out, old_set, None, host="nodeC", age=time.time() - STALE_AFTER_S - 60)
    assert _estimator(out) == "calibrated-ips"
    assert _analyze(work, out, capsys, "direct")[0] == 0
    assert _estimator(out) == "direct"
    assert json.loads((out / MARKER).read_text())["seq"] == seq + 6
    assert not committed.exists() and uncommitted.exists() and not gone.exists()


def test_a_dead_writer_on_this_host_is_recovered_at_once(work, old_set, capsys):
    out = work / "out"
    assert _analyze(work, out, capsys, "raw-ips")[0] == 0
    seq = json.loads((out / MARKER).read_text())["seq"]
    staging = _plant_staging(out, old_set, {**LEGACY, "seq": seq + 1, "id": "bb"}, host="this", pid=999999999,
                             age=None)
    code, _, err = run_cli(analyze_argv(work / "missing.jsonl", out), capsys)
    assert_one_line_error(code, err, "missing.jsonl")
    assert not staging.exists() and (out / "estimates.json").read_bytes() == (old_set / "estimates.json").read_bytes()


# --- 2. journal members are the set's own names, nothing else -----------------------------------
@pytest.mark.parametrize("plan, needle", [
    ({"replace": [], "remove": ["../precious.txt", "../preciousdir"]}, "lists '../precious.txt'"),
    ({**LEGACY, "remove": ["plots", "../precious.txt"]}, "lists '../precious.txt'"),
    ({**LEGACY, "replace": ["../precious.txt", *LEGACY["replace"]]}, "lists '../precious.txt'"),
    ({**LEGACY, "remove": ["plots", "ABSOLUTE"]}, "which is not a member of the set"),
    ({**LEGACY, "remove": ["plots", "notes.txt"]}, "lists 'notes.txt'"),
    ({**LEGACY, "remove": ["plots", "plots/../../precious.txt"]}, "lists 'plots/../../precious.txt'"),
    ({**LEGACY, "remove": ["plots", "plots"]}, "lists a member twice"),
    ({**LEGACY, "remove": []}, "does not account for every member"),
    ({**LEGACY, "remove": "plots"}, "field 'remove' is not a list of names"),
    ({"replace": ["plots"], "remove": ["estimates.json", "estimates.csv", "plot_data.npz"]},
     "does not publish estimates.json"),
    ({**LEGACY, "seq": "7", "id": "x"}, "no valid 'seq'"),
    ({**LEGACY, "seq": True, "id": "x"}, "no valid 'seq'"),
    ({**LEGACY, "seq": 3, "id": "../x"}, "no valid 'id'"),
])
@pytest.mark.parametrize("host", ["this", "otherhost"])
def test_a_journal_naming_anything_but_set_members_is_refused(work, old_set, capsys, plan, needle, host):
    out = work / "out"
    assert _analyze(work, out, capsys, "raw-ips")[0] == 0
    plan = json.loads(json.dumps(plan).replace("ABSOLUTE", str(work / "precious.txt")))
    staging = _plant_staging(out, old_set, plan, host=host, pid=999999999)
    outside, inside = _outside(work, out), sorted(os.listdir(out))
    assert _estimator(out) == "raw-ips"  # readers ignore a broken journal
    for extra in ([], ["--plots"]):
        code, err = _analyze(work, out, capsys, "direct", *extra)
        assert_one_line_error(code, err, f"output folder {out}: broken publication journal in {staging}: ", needle,
                              "delete that folder and run again")
        assert _outside(work, out) == outside and sorted(os.listdir(out)) == inside
    shutil.rmtree(staging)  # what the message says
    assert _analyze(work, out, capsys, "direct")[0] == 0 and _estimator(out) == "direct"
    assert _outside(work, out) == outside


@pytest.mark.parametrize("content, needle", [
    (b"", "journal.json is empty"), (b"  \n", "journal.json is empty"), (b"{", "journal.json is not valid JSON"),
    (b"null", "journal.json is not a JSON object"), (b"[]", "journal.json is not a JSON object"),
    (b"\xff\xfe\x00garbage", "journal.json is not UTF-8 text"),
    (b" " * 70_000 + b"{}", "journal.json is 70,002 bytes, not a journal cje wrote"),
    ("dir", "journal.json is a folder, not a file"), ("symlink", "journal.json is a symbolic link to a file"),
])
def test_a_garbage_journal_is_one_line_and_never_wedges(work, old_set, capsys, content, needle):
    out = work / "out"
    assert _analyze(work, out, capsys, "raw-ips")[0] == 0
    staging = _plant_staging(out, old_set, None, host="this", pid=999999999)
    if content == "dir":
        (staging / "journal.json").mkdir()
    elif content == "symlink":  # a valid journal, but outside the staging folder
        (work / "journal.json").write_text(json.dumps({"replace": [], "remove": ["../precious.txt"]}))
        os.symlink(work / "journal.json", staging / "journal.json")
    else:
        (staging / "journal.json").write_bytes(content)
    outside = _outside(work, out)
    code, err = _analyze(work, out, capsys, "direct")
    assert_one_line_error(code, err, f"broken publication journal in {staging}: {needle}", "delete that folder")
    assert _estimator(out) == "raw-ips" and _outside(work, out) == outside
    shutil.rmtree(staging)
    assert _analyze(work, out, capsys, "direct")[0] == 0 and _estimator(out) == "direct"


@pytest.mark.parametrize("damage, needle", [
    ("missing", "the staged estimates.csv.new is missing"),
    ("symlink", "the staged estimates.json.new is a symbolic link to a file"),
    ("folder", "the staged plot_data.npz.new is a folder"),
    ("plots-symlink", "the staged plots.new is a symbolic link to a folder"),
])
def test_staged_members_of_the_wrong_kind_are_never_rolled_forward(work, old_set, capsys, damage, needle):
    out = work / "out"
    assert _analyze(work, out, capsys, "raw-ips")[0] == 0
    seq = json.loads((out / MARKER).read_text())["seq"]
    plan = {"replace": ["plots", *LEGACY["replace"]], "remove": [], "seq": seq + 1, "id": "cc"}
    staging = _plant_staging(out, old_set, plan)
    (staging / "plots.new").mkdir()
    if damage == "missing":
        (staging / "estimates.csv.new").unlink()
    elif damage == "symlink":
        (staging / "estimates.json.new").unlink()
        os.symlink(work / "precious.txt", staging / "estimates.json.new")
    elif damage == "folder":
        (staging / "plot_data.npz.new").unlink()
        (staging / "plot_data.npz.new").mkdir()
    else:
        (staging / "plots.new").rmdir()
        os.symlink(work / "preciousdir", staging / "plots.new")
    _age(staging)  # its writer has been silent for an hour
    outside = _outside(work, out)
    if damage != "missing":  # readers never follow it (a missing member is read from the folder)
        assert _estimator(out) == "raw-ips"
    code, err = _analyze(work, out, capsys, "direct")
    assert_one_line_error(code, err, f"broken publication journal in {staging}: {needle}")
    assert _outside(work, out) == outside
    shutil.rmtree(staging)
    assert _analyze(work, out, capsys, "direct")[0] == 0 and _estimator(out) == "direct"
    assert _outside(work, out) == outside


def test_a_staging_folder_that_is_a_symlink_is_never_followed(work, old_set, capsys):
    """`.cje-publish.*` pointing outside the folder, holding a journal that would move outside files."""
    out = work / "out"
    assert _analyze(work, out, capsys, "raw-ips")[0] == 0
    elsewhere = work / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "journal.json").write_text(json.dumps({**LEGACY, "seq": 99, "id": "dd"}))
    for member in FILES:
        shutil.copyfile(old_set / member, elsewhere / f"{member}.new")
    link = out / ".cje-publish.otherhost.1.0123456789ab"
    os.symlink(elsewhere, link)
    outside = _outside(work, out)
    assert _estimator(out) == "raw-ips"
    assert _analyze(work, out, capsys, "direct")[0] == 0
    assert _estimator(out) == "direct" and _outside(work, out) == outside


# --- 3. what stands in the way is one line, and never wedges the folder ---------------------------
@pytest.mark.parametrize("obstacle, needle", [
    ("plots-symlink", "plots is a symbolic link to a folder ("),
    ("plots-file", "plots is a file, not the plots folder cje writes"),
    ("plots-dangling", "plots is a dangling symlink to "),
    ("json-folder", "estimates.json is a folder, not a file cje writes"),
    ("csv-symlink", "estimates.csv is a symbolic link to a file ("),
    ("marker-folder", f"{MARKER} is a folder, not the marker cje writes"),
])
@pytest.mark.parametrize("plots", [False, True])
def test_something_in_the_way_is_one_line_naming_it(work, capsys, obstacle, needle, plots):
    out = work / "out"
    assert _analyze(work, out, capsys, "raw-ips")[0] == 0
    target = {"plots-symlink": "plots", "plots-file": "plots", "plots-dangling": "plots",
              "json-folder": "estimates.json", "csv-symlink": "estimates.csv", "marker-folder": MARKER}[obstacle]
    path = out / target
    if path.exists():
        path.unlink()
    if obstacle == "plots-symlink":
        os.symlink(work / "preciousdir", path)
    elif obstacle == "plots-file":
        path.write_text("my notes\n")
    elif obstacle == "plots-dangling":
        os.symlink(work / "nowhere", path)
    elif obstacle == "csv-symlink":
        os.symlink(work / "precious.txt", path)
    else:
        path.mkdir()
        (path / "keep").write_text("x")
    outside, inside = _outside(work, out), sorted(os.listdir(out))
    code, err = _analyze(work, out, capsys, "direct", *(["--plots"] if plots else []))
    assert_one_line_error(code, err, f"output folder {out}: {path} ", needle)
    assert ("remove the link" in err) if os.path.islink(path) else ("move it away" in err or "remove it" in err)
    assert _outside(work, out) == outside and sorted(os.listdir(out)) == inside
    assert not [e for e in os.listdir(out) if e.startswith(".cje-publish.")]
    # the user moves it away; the next run publishes (without --plots, to stay fast)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()
    code, err = _analyze(work, out, capsys, "direct")
    assert code == 0, err
    assert _estimator(out) == "direct" and _outside(work, out) == outside


def _as_nobody() -> tuple[int, int, list[str], str] | None:
    """(uid, gid, interpreter, PYTHONPATH) to run cje as 'nobody', or None when this machine has no
    interpreter that user may run (this one may live under /root) with the same Python version."""
    import pwd
    import sysconfig

    try:
        entry = pwd.getpwnam("nobody")
    except KeyError:
        return None
    repo = str(Path(cje.__file__).resolve().parents[1])
    path = os.pathsep.join([repo, sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for candidate in dict.fromkeys([sys.executable, os.path.realpath(sys.executable), shutil.which(version),
                                    f"/usr/bin/{version}", f"/usr/local/bin/{version}"]):
        if not candidate or not os.path.exists(candidate):
            continue
        try:
            probe = subprocess.run([candidate, "-c", "import numpy, polars, jsonschema, cje.cli"], capture_output=True,
                                   env={"PYTHONPATH": path, "PATH": os.environ.get("PATH", "")}, cwd="/",
                                   user=entry.pw_uid, group=entry.pw_gid, extra_groups=[], timeout=60)
        except OSError:
            continue
        if probe.returncode == 0:
            return entry.pw_uid, entry.pw_gid, [candidate], path
    return None


def test_plots_this_user_cannot_move_is_one_line(tmp_path):
    """A plots/ owned by another user (mode 0755): moving it needs write permission on it.

    As root (permissions do not apply to root) the CLI runs as 'nobody' against a plots/
    owned by root; as another user, a plots/ of mode 0555 has the same effect."""
    if is_root():
        nobody = _as_nobody()
        if nobody is None:
            pytest.skip("as root this needs an interpreter the 'nobody' user can run (same Python version)")
        uid, gid, python, pythonpath = nobody
        base = Path(tempfile.mkdtemp(prefix="cje-owner-", dir="/tmp"))
        os.chmod(base, 0o755)
    else:
        uid = gid = None
        python, pythonpath = [sys.executable], os.pathsep.join(sys.path)
        base = tmp_path
    try:
        work = base / "w"
        work.mkdir()
        write_jsonl(work / "logged.jsonl", rows())
        out = work / "out"
        out.mkdir()
        if uid is not None:
            for path in (work, out, work / "logged.jsonl"):
                os.chown(path, uid, gid)
        env = {"PYTHONPATH": pythonpath, "PATH": os.environ.get("PATH", ""), "MPLCONFIGDIR": str(work / "mpl"),
               "HOME": str(work)}
        argv = [*python, "-m", "cje", "analyze", "--data", str(work / "logged.jsonl"),
                "--estimator", "raw-ips", "--output-dir", str(out)]

        def run(*extra):
            switch = {} if uid is None else {"user": uid, "group": gid, "extra_groups": []}
            return subprocess.run(argv + list(extra), capture_output=True, text=True, env=env, cwd=work, **switch)

        first = run()
        assert first.returncode == 0, first.stderr
        plots = out / "plots"
        plots.mkdir()
        (plots / "theirs.png").write_bytes(b"png")
        plots.chmod(0o555 if uid is None else 0o755)  # root's 0755 is not writable by nobody
        before = sorted(os.listdir(out))
        for extra in ([], ["--plots"]):
            proc = run(*extra)
            assert proc.returncode == 2, proc.stderr
            lines = proc.stderr.strip().splitlines()
            assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
            assert lines[0].startswith(f"cje analyze: error: output folder {out}: {plots} cannot be replaced: "
                                       "this user may not change it (owned by uid "), lines[0]
            assert f"remove {plots} (or ask its owner to) or use another output folder" in lines[0]
            assert sorted(os.listdir(out)) == before and (plots / "theirs.png").exists()
        # the owner hands it over: the next run publishes (and, without --plots, removes it)
        if uid is None:
            plots.chmod(0o755)
        else:
            for path in (plots, plots / "theirs.png"):
                os.chown(path, uid, gid)
        proc = run()
        assert proc.returncode == 0, proc.stderr
        assert not plots.exists()
    finally:
        if uid is not None:
            shutil.rmtree(base, ignore_errors=True)


# --- 4. smaller edges --------------------------------------------------------------------------
def test_a_dangling_output_symlink_is_called_one(work, capsys):
    link = work / "results"
    os.symlink(work / "gone", link)
    code, err = _analyze(work, link, capsys)
    assert_one_line_error(code, err, f"output folder {link}: is a dangling symlink to {work / 'gone'}, not a folder: "
                                     "create the folder it points to or remove the link")
    assert "a file" not in err
    code, err = _analyze(work, link / "sub", capsys)
    assert_one_line_error(code, err, f"output folder {link / 'sub'}: cannot be created: {link} is a dangling symlink")
    (work / "gone").mkdir()  # the fix the message names
    assert _analyze(work, link, capsys)[0] == 0


def test_load_result_of_a_csv_or_a_broken_npz_is_an_input_error(work, capsys):
    out = work / "out"
    assert _analyze(work, out, capsys)[0] == 0
    with pytest.raises(InputError) as info:
        cje.load_result(out / "estimates.csv")
    assert str(info.value).startswith(f"{out / 'estimates.csv'}: not an estimates.json: malformed JSON (")
    with pytest.raises(InputError, match="not UTF-8 text"):
        cje.load_result(out / "plot_data.npz")
    (out / "plot_data.npz").write_bytes(b"not a zip")
    with pytest.raises(InputError) as info:
        cje.load_result(out)
    assert str(info.value).startswith(f"{out / 'plot_data.npz'}: not a plot_data.npz written by cje")


def test_a_commit_superseded_while_applying_stops(work, old_set, capsys):
    """Two writers that could not see each other: the one whose key is lower stops before its next
    rename once the other's marker is in place, and leaves nothing behind."""
    from cje.results import files

    out = work / "out"
    assert _analyze(work, out, capsys, "raw-ips")[0] == 0
    seq = json.loads((out / MARKER).read_text())["seq"]
    staging = _plant_staging(out, old_set, {**LEGACY, "seq": seq + 1, "id": "aaaa"}, age=None)
    journal = files._parse_journal(staging)
    files._write_marker(out, (seq + 1, "ffff"), tuple(LEGACY["replace"]))  # the other writer got there first
    before = {m: (out / m).read_bytes() for m in FILES}
    assert files._apply(out, staging, journal) is False
    assert not staging.exists() and {m: (out / m).read_bytes() for m in FILES} == before
    assert current_set(out)["estimates.json"] == out / "estimates.json"

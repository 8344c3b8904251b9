"""A seeded generator of damaged publication folders for the fuzz test (issue 19.1).

Each case starts from an output folder holding one published set (with or without its
marker) and plants one to three things drawn from the families below: staging folders of
writers on this host (dead or alive) or on another one (silent for an hour or fresh), with
no journal, a valid journal older, as old as or newer than the published set, a journal
naming paths outside the folder, garbage journals, staged members of the wrong kind;
staging "folders" that are symlinks or files; members in the way (a ``plots`` symlink, a
file, a dangling link, an ``estimates.json`` folder); a garbage or folder marker. Every
planted path is inside the output folder; paths outside it only appear as link targets or
journal entries, and the test checks that nothing outside ever changes. Everything is
driven by one ``numpy.random.Generator``, so a seed reproduces every case exactly.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cje.atomic import temp_name

FILES = ("estimates.json", "estimates.csv", "plot_data.npz")
MEMBERS = ("estimates.json", "estimates.csv", "plot_data.npz", "plots")
HOUR = 3600.0

BAD_NAMES = ["../precious.txt", "../preciousdir", "ABS/precious.txt", "ABS", "notes.txt", "plots/../../precious.txt",
             "", ".", "..", "estimates.json/../../precious.txt", "./estimates.json", "plots/", "PLOTS", "\u00e9"]
GARBAGE = [b"", b"\n", b"{", b"null", b"[]", b"42", b'"journal"', b"\xff\xfe\x00\x01", b"{\"replace\": 1}",
           b"{\"replace\": [], \"remove\": []}", b"{\"replace\": [null], \"remove\": []}", b" " * 70_000]
JOURNALS = ["none", "legacy", "older", "equal", "newer"] * 2 + ["bad-member", "garbage", "bad-key", "journal-dir",
                                                                  "journal-symlink"]
STAGED = ["complete", "complete", "complete", "missing", "symlink", "folder", "plots-symlink", "with-plots"]
OBSTACLES = ["plots-symlink", "plots-file", "plots-dangling", "plots-real", "plots-with-link", "json-folder",
             "json-symlink", "csv-garbage", "npz-garbage"]


@dataclass
class Case:
    """One damaged folder: what to plant, and how the run is made."""

    marker: str = "keep"                      # keep, drop (an older folder), garbage, folder
    plants: list[dict] = field(default_factory=list)
    plots: bool = False                       # run with --plots

    def describe(self) -> str:
        return f"marker={self.marker} plots={self.plots} " + "; ".join(
            ",".join(f"{k}={v}" for k, v in p.items()) for p in self.plants)


def generate(rng: np.random.Generator) -> Case:
    """Draw one case."""
    case = Case(marker=str(rng.choice(["keep"] * 6 + ["drop", "drop", "garbage", "folder"])),
                plots=bool(rng.random() < 0.02))
    for _ in range(int(rng.integers(1, 4))):
        family = rng.random()
        if family < 0.6:
            case.plants.append({"kind": "staging", "host": str(rng.choice(["this-dead", "this-live", "other"])),
                                "old": bool(rng.random() < 0.6), "journal": str(rng.choice(JOURNALS)),
                                "staged": str(rng.choice(STAGED)), "bad": str(rng.choice(BAD_NAMES)),
                                "garbage": int(rng.integers(0, len(GARBAGE))),
                                "where": str(rng.choice(["remove", "replace"]))})
        elif family < 0.7:
            case.plants.append({"kind": str(rng.choice(["staging-symlink", "staging-file"]))})
        else:
            case.plants.append({"kind": "obstacle", "what": str(rng.choice(OBSTACLES))})
    return case


def _journal(plant: dict, seq: int, outside: Path) -> bytes | None:
    kind = plant["journal"]
    replace = ["plot_data.npz", "estimates.csv", "estimates.json"]
    remove = ["plots"]
    if plant["staged"] == "with-plots" or plant["staged"] == "plots-symlink":
        replace, remove = ["plots", *replace], []
    plan: dict = {"replace": replace, "remove": remove}
    if kind == "none":
        return None
    if kind == "garbage":
        return GARBAGE[plant["garbage"]]
    if kind == "older":
        plan.update(seq=max(seq - 1, 1), id="0" if seq > 1 else "0")
    elif kind == "equal":
        plan.update(seq=max(seq, 1), id="f" * 16)
    elif kind == "newer":
        plan.update(seq=max(seq, 0) + 1 + plant["garbage"] % 3, id="abc")
    elif kind == "bad-key":
        plan.update(seq=[-1, 0, "2", 2.5, True, None, 2 ** 70][plant["garbage"] % 7], id="x")
    elif kind == "bad-member":
        bad = plant["bad"].replace("ABS", str(outside))
        plan[plant["where"]] = plan[plant["where"]] + [bad]
    return json.dumps(plan).encode()


def plant(case: Case, out: Path, work: Path, planted_set: Path, seq: int) -> list[Path]:
    """Make ``case`` in ``out``; return the planted paths (all inside ``out``) a user would delete."""
    paths: list[Path] = []
    outside = work / "precious.txt"
    if case.marker == "drop":
        (out / ".cje-set.json").unlink(missing_ok=True)
    elif case.marker == "garbage":
        (out / ".cje-set.json").write_bytes(b"\x00garbage")
        paths.append(out / ".cje-set.json")
    elif case.marker == "folder":
        (out / ".cje-set.json").unlink(missing_ok=True)
        (out / ".cje-set.json").mkdir()
        paths.append(out / ".cje-set.json")
    for index, item in enumerate(case.plants):
        if item["kind"] == "staging":
            paths.append(_plant_staging(item, index, out, work, planted_set, seq, outside))
        elif item["kind"] == "staging-symlink":  # a valid, newer journal, but outside the folder
            elsewhere = work / f"elsewhere{index}"
            elsewhere.mkdir()
            for member in FILES:
                shutil.copyfile(planted_set / member, elsewhere / f"{member}.new")
            (elsewhere / "journal.json").write_text(json.dumps({"replace": ["plot_data.npz", "estimates.csv",
                                                                            "estimates.json"],
                                                                "remove": ["plots"], "seq": seq + 9, "id": "ee"}))
            link = out / f".cje-publish.otherhost.{index}.0123456789ab"
            os.symlink(elsewhere, link)
            paths.append(link)
        elif item["kind"] == "staging-file":
            path = out / f".cje-publish.otherhost.{index}.fedcba987654"
            path.write_text("{}")
            paths.append(path)
        else:
            paths.extend(_plant_obstacle(item["what"], out, work))
    return paths


def _plant_staging(item: dict, index: int, out: Path, work: Path, planted_set: Path, seq: int,
                   outside: Path) -> Path:
    if item["host"] == "other":
        name = f".cje-publish.node{index}.{4000 + index}.{index:012x}"
    else:
        pid = 999_999_999 - index if item["host"] == "this-dead" else os.getpid()
        name = temp_name("cje-publish", suffix="").replace(f".{os.getpid()}.", f".{pid}.")
    staging = out / name
    staging.mkdir()
    for member in FILES:
        shutil.copyfile(planted_set / member, staging / f"{member}.new")
    staged = item["staged"]
    if staged in ("with-plots", "plots-symlink"):
        if staged == "with-plots":
            (staging / "plots.new").mkdir()
            (staging / "plots.new" / "diagnostics_dashboard.html").write_text("<html>old</html>")
        else:
            os.symlink(work / "preciousdir", staging / "plots.new")
    elif staged == "missing":
        (staging / "estimates.csv.new").unlink()
    elif staged == "symlink":
        (staging / "estimates.json.new").unlink()
        os.symlink(outside, staging / "estimates.json.new")
    elif staged == "folder":
        (staging / "plot_data.npz.new").unlink()
        (staging / "plot_data.npz.new").mkdir()
    # a .old a killed writer may have left, pointing outside: removing it must not follow the link
    if item["garbage"] % 4 == 0:
        os.symlink(work / "preciousdir", staging / "plots.old")
    journal = _journal(item, seq, work / "precious.txt")
    if item["journal"] == "journal-dir":
        (staging / "journal.json").mkdir()
    elif item["journal"] == "journal-symlink":
        (work / f"journal{index}.json").write_text(json.dumps({"replace": [], "remove": ["../precious.txt"]}))
        os.symlink(work / f"journal{index}.json", staging / "journal.json")
    elif journal is not None:
        (staging / "journal.json").write_bytes(journal)
    if item["old"]:
        import time

        when = time.time() - HOUR
        for path in [*staging.iterdir(), staging]:
            os.utime(path, (when, when), follow_symlinks=False)
    return staging


def _plant_obstacle(what: str, out: Path, work: Path) -> list[Path]:
    plots = out / "plots"
    if os.path.lexists(plots) or not (out / "estimates.json").is_file() or (out / "estimates.json").is_symlink():
        return []  # one obstacle of each kind is enough
    if what == "plots-symlink":
        os.symlink(work / "preciousdir", plots)
    elif what == "plots-file":
        plots.write_text("my notes\n")
    elif what == "plots-dangling":
        os.symlink(work / "nowhere", plots)
    elif what == "plots-real":  # an earlier run's plots: replaced or removed, no error
        plots.mkdir()
        (plots / "diagnostics_dashboard.html").write_text("<html>earlier</html>")
        return []
    elif what == "plots-with-link":  # an earlier plots/ holding a link outside: removed without following it
        plots.mkdir()
        os.symlink(work / "preciousdir", plots / "linked")
        return []
    elif what == "json-folder":
        (out / "estimates.json").unlink()
        (out / "estimates.json").mkdir()
        return [out / "estimates.json"]
    elif what == "json-symlink":
        (out / "estimates.json").unlink()
        os.symlink(work / "precious.txt", out / "estimates.json")
        return [out / "estimates.json"]
    elif what == "csv-garbage":
        (out / "estimates.csv").write_bytes(b"\x00\x01garbage")
        return []
    elif what == "npz-garbage":
        (out / "plot_data.npz").write_bytes(b"PK\x03\x04broken")
        return []
    return [plots]

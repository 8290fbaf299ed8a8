"""Export the gradebook: a CSV for the spreadsheet, Canvas's and Moodle's grade imports,
results.json per student, JUnit XML.

Every format is rendered from one `ClassGrades`: the gradebook's latest run of each student's
latest submission of each notebook, matched to the roster, and each student's standing in each
course notebook (`grader.standing`: raw score, late penalty, override, final score, and the
maximum from the course's checks), so that all formats agree. Student names come from folder
and file names, so they are the students' own text: every CSV neutralises anything a
spreadsheet would read as a formula, and every file or folder named after a student gets a safe
name that no other student's can equal. Every file is written atomically (a temporary file
beside it, then a rename): a reader, or an LMS import, sees the previous export or the new one,
never half of one.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import itertools
import json
import os
import re
import tempfile
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from grader.config import CANVAS_RESERVED, Config
from grader.errors import ExportError
from grader.report import check_id, gradescope_results, junit_xml
from grader.results import NotebookResult
from grader.roster import RosterEntry
from grader.standing import DECIMALS, Standing, student_total
from grader.untrusted import clean_line

if TYPE_CHECKING:  # `grader check` writes its files here too, without the database's imports
    from grader.gradebook import Gradebook, GradedNotebook

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n", "＝", "＋", "－", "＠")
_UNSAFE_FILE_CHARACTERS = re.compile(r"[^A-Za-z0-9._-]+")
MAX_NAME_CHARACTERS = 80
WINDOWS_DEVICES = frozenset(
    ["con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)), *(f"lpt{i}" for i in range(10))]
)
"""Names Windows refuses for a file or folder, with any extension (`nul.html` too)."""
NEW_FILE_MODE = 0o644


def student_slugs(students: Iterable[str], reserved: Collection[str] = ()) -> dict[str, str]:
    """A distinct, safe file name for each student name, none of them one of `reserved`.

    Names are compared as a case-insensitive file system compares them. A plain slug that two
    names share, or that is reserved, gets a hash of the exact name; the hashed form is checked
    again, so a name chosen to equal another's plain or hashed form cannot take its place.
    """
    names = sorted(set(students))
    plain = {name: _slug(name) for name in names}
    shared = Counter(slug.lower() for slug in plain.values())
    taken = {name.lower() for name in reserved}
    slugs: dict[str, str] = {}
    for name, slug in plain.items():
        if slug and shared[slug.lower()] == 1 and _free(slug, taken):
            slugs[name] = slug
            taken.add(slug.lower())
    for name in names:
        if name not in slugs:
            slugs[name] = _hashed_slug(name, plain[name] or "student", taken)
            taken.add(slugs[name].lower())
    return slugs


def _slug(name: str) -> str:
    return _UNSAFE_FILE_CHARACTERS.sub("_", name).strip("._-")[:MAX_NAME_CHARACTERS]


def _free(slug: str, taken: set[str]) -> bool:
    folded = slug.lower()
    return folded not in taken and folded.split(".")[0] not in WINDOWS_DEVICES


def _hashed_slug(name: str, slug: str, taken: set[str]) -> str:
    # The hash goes before the first dot: `nul.txt` and `index.html` must change their stem.
    stem, dot, extension = slug.partition(".")
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()
    candidates = [f"{stem}-{digest[:length]}" for length in (10, 16, 64)]
    # Only a set of names built to equal every hashed form of another gets to a counter.
    counted = (f"{stem}-{digest}-{counter}" for counter in itertools.count(2))
    for candidate in itertools.chain(candidates, counted):
        if _free(candidate + dot + extension, taken):
            return candidate + dot + extension
    raise AssertionError("unreachable: the counter runs until a name is free")


def output_folder(folder: Path) -> Path:
    """`folder`, created with its parents if missing; an `ExportError` if it cannot be."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise ExportError(
            f"cannot write into {folder}: a file of that name is in the way"
        ) from None
    except OSError as error:
        raise ExportError(f"cannot create the folder {folder}: {_reason(error)}") from None
    return folder


def write_atomically(path: Path, text: str) -> None:
    """Write `text` to `path` (UTF-8, newlines as given) through a temporary file and a rename.

    The folder is created if missing. A file there keeps its permissions; a new one is
    readable by all (a temporary file alone would be private), as feedback behind a web server
    must be.
    """
    folder = output_folder(path.parent)
    if path.is_dir():
        raise ExportError(f"cannot write {path}: it is a folder")
    mode = path.stat().st_mode & 0o7777 if path.is_file() else NEW_FILE_MODE
    try:
        descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name[:60]}.", dir=folder)
    except OSError as error:
        raise ExportError(f"cannot write into {folder}: {_reason(error)}") from None
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except OSError as error:
        Path(temporary).unlink(missing_ok=True)
        raise ExportError(f"cannot write {path}: {_reason(error)}") from None


def _reason(error: OSError) -> str:
    return error.strerror or str(error)


def write_json_atomically(path: Path, data: dict[str, Any]) -> None:
    """`data` as indented JSON in `path`, written atomically."""
    write_atomically(path, json.dumps(data, indent=2) + "\n")


def by_student(graded: list[GradedNotebook]) -> dict[str, list[GradedNotebook]]:
    """The graded notebooks grouped by student, students and notebooks in order."""
    groups: dict[str, list[GradedNotebook]] = {}
    for item in sorted(graded, key=lambda g: (g.student, g.result.notebook)):
        groups.setdefault(item.student, []).append(item)
    return groups


MISSING = "missing"
"""What the CSV says for a notebook a student never handed in (0 is a score)."""
EXCUSED = "excused"
CANVAS_EXCUSED = "EX"
"""What Canvas's gradebook import reads as an excused submission."""
CANVAS_COLUMNS = CANVAS_RESERVED[:5]
"""The columns Canvas's gradebook import requires before the assignments' columns."""
CANVAS_POINTS_POSSIBLE = CANVAS_RESERVED[5]
MOODLE_COLUMNS = ("Email address", "ID number", "Full name")
"""Moodle's grade import maps a user from one of these (chosen at import: e-mail or ID number)."""


@dataclass(frozen=True)
class ClassGrades:
    """What every export renders, read from the gradebook once so that all formats agree."""

    roster: Sequence[RosterEntry]
    graded: Sequence[GradedNotebook]
    """The latest graded submissions, matched to the roster (`grader.roster.match_roster`)."""
    standings: Mapping[str, Mapping[str, Standing]]
    """Student id -> notebook -> `grader.standing.Standing`: every roster and graded student,
    every course notebook; the maxima come from the course's checks."""


def class_grades(gradebook: Gradebook, config: Config) -> ClassGrades:
    """The class as the gradebook holds it, with the course's maxima and late policy applied."""
    from grader.roster import match_roster
    from grader.standing import class_standings

    roster = gradebook.roster()
    graded = match_roster(gradebook.latest(), roster)
    return ClassGrades(roster, graded, class_standings(graded, roster, gradebook.actions(), config))


def write_csv(grades: ClassGrades, path: Path) -> None:
    """One row per student (every roster student, and anyone graded who is not on it): per
    notebook each check's score, the raw score, late days, penalty, override and the notebook's
    total (its final score); then the total and its maximum (`grader.standing.student_total`).
    `missing` where nothing was handed in, `excused` for an excused notebook's total."""
    columns = _check_columns(grades.graded)
    notebooks = _notebooks(grades)
    header = ["student", "name"]
    for notebook in notebooks:
        header += [name for nb, name in columns if nb == notebook]
        header += [f"{notebook} {part}" for part in ("raw", "late days", "penalty", "override")]
        header.append(f"{notebook} total")
    header += ["total", "max_total"]
    names = {entry.lms_id: entry.name for entry in grades.roster}
    results = {(g.student, g.result.notebook): g.result for g in grades.graded}
    rows: list[list[str | float]] = [[spreadsheet_safe(cell) for cell in header]]
    for student, standing in sorted(grades.standings.items()):
        row: list[str | float] = [
            spreadsheet_safe(student),
            spreadsheet_safe(names.get(student, "")),
        ]
        for notebook in notebooks:
            scores = _scores(results.get((student, notebook)))
            default: str | float = MISSING if standing[notebook].raw is None else 0.0
            row += [scores.get(name, default) for nb, name in columns if nb == notebook]
            row += _standing_cells(standing[notebook])
        row += list(student_total(standing))
        rows.append(row)
    write_atomically(path, _csv_text(rows))


def _notebooks(grades: ClassGrades) -> list[str]:
    return list(next(iter(grades.standings.values()), {}))


def _standing_cells(standing: Standing) -> list[str | float]:
    """raw, late days, penalty, override and total of one notebook, as the CSV shows them."""
    raw: str | float = MISSING if standing.raw is None else standing.raw
    override: str | float = "" if standing.override is None else standing.override
    total: str | float = standing.final if standing.final is not None else MISSING
    if standing.excused:
        total = EXCUSED
    if standing.status == "missing":
        return [raw, "", "", override, total]
    return [raw, standing.late_days, standing.penalty, override, total]


def _csv_text(rows: Iterable[Sequence[str | float]]) -> str:
    buffer = io.StringIO(newline="")
    csv.writer(buffer).writerows(rows)
    return buffer.getvalue()


def lms_students(grades: ClassGrades) -> list[tuple[str, RosterEntry]]:
    """(student id, roster entry) of each student an LMS import can place: the roster's
    students, or without a roster everyone graded, under their key."""
    if grades.roster:
        return [(entry.lms_id, entry) for entry in grades.roster]
    return [(student, RosterEntry(student, "")) for student in sorted(grades.standings)]


def write_canvas(grades: ClassGrades, path: Path, config: Config) -> None:
    """Canvas's gradebook import: `Student, ID, SIS User ID, SIS Login ID, Section`, a column per
    assignment (`Name (id)`, or a new assignment's name), a `Points Possible` row; each cell the
    final score, `EX` where excused, empty where nothing was handed in.

    One column per notebook, headed as `config.canvas_columns` names it (else by the notebook's
    name), or, with `config.canvas_assignment`, one column of each student's total, scaled to the
    class maximum where an excused notebook's maximum does not count.
    """
    notebooks = _notebooks(grades)
    maxima = _maxima(grades)
    if config.canvas_assignment:
        headings, possible = [config.canvas_assignment], [sum(maxima.values())]
    else:
        headings = [config.canvas_columns.get(nb, nb) for nb in notebooks]
        possible = [maxima[nb] for nb in notebooks]
    rows: list[Sequence[str | float]] = [[*CANVAS_COLUMNS, *headings]]
    rows.append([CANVAS_POINTS_POSSIBLE, "", "", "", "", *possible])
    for student, entry in lms_students(grades):
        standing = grades.standings.get(student, {})
        if config.canvas_assignment:
            cells = [_scaled_total(standing, possible[0])]
        else:
            cells = [_lms_cell(standing.get(nb), CANVAS_EXCUSED) for nb in notebooks]
        person = [entry.name, student, "", entry.email, entry.section]
        rows.append([*(spreadsheet_safe(text) for text in person), *cells])
    write_atomically(path, _csv_text(rows))


def write_moodle(grades: ClassGrades, path: Path) -> None:
    """Moodle's grade import (Grades > Import > CSV file): `Email address`, `ID number` (the
    roster id) and `Full name` to map users from, then a column per notebook, named after it,
    with the final score; empty where nothing counts (missing, excused), which Moodle skips."""
    notebooks = _notebooks(grades)
    rows: list[Sequence[str | float]] = [[*MOODLE_COLUMNS, *notebooks]]
    for student, entry in lms_students(grades):
        standing = grades.standings.get(student, {})
        person = (entry.email, student, entry.name)
        cells = [_lms_cell(standing.get(nb), "") for nb in notebooks]
        rows.append([*(spreadsheet_safe(text) for text in person), *cells])
    write_atomically(path, _csv_text(rows))


def _maxima(grades: ClassGrades) -> dict[str, float]:
    first = next(iter(grades.standings.values()), {})
    return {notebook: standing.maximum for notebook, standing in first.items()}


def _lms_cell(standing: Standing | None, excused: str) -> str | float:
    if standing is None or standing.final is None:
        return excused if standing is not None and standing.excused else ""
    return standing.final


def _scaled_total(standing: Mapping[str, Standing], class_maximum: float) -> str | float:
    """A student's total out of the class maximum: an excused notebook counts in neither."""
    points, maximum = student_total(standing)
    if maximum <= 0:
        return CANVAS_EXCUSED if standing else ""
    if all(s.status == "missing" for s in standing.values()):
        return ""
    return round(points * class_maximum / maximum, DECIMALS)


def off_roster(graded: Sequence[GradedNotebook], roster: Sequence[RosterEntry]) -> list[str]:
    """The students graded whom the roster does not list (empty without a roster)."""
    listed = {entry.lms_id for entry in roster}
    return sorted({g.student for g in graded} - listed) if listed else []


def _check_columns(graded: Sequence[GradedNotebook]) -> list[tuple[str, str]]:
    """(notebook, check id) of every check seen, notebooks sorted, checks in grading order."""
    columns: dict[tuple[str, str], None] = {}
    for item in sorted(graded, key=lambda g: g.result.notebook):
        for check in item.result.checks:
            columns[(check.notebook, check_id(check))] = None
    return list(columns)


def _scores(result: NotebookResult | None) -> dict[str, float]:
    return {} if result is None else {check_id(c): c.score for c in result.checks}


def spreadsheet_safe(text: str) -> str:
    """`text` as one clean line (`grader.untrusted.clean_line`), with a leading quote if a
    spreadsheet would otherwise read it as a formula."""
    return f"'{clean_line(text)}" if text.startswith(FORMULA_STARTS) else clean_line(text)


def write_results_json(grades: ClassGrades, folder: Path) -> list[Path]:
    """Gradescope's `results.json` for each student graded, in `folder/<student>/results.json`.

    `score` and `max_score` are the student's total and its maximum, as in the CSV
    (`grader.standing.student_total`: late penalties and overrides applied, a notebook not handed
    in counted in the maximum, an excused one in neither); `extra_data.standings` holds each
    notebook's raw score, late days, penalty, override and final score, `extra_data.missing` the
    notebooks not handed in. The tests are the checks as graded.
    """
    groups = by_student(list(grades.graded))
    slugs = student_slugs(groups)
    written = []
    for student, items in groups.items():
        target = folder / slugs[student] / "results.json"
        results = [item.result for item in items]
        standing = grades.standings[student]
        data = gradescope_results(results, sum(r.seconds for r in results))
        data["score"], data["max_score"] = student_total(standing)
        data["extra_data"]["student"] = student
        data["extra_data"]["standings"] = {nb: dataclasses.asdict(s) for nb, s in standing.items()}
        data["extra_data"]["missing"] = [nb for nb, s in standing.items() if s.status == "missing"]
        write_json_atomically(target, data)
        written.append(target)
    return written


def write_junit(grades: ClassGrades, path: Path) -> None:
    """The class as JUnit XML: a test suite per student and notebook graded, with the
    notebook's standing (raw, late days, penalty, override, final, status) as its properties."""
    items = sorted(grades.graded, key=lambda g: (g.student, g.result.notebook))
    labels = [f"{item.student}/{item.result.notebook}" for item in items]
    properties = [
        _junit_properties(grades.standings[item.student][item.result.notebook]) for item in items
    ]
    write_atomically(path, junit_xml([item.result for item in items], labels, properties))


def _junit_properties(standing: Standing) -> dict[str, str]:
    return {
        key: "" if value is None else str(value)
        for key, value in dataclasses.asdict(standing).items()
    }

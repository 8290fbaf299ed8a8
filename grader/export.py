"""Export the gradebook: a CSV for the spreadsheet, results.json per student, JUnit XML.

Everything is rendered from the gradebook's latest run of each student's latest submission
of each notebook. Student names come from folder and file names, so they are the students' own
text: the CSV neutralises anything a spreadsheet would read as a formula, and every file or
folder named after a student gets a safe name that no other student's can equal. Every file is
written atomically (a temporary file beside it, then a rename): a reader, or an LMS import,
sees the previous export or the new one, never half of one.
"""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import json
import os
import re
import tempfile
from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from grader.errors import ExportError
from grader.report import check_id, gradescope_results, junit_xml
from grader.results import NotebookResult
from grader.roster import RosterEntry
from grader.untrusted import clean_line

if TYPE_CHECKING:  # `grader check` writes its files here too, without the database's imports
    from grader.gradebook import GradedNotebook

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


def write_csv(graded: list[GradedNotebook], path: Path, roster: Sequence[RosterEntry] = ()) -> None:
    """One row per student (every roster student, and anyone graded who is not on it): each
    check's score, each notebook's total, the total; `missing` where nothing was handed in."""
    columns = _check_columns(graded)
    notebooks = list(dict.fromkeys(notebook for notebook, _ in columns))
    maximum = {nb: notebook_maximum(graded, nb) for nb in notebooks}
    header = ["student", "name"]
    for notebook in notebooks:
        header += [name for nb, name in columns if nb == notebook] + [f"{notebook} total"]
    header += ["total", "max_total"]
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer)
    writer.writerow([spreadsheet_safe(cell) for cell in header])
    groups = by_student(graded)
    names = {entry.lms_id: entry.name for entry in roster}
    for student in sorted({*groups, *names}):
        row = _csv_row(student, groups.get(student, []), columns, notebooks, sum(maximum.values()))
        writer.writerow([row[0], spreadsheet_safe(names.get(student, "")), *row[1:]])
    write_atomically(path, buffer.getvalue())


def off_roster(graded: list[GradedNotebook], roster: Sequence[RosterEntry]) -> list[str]:
    """The students graded whom the roster does not list (empty without a roster)."""
    listed = {entry.lms_id for entry in roster}
    return sorted({g.student for g in graded} - listed) if listed else []


def _check_columns(graded: list[GradedNotebook]) -> list[tuple[str, str]]:
    """(notebook, check id) of every check seen, notebooks sorted, checks in grading order."""
    columns: dict[tuple[str, str], None] = {}
    for item in sorted(graded, key=lambda g: g.result.notebook):
        for check in item.result.checks:
            columns[(check.notebook, check_id(check))] = None
    return list(columns)


def notebook_maximum(graded: list[GradedNotebook], notebook: str) -> float:
    """A notebook's maximum score: the one definition every export and page uses."""
    return max((g.result.max_score for g in graded if g.result.notebook == notebook), default=0.0)


def _csv_row(
    student: str,
    items: list[GradedNotebook],
    columns: list[tuple[str, str]],
    notebooks: list[str],
    max_total: float,
) -> list[str | float]:
    results = {item.result.notebook: item.result for item in items}
    row: list[str | float] = [spreadsheet_safe(student)]
    for notebook in notebooks:
        scores = _scores(results.get(notebook))
        default: str | float = 0.0 if notebook in results else MISSING
        row += [scores.get(name, default) for nb, name in columns if nb == notebook]
        row.append(results[notebook].score if notebook in results else MISSING)
    row += [sum(result.score for result in results.values()), max_total]
    return row


def _scores(result: NotebookResult | None) -> dict[str, float]:
    return {} if result is None else {check_id(c): c.score for c in result.checks}


def spreadsheet_safe(text: str) -> str:
    """`text` as one clean line (`grader.untrusted.clean_line`), with a leading quote if a
    spreadsheet would otherwise read it as a formula."""
    return f"'{clean_line(text)}" if text.startswith(FORMULA_STARTS) else clean_line(text)


def write_results_json(graded: list[GradedNotebook], folder: Path) -> list[Path]:
    """Gradescope's `results.json` for each student, in `folder/<student>/results.json`.

    `max_score` is the class's maximum, as in the CSV's `max_total`: a notebook the student did
    not hand in still counts towards it (`extra_data.missing` names those notebooks).
    """
    slugs = student_slugs(g.student for g in graded)
    notebooks = sorted({g.result.notebook for g in graded})
    max_total = sum(notebook_maximum(graded, nb) for nb in notebooks)
    written = []
    for student, items in by_student(graded).items():
        target = folder / slugs[student] / "results.json"
        results = [item.result for item in items]
        data = gradescope_results(results, sum(r.seconds for r in results))
        data["max_score"] = max_total
        data["extra_data"]["student"] = student
        handed_in = {result.notebook for result in results}
        data["extra_data"]["missing"] = [nb for nb in notebooks if nb not in handed_in]
        write_json_atomically(target, data)
        written.append(target)
    return written


def write_junit(graded: list[GradedNotebook], path: Path) -> None:
    """The class as JUnit XML: a test suite per student and notebook."""
    items = sorted(graded, key=lambda g: (g.student, g.result.notebook))
    labels = [f"{item.student}/{item.result.notebook}" for item in items]
    write_atomically(path, junit_xml([item.result for item in items], labels))

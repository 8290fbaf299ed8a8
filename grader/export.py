"""Export the gradebook: a CSV for the spreadsheet, results.json per student, JUnit XML.

Everything is rendered from the gradebook's latest run of each student's latest submission
of each notebook. Student names come from folder and file names, so they are the students' own
text: the CSV neutralises anything a spreadsheet would read as a formula.
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

from grader.gradebook import GradedNotebook
from grader.report import check_id, gradescope_results, junit_xml, write_json
from grader.results import NotebookResult
from grader.untrusted import clean_line

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n", "＝", "＋", "－", "＠")
_UNSAFE_FILE_CHARACTERS = re.compile(r"[^A-Za-z0-9._-]+")


def student_slugs(students: Iterable[str], reserved: Iterable[str] = ()) -> dict[str, str]:
    """A distinct, safe file name for each student name, never one of `reserved`.

    Names are students' own text, so one may be chosen to equal another's safe or hashed form:
    every name given out is checked against all those given before (case-insensitively, for
    case-insensitive file systems), and a name that is taken falls back to longer hashes.
    """
    names = sorted(set(students))
    plain = {name: _UNSAFE_FILE_CHARACTERS.sub("_", name).strip("._-")[:80] for name in names}
    clashes = Counter(slug.lower() for slug in plain.values())
    taken = {name.lower() for name in reserved}
    slugs: dict[str, str] = {}
    for name, slug in plain.items():
        unique = slug if slug and clashes[slug.lower()] == 1 else None
        chosen = next(c for c in _slug_candidates(name, slug, unique) if c.lower() not in taken)
        taken.add(chosen.lower())
        slugs[name] = chosen
    return slugs


def _slug_candidates(name: str, slug: str, unique: str | None) -> Iterator[str]:
    if unique is not None:
        yield unique
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()
    for length in (10, 16, 64):
        yield f"{slug or 'student'}-{digest[:length]}"
    yield from (f"{slug or 'student'}-{digest}-{n}" for n in itertools.count(2))


def by_student(graded: list[GradedNotebook]) -> dict[str, list[GradedNotebook]]:
    """The graded notebooks grouped by student, students and notebooks in order."""
    groups: dict[str, list[GradedNotebook]] = {}
    for item in sorted(graded, key=lambda g: (g.student, g.result.notebook)):
        groups.setdefault(item.student, []).append(item)
    return groups


def write_csv(graded: list[GradedNotebook], path: Path) -> None:
    """One row per student: each check's score, each notebook's total, the total."""
    columns = _check_columns(graded)
    notebooks = list(dict.fromkeys(notebook for notebook, _ in columns))
    maximum = {nb: _notebook_maximum(graded, nb) for nb in notebooks}
    header = ["student"]
    for notebook in notebooks:
        header += [name for nb, name in columns if nb == notebook] + [f"{notebook} total"]
    header += ["total", "max_total"]
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow([spreadsheet_safe(cell) for cell in header])
        for student, items in by_student(graded).items():
            writer.writerow(_csv_row(student, items, columns, notebooks, sum(maximum.values())))


def _check_columns(graded: list[GradedNotebook]) -> list[tuple[str, str]]:
    """(notebook, check id) of every check seen, notebooks sorted, checks in grading order."""
    columns: dict[tuple[str, str], None] = {}
    for item in sorted(graded, key=lambda g: g.result.notebook):
        for check in item.result.checks:
            columns[(check.notebook, check_id(check))] = None
    return list(columns)


def _notebook_maximum(graded: list[GradedNotebook], notebook: str) -> float:
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
        row += [scores.get(name, 0.0) for nb, name in columns if nb == notebook]
        row.append(results[notebook].score if notebook in results else 0.0)
    row += [sum(result.score for result in results.values()), max_total]
    return row


def _scores(result: NotebookResult | None) -> dict[str, float]:
    return {} if result is None else {check_id(c): c.score for c in result.checks}


def spreadsheet_safe(text: str) -> str:
    """`text` as one clean line (`grader.untrusted.clean_line`), with a leading quote if a
    spreadsheet would otherwise read it as a formula."""
    return f"'{clean_line(text)}" if text.startswith(FORMULA_STARTS) else clean_line(text)


def write_results_json(graded: list[GradedNotebook], folder: Path) -> list[Path]:
    """Gradescope's `results.json` for each student, in `folder/<student>/results.json`."""
    slugs = student_slugs(g.student for g in graded)
    written = []
    for student, items in by_student(graded).items():
        target = folder / slugs[student] / "results.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        results = [item.result for item in items]
        data = gradescope_results(results, sum(r.seconds for r in results))
        data["extra_data"]["student"] = student
        write_json(target, data)
        written.append(target)
    return written


def write_junit(graded: list[GradedNotebook], path: Path) -> None:
    """The class as JUnit XML: a test suite per student and notebook."""
    items = sorted(graded, key=lambda g: (g.student, g.result.notebook))
    labels = [f"{item.student}/{item.result.notebook}" for item in items]
    path.write_text(junit_xml([item.result for item in items], labels), encoding="utf-8")

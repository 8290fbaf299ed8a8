"""The class list an LMS exports, read once into `RosterEntry` rows keyed by the LMS id.

Formats, told apart by their header row (the columns read; every other column is ignored):

- plain CSV: `id,name,email,section`;
- Canvas (Grades > Export): `Student` (the name), `ID` (Canvas's user id, the number in the
  names of Canvas's submission downloads), `SIS Login ID` (the e-mail or login), `Section`; the
  "Points Possible" row under the header (its ID empty) is skipped;
- Moodle (a participants or grading-worksheet export): `Identifier` (`Participant 4711`; the
  number is the id, as in Moodle's download names), `Full name`, `Email address`, and `Group`
  where there is one.

Every value comes from a file an instructor downloaded, but its text was typed by students:
each is cleaned to one line before it is kept.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from grader.errors import RosterError
from grader.untrusted import clean_line

if TYPE_CHECKING:
    from grader.gradebook import GradedNotebook
    from grader.submissions import Submission

MAX_ROSTER_BYTES = 20 * 1024 * 1024
_PARTICIPANT = re.compile(r"participant\s*(\d+)", re.IGNORECASE)
_TRAILING_NUMBER = re.compile(r"_(\d+)$")


@dataclass(frozen=True)
class RosterEntry:
    """One student of the class, as the LMS knows them."""

    lms_id: str
    name: str
    email: str = ""
    section: str = ""


def read_roster(path: Path) -> tuple[str, list[RosterEntry]]:
    """The roster in `path` and the name of its format (`plain`, `canvas` or `moodle`)."""
    rows = _rows(path)
    header = [column.strip().lower() for column in rows[0]] if rows else []
    for name, (required, entry) in FORMATS.items():
        if set(required) <= set(header):
            columns = {column: header.index(column) for column in header}
            entries = [entry(columns, row) for row in rows[1:] if any(cell.strip() for cell in row)]
            return name, _distinct(path, [e for e in entries if e is not None])
    raise RosterError(
        f"{path}: not a roster this grader reads (a plain CSV with the header id,name,email,"
        "section, a Canvas grades export or a Moodle participants export)"
    )


def _rows(path: Path) -> list[list[str]]:
    try:
        data = path.read_bytes()[: MAX_ROSTER_BYTES + 1]
    except OSError as error:
        raise RosterError(f"cannot read the roster {path}: {error.strerror or error}") from None
    if len(data) > MAX_ROSTER_BYTES:
        raise RosterError(f"{path}: larger than {MAX_ROSTER_BYTES} bytes; not a class list")
    text = data.decode("utf-8-sig", errors="replace")  # Excel writes a byte-order mark
    try:
        return list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as error:
        raise RosterError(f"{path}: not a CSV file ({error})") from None


def _cell(columns: dict[str, int], row: list[str], column: str) -> str:
    index = columns.get(column)
    return clean_line(row[index].strip()) if index is not None and index < len(row) else ""


def _plain(columns: dict[str, int], row: list[str]) -> RosterEntry | None:
    get = _reader(columns, row)
    return RosterEntry(get("id"), get("name"), get("email"), get("section")) if get("id") else None


def _canvas(columns: dict[str, int], row: list[str]) -> RosterEntry | None:
    get = _reader(columns, row)
    if not get("id"):  # Canvas's "Points Possible" row (by its empty ID: a name is a student's)
        return None
    return RosterEntry(get("id"), get("student"), get("sis login id"), get("section"))


def _moodle(columns: dict[str, int], row: list[str]) -> RosterEntry | None:
    get = _reader(columns, row)
    number = _PARTICIPANT.search(get("identifier"))
    if number is None:
        return None
    return RosterEntry(number.group(1), get("full name"), get("email address"), get("group"))


def _reader(columns: dict[str, int], row: list[str]) -> Callable[[str], str]:
    return lambda column: _cell(columns, row, column)


def _distinct(path: Path, entries: list[RosterEntry]) -> list[RosterEntry]:
    seen: set[str] = set()
    for entry in entries:
        if entry.lms_id in seen:
            raise RosterError(f"{path}: the id {entry.lms_id!r} is given to two students")
        seen.add(entry.lms_id)
    return entries


FORMATS: dict[
    str, tuple[tuple[str, ...], Callable[[dict[str, int], list[str]], RosterEntry | None]]
]
FORMATS = {
    "plain": (("id", "name", "email", "section"), _plain),
    "canvas": (("student", "id", "section"), _canvas),
    "moodle": (("identifier", "full name"), _moodle),
}
"""Format -> the header columns that identify it, and how a row becomes an entry."""


def roster_id(
    student: str, ids: Collection[str], emails: dict[str, str] | None = None
) -> str | None:
    """The roster id a student key names: the key itself (a folder `4711/`), the LMS
    participant number the key ends with (`Jane Doe_4711`, `doejane_12345`), or an e-mail
    address of the roster (`emails`: folded address -> id); else None."""
    if student in ids:
        return student
    number = _TRAILING_NUMBER.search(student)
    if number and number.group(1) in ids:
        return number.group(1)
    return (emails or {}).get(student.casefold()) if "@" in student else None


@dataclass(frozen=True)
class Matched:
    """Submissions matched to the roster: those to grade, under the roster's ids, and one line
    for each file that names no student, or one the roster does not list, and for each copy of
    a notebook that another copy handed in with it replaces (`one_per_notebook`)."""

    submissions: list[Submission]
    unmatched: list[str]
    duplicates: list[str] = dataclasses.field(default_factory=list)


def match_submissions(found: Sequence[Submission], roster: Sequence[RosterEntry]) -> Matched:
    """`found` with each student key made the roster id it names (`roster_id`); without a
    roster, every key stands as it is. A file that names no student, or a student the roster
    does not list, is not graded: it gets a line of the run's summary instead."""
    ids, emails = _keys(roster)
    matched, unmatched = [], []
    for submission in found:
        key = roster_id(submission.student, ids, emails) if ids else submission.student
        if not submission.student:
            unmatched.append(f"{submission.file}: {submission.problem}")
        elif not key:
            unmatched.append(
                f"{submission.file}: student {submission.student!r} is not on the roster (by "
                "id, participant number or e-mail), so it was not graded"
            )
        else:
            matched.append(dataclasses.replace(submission, student=key))
    kept, duplicates = one_per_notebook(matched)
    return Matched(kept, unmatched, duplicates)


def one_per_notebook(found: Sequence[Submission]) -> tuple[list[Submission], list[str]]:
    """`found` with one file of each notebook a student handed in at one time, and a line for
    each other one.

    Two copies in one zip or folder (`a/01.ipynb`, `b/01.ipynb`) were handed in at the same time,
    so time cannot tell which counts, and the gradebook keeps one: the one that can be graded,
    nearest the top of the zip or folder, then first by path, is graded; the others are not.
    """
    groups: dict[tuple[str, str, datetime], list[Submission]] = {}
    for submission in found:
        key = (submission.student, submission.exercise, submission.submitted_at)
        groups.setdefault(key, []).append(submission)
    kept = {min(group, key=_nearest_first) for group in groups.values()}
    lines = [
        f"{submission.file}: not graded: {first.file} was, another file of {submission.exercise} "
        f"by {submission.student} handed in with it (the one nearest the top counts; hand in one)"
        for group in groups.values()
        for first in [min(group, key=_nearest_first)]
        for submission in group
        if submission is not first
    ]
    return [submission for submission in found if submission in kept], lines


def _nearest_first(submission: Submission) -> tuple[bool, int, str]:
    return bool(submission.problem), submission.file.count("/"), submission.file


def _keys(roster: Sequence[RosterEntry]) -> tuple[set[str], dict[str, str]]:
    """The roster's ids, and its e-mail addresses (folded) -> id, as `roster_id` takes them."""
    ids = {entry.lms_id for entry in roster}
    return ids, {entry.email.casefold(): entry.lms_id for entry in roster if entry.email}


def match_roster(
    graded: Sequence[GradedNotebook], roster: Sequence[RosterEntry]
) -> list[GradedNotebook]:
    """`graded` with each student that matches a roster entry keyed by its id; of two
    submissions of one notebook that now share a student, the later one."""
    ids, emails = _keys(roster)
    latest: dict[tuple[str, str], GradedNotebook] = {}
    for item in sorted(graded, key=lambda g: (g.submitted_at, g.graded_at)):
        key = roster_id(item.student, ids, emails) or item.student
        latest[(key, item.result.notebook)] = dataclasses.replace(item, student=key)
    return sorted(latest.values(), key=lambda g: (g.student, g.result.notebook))

"""Collect a class's submissions: a folder per student, a zip of one, or an LMS download.

Layouts, which may be mixed in one folder:

- `SUBMISSIONS/<student>/<notebook>.ipynb`: the folder's name is the student; notebooks may sit
  deeper inside it (hidden folders, `__MACOSX` and `.ipynb_checkpoints` are skipped);
- `SUBMISSIONS/<student>_<anything>_<notebook>.ipynb` (flat, as Canvas, Moodle and Blackboard
  downloads are named): the student is everything before the first `_`, with the LMS's
  participant number where the name carries one (Moodle, Canvas); the notebook is the exercise
  whose name the file name ends with;
- a `.zip` of either. A zip whose only top-level entry is a folder named like the archive (as
  "compress folder" makes them) is read as that folder.

A counter an LMS or a browser appends to a re-downloaded file (`-1`, ` (2)`) is ignored when the
name without it is an exercise. A file that matches no exercise is still collected: grading
records it with a message that names the file and the exercises.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import tempfile
import zipfile
import zlib
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath

from grader.errors import SubmissionsError
from grader.prepare import MAX_NOTEBOOK_BYTES

SKIPPED_FOLDERS = {"__MACOSX", ".ipynb_checkpoints"}
MAX_ARCHIVE_ENTRIES = 100_000
MAX_ARCHIVE_BYTES = 4 * 1024**3
"""Bytes extracted from one archive, at most (each notebook is cut at the notebook limit)."""
_COPY_COUNTER = re.compile(r"(-\d+| \(\d+\))$")
_MOODLE_PARTICIPANT = re.compile(r"(\d+)_assignsubmission_")
_CANVAS_USER = re.compile(r"(?:LATE_)?(\d+)_\d{3,}_")  # user id, then the file id (large)


@dataclass(frozen=True)
class Submission:
    """One notebook handed in by one student."""

    student: str
    exercise: str
    path: Path
    file: str
    """Where it was found, relative to the submissions folder or archive."""
    sha256: str
    submitted_at: datetime
    problem: str = ""
    """Why it cannot be graded at all (it is still recorded, with this message)."""


@contextmanager
def open_submissions(source: Path, exercises: Collection[str]) -> Iterator[list[Submission]]:
    """The submissions in folder or zip `source`, sorted by student and file.

    An archive is extracted into a temporary folder that lives as long as the context.
    """
    if source.is_dir():
        yield _some(source, find_submissions(source, exercises))
    elif source.is_file() and zipfile.is_zipfile(source):
        with tempfile.TemporaryDirectory(prefix="grader-submissions-") as folder:
            root, problems = extract_archive(source, Path(folder))
            yield _some(source, find_submissions(root, exercises, problems))
    elif source.is_file():
        raise SubmissionsError(f"{source}: not a folder or a .zip archive of submissions")
    else:
        raise SubmissionsError(f"{source}: no such folder or archive")


def _some(source: Path, found: list[Submission]) -> list[Submission]:
    if not found:
        raise SubmissionsError(
            f"{source}: no .ipynb notebooks found (expected <student>/<notebook>.ipynb "
            "or <student>_<anything>_<notebook>.ipynb)"
        )
    return found


def find_submissions(
    root: Path, exercises: Collection[str], problems: dict[Path, str] | None = None
) -> list[Submission]:
    """Every notebook under `root`, with its student and exercise."""
    problems = problems or {}
    found = []
    for entry in sorted(root.iterdir()):
        if _skipped(entry):
            continue
        if entry.is_dir() and not entry.is_symlink():
            for path in _notebooks_below(entry):
                exercise = exercise_name(path.stem, exercises)
                found.append(_submission(root, path, entry.name, exercise, problems))
        elif entry.suffix == ".ipynb":
            student, exercise, problem = parse_flat_name(entry.stem, exercises)
            found.append(_submission(root, entry, student, exercise, problems, problem))
    return found


def _skipped(entry: Path) -> bool:
    return entry.name.startswith(".") or entry.name in SKIPPED_FOLDERS


def _notebooks_below(folder: Path) -> Iterator[Path]:
    for entry in sorted(folder.iterdir()):
        if _skipped(entry):
            continue
        if entry.is_dir() and not entry.is_symlink():
            yield from _notebooks_below(entry)
        elif entry.suffix == ".ipynb":
            yield entry


def exercise_name(stem: str, exercises: Collection[str]) -> str:
    """The exercise a file stem names, ignoring a copy counter (`-1`, ` (2)`) if need be."""
    if stem in exercises:
        return stem
    return _COPY_COUNTER.sub("", stem)


def parse_flat_name(stem: str, exercises: Collection[str]) -> tuple[str, str, str]:
    """(student, exercise, problem) of an LMS file name `<student>_<anything>_<notebook>`.

    Where the LMS puts its participant number after the name (Moodle's
    `<name>_<participant>_assignsubmission_...`, Canvas's `<name>[_LATE]_<user>_<file id>_...`),
    the number is part of the student: two participants with the same display name stay two.
    """
    student, underscore, rest = stem.partition("_")
    if not underscore or not student.strip():
        return (
            f"(unknown: {stem})",
            stem,
            "the student cannot be told from the file name: put each student's notebooks in a "
            "folder named after the student, or name files <student>_<anything>_<notebook>.ipynb",
        )
    participant = _lms_participant(rest)
    if participant:
        student = f"{student}_{participant}"
    for candidate in dict.fromkeys([rest, _COPY_COUNTER.sub("", rest)]):
        matches = [e for e in exercises if candidate == e or candidate.endswith(f"_{e}")]
        if matches:
            return student, max(matches, key=len), ""
    return student, exercise_name(rest, exercises), ""


def _lms_participant(rest: str) -> str:
    """The LMS's participant (user) number at the start of `rest`, or "" if it has none."""
    found = _MOODLE_PARTICIPANT.match(rest) or _CANVAS_USER.match(rest)
    return found.group(1) if found else ""


def _submission(
    root: Path,
    path: Path,
    student: str,
    exercise: str,
    problems: dict[Path, str],
    problem: str = "",
) -> Submission:
    if path.is_symlink():
        problem = "a symbolic link, not a notebook file: it was not followed"
        digest = hashlib.sha256(str(path.readlink()).encode()).hexdigest()
        mtime = path.lstat().st_mtime
    else:
        digest, mtime = file_digest(path), path.stat().st_mtime
    return Submission(
        student=student,
        exercise=exercise,
        path=path,
        file=path.relative_to(root).as_posix(),
        sha256=digest,
        submitted_at=datetime.fromtimestamp(mtime, timezone.utc).replace(tzinfo=None),
        problem=problem or problems.get(path, ""),
    )


def file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes, in hex."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def extract_archive(archive: Path, into: Path) -> tuple[Path, dict[Path, str]]:
    """Extract the notebooks of `archive` safely; return the submissions root and, for each
    entry that could not be extracted, why.

    Only `.ipynb` entries are written, always as plain files under `into` (no absolute paths,
    no `..`, no links), each cut one byte past the notebook size limit, so that a lying or
    oversized entry is reported by grading, not unpacked whole.
    """
    problems: dict[Path, str] = {}
    budget = MAX_ARCHIVE_BYTES
    with zipfile.ZipFile(archive) as zipped:
        entries = zipped.infolist()
        if len(entries) > MAX_ARCHIVE_ENTRIES:
            raise SubmissionsError(
                f"{archive}: {len(entries)} entries; at most {MAX_ARCHIVE_ENTRIES} are read"
            )
        for info in entries:
            relative = safe_member_path(info.filename)
            if info.is_dir() or relative is None or relative.suffix != ".ipynb":
                continue
            target = into.joinpath(*relative.parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            written, problem = _extract_member(zipped, info, target, budget)
            budget -= written
            stamp = datetime(*info.date_time, tzinfo=timezone.utc).timestamp()
            os.utime(target, (stamp, stamp))  # the entry's time is when it was handed in
            if problem:
                problems[target] = problem
    return _archive_root(archive, into), problems


def safe_member_path(name: str) -> PurePosixPath | None:
    """The relative path an archive entry may be written to, or None for an unsafe name."""
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or not path.parts or ".." in path.parts or ":" in path.parts[0]:
        return None
    return path


def _extract_member(
    zipped: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, budget: int
) -> tuple[int, str]:
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        target.write_bytes(b"")
        return 0, "a symbolic link in the archive, not a notebook file"
    limit = min(MAX_NOTEBOOK_BYTES + 1, max(budget, 0))
    try:
        with zipped.open(info) as member, target.open("wb") as out:
            data = member.read(limit)
            out.write(data)
    except (zipfile.BadZipFile, zlib.error, RuntimeError, OSError, EOFError, ValueError) as error:
        target.write_bytes(b"")
        return 0, f"the archive entry could not be extracted ({error})"
    if budget <= 0:
        return 0, f"not extracted: the archive holds more than {MAX_ARCHIVE_BYTES} bytes"
    return len(data), ""


def _archive_root(archive: Path, into: Path) -> Path:
    entries = [entry for entry in into.iterdir() if not _skipped(entry)]
    if len(entries) == 1 and entries[0].is_dir() and entries[0].name == archive.stem:
        return entries[0]
    return into

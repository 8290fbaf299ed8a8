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

import dataclasses
import hashlib
import lzma
import os
import re
import stat
import tempfile
import unicodedata
import zipfile
import zlib
from collections import Counter
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath

from grader.errors import SubmissionsError
from grader.untrusted import MAX_NOTEBOOK_BYTES, display_name, safe_file_name

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
    """The submissions in folder or zip `source`, in the order of their paths.

    An archive is extracted into a temporary folder that lives as long as the context.
    """
    if source.is_dir():
        try:
            found = find_submissions(source, exercises)
        except OSError as error:
            raise SubmissionsError(f"{source}: cannot be read ({error.strerror})") from None
        yield _some(source, found)
    elif source.is_file() and zipfile.is_zipfile(source):
        with tempfile.TemporaryDirectory(prefix="grader-submissions-") as folder:
            yield _some(source, extract_archive(source, Path(folder), exercises))
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


def find_submissions(root: Path, exercises: Collection[str]) -> list[Submission]:
    """Every notebook under folder `root`, with its student and exercise.

    The folder is walked without recursion, to any depth, and links are never followed.
    Whatever is named `.ipynb` but is no readable regular file (a link, a folder inside a
    student's folder, a FIFO, a file that cannot be opened) is collected with the reason it
    cannot be graded. Names are shown with `grader.untrusted.display_name`.
    """
    return [
        _submission_on_disk(root, path, exercises, problem)
        for path, problem in _notebook_paths(root)
    ]


def _notebook_paths(root: Path) -> Iterator[tuple[Path, str]]:
    """What is named `.ipynb` below `root`, in path order (the top level's folders are the
    students' folders, whatever their names), and each folder that cannot be listed, with why."""
    listings = [iter(_listing(root))]
    while listings:
        entry = next(listings[-1], None)
        if entry is None:
            listings.pop()
            continue
        folder = entry.is_dir() and not entry.is_symlink()  # False where it cannot be seen
        if entry.name.endswith(".ipynb") and not (folder and entry.parent == root):
            yield entry, ""
        if folder:
            try:
                listings.append(iter(_listing(entry)))
            except OSError as error:
                yield (
                    entry,
                    f"the folder cannot be read ({error.strerror}): nothing in it was collected",
                )


def _listing(folder: Path) -> list[Path]:
    return [entry for entry in sorted(folder.iterdir()) if not _skipped(entry.name)]


def _skipped(name: str) -> bool:
    return (name.startswith(".") and name != "..") or name in SKIPPED_FOLDERS


def _submission_on_disk(
    root: Path, path: Path, exercises: Collection[str], problem: str
) -> Submission:
    parts = path.relative_to(root).parts
    student, exercise, file, naming = _identity(parts, exercises)
    kind, digest, mtime = _inspect(path, parts)
    return Submission(
        student=student,
        exercise=exercise,
        path=path,
        file=file,
        sha256=digest,
        submitted_at=_utc(mtime),
        problem=problem or naming or kind,
    )


def _identity(parts: Sequence[str], exercises: Collection[str]) -> tuple[str, str, str, str]:
    """(student, exercise, file, problem) of a notebook at relative path `parts`, in the layouts
    of the module's docstring; every name as `display_name` shows it."""
    stem = display_name(parts[-1].removesuffix(".ipynb"))
    shown = [display_name(part) for part in parts]
    if len(parts) == 1:
        student, exercise, problem = parse_flat_name(stem, exercises)
    else:
        student, exercise, problem = shown[0], exercise_name(stem, exercises), ""
    return student, exercise, "/".join(shown), problem


def _inspect(path: Path, parts: Sequence[str]) -> tuple[str, str, float]:
    """(why it cannot be graded or "", SHA-256, modification time) of a file found on disk."""
    named = _name_digest("/".join(parts))
    try:
        info = path.lstat()
        if stat.S_ISLNK(info.st_mode):
            target = _name_digest(os.readlink(path))
            return (
                "a symbolic link, not a notebook file: it was not followed",
                target,
                info.st_mtime,
            )
        if stat.S_ISDIR(info.st_mode):
            return "a folder, not a notebook file", named, info.st_mtime
        if not stat.S_ISREG(info.st_mode):
            return "not a regular file (a FIFO, socket or device)", named, info.st_mtime
        return "", file_digest(path), info.st_mtime
    except OSError as error:
        return f"the file cannot be read ({error.strerror})", named, 0.0


def _name_digest(name: str) -> str:
    return hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()


def _utc(timestamp: float) -> datetime:
    """A file time as naive UTC; one no calendar date can hold (a forged time) as 1970-01-01."""
    try:
        return datetime.fromtimestamp(timestamp, timezone.utc).replace(tzinfo=None)
    except (OverflowError, OSError, ValueError):
        return datetime(1970, 1, 1)


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


def file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes, in hex."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def extract_archive(archive: Path, into: Path, exercises: Collection[str]) -> list[Submission]:
    """The notebooks of `archive`, extracted safely into `into`, with their students.

    Student and file come from each entry's name as they would from a folder. The notebooks are
    not written under those names, though: the n-th one goes to `into/<n>/<its file name, made
    safe>`, always as a plain file cut one byte past the notebook size limit, so that no name
    (too long, clashing, absolute, with `..` or a NUL) can fail or escape the extraction and a
    lying or oversized entry is reported by grading, not unpacked whole. An entry that cannot be
    graded is collected with the reason: an unsafe name, a NUL in its name, a name another entry
    also has (exactly, or but for case, Unicode normalisation or separators), a link, a folder,
    damaged data, the archive's size budget spent. An entry whose date is no date (month 0, ...)
    gets the archive's own time.
    """
    fallback = _utc(archive.stat().st_mtime)
    try:
        zipped = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, RuntimeError) as error:
        raise SubmissionsError(f"{archive}: cannot be read as a zip archive ({error})") from None
    with zipped:
        entries = _notebook_entries(archive, zipped.infolist())
        budget = MAX_ARCHIVE_BYTES
        found = []
        for index, entry in enumerate(entries):
            target = into / f"{index:06d}" / safe_file_name(entry.parts[-1], ".ipynb")
            problem, digest = entry.problem, _name_digest(entry.info.orig_filename)
            if not problem:
                data, problem = _read_member(zipped, entry.info, budget)
                budget -= len(data)
            if not problem:
                digest = hashlib.sha256(data).hexdigest()
                target.parent.mkdir()
                target.write_bytes(data)
            student, exercise, file, naming = _identity(entry.parts, exercises)
            found.append(
                Submission(
                    student, exercise, target, file, digest, _entry_time(entry.info, fallback),
                    problem or naming,
                )
            )  # fmt: skip
    return found


@dataclass(frozen=True)
class _Entry:
    """An archive entry named `.ipynb`: its path in the archive and why it is not extracted."""

    info: zipfile.ZipInfo
    parts: tuple[str, ...]
    problem: str


def _notebook_entries(archive: Path, infos: list[zipfile.ZipInfo]) -> list[_Entry]:
    """The entries named `.ipynb`, in path order, without a top folder named like the archive."""
    if len(infos) > MAX_ARCHIVE_ENTRIES:
        raise SubmissionsError(
            f"{archive}: {len(infos)} entries; at most {MAX_ARCHIVE_ENTRIES} are read"
        )
    entries = [entry for info in infos if (entry := _notebook_entry(info)) is not None]
    if entries and all(len(e.parts) > 1 and e.parts[0] == archive.stem for e in entries):
        entries = [dataclasses.replace(e, parts=e.parts[1:]) for e in entries]
    return sorted(_with_clashes(entries), key=lambda entry: entry.parts)


def _notebook_entry(info: zipfile.ZipInfo) -> _Entry | None:
    # zipfile cuts a name at a NUL (`filename`); `orig_filename` keeps all of it
    name = info.filename if _named_notebook(info.filename) else info.orig_filename
    parts = tuple(part for part in name.replace("\\", "/").split("/") if part not in ("", "."))
    if not _named_notebook(name) or any(_skipped(part) for part in parts):
        return None
    mode = info.external_attr >> 16
    problem = ""
    if "\0" in info.orig_filename:
        problem = "its name in the archive holds a NUL character: it was not extracted"
    elif safe_member_path(name) is None:
        problem = "its path in the archive is absolute or has `..`: it was not extracted"
    elif info.is_dir() or stat.S_ISDIR(mode):
        problem = "a folder in the archive, not a notebook file"
    elif stat.S_ISLNK(mode):
        problem = "a symbolic link in the archive, not a notebook file"
    return _Entry(info, parts, problem)


def _named_notebook(name: str) -> bool:
    return name.rstrip("/").endswith(".ipynb")


def _with_clashes(entries: list[_Entry]) -> list[_Entry]:
    """`entries`, those whose paths are one path to a file system that folds case or Unicode
    normalisation marked: which of them the student meant cannot be told."""
    keys = [unicodedata.normalize("NFC", "/".join(entry.parts)).casefold() for entry in entries]
    count = Counter(keys)
    return [
        dataclasses.replace(
            entry,
            problem=f"the archive holds {count[key]} entries with this name (exactly, or but for "
            "case, separators or a NUL): none of them was graded, hand in one",
        )
        if count[key] > 1
        else entry
        for entry, key in zip(entries, keys, strict=True)
    ]


def safe_member_path(name: str) -> PurePosixPath | None:
    """The relative path of an archive entry, or None for an unsafe (absolute, `..`) name."""
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or not path.parts or ".." in path.parts or ":" in path.parts[0]:
        return None
    return path


def _read_member(zipped: zipfile.ZipFile, info: zipfile.ZipInfo, budget: int) -> tuple[bytes, str]:
    """The entry's bytes (at most one past the notebook limit), or why they cannot be read."""
    if budget <= 0:
        return b"", f"not extracted: the archive holds more than {MAX_ARCHIVE_BYTES} bytes"
    try:
        with zipped.open(info) as member:
            return member.read(min(MAX_NOTEBOOK_BYTES + 1, budget)), ""
    except (zipfile.BadZipFile, zlib.error, lzma.LZMAError, RuntimeError, OSError, EOFError,
            ValueError) as error:  # fmt: skip
        return b"", f"the archive entry could not be extracted ({error})"


def _entry_time(info: zipfile.ZipInfo, fallback: datetime) -> datetime:
    """When the entry was handed in: its date in the archive, if that is a date at all."""
    try:
        return datetime(*info.date_time)
    except (ValueError, TypeError):
        return fallback

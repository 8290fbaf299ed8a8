"""Collect a class's submissions: folders, zips and LMS downloads, nested as LMS nest them.

Layouts, which may be mixed in one folder (or in a zip of one):

- `SUBMISSIONS/<student>/<notebook>.ipynb`: the folder is the student's; notebooks may sit
  deeper inside it (hidden folders, `__MACOSX` and `.ipynb_checkpoints` are skipped). A Moodle
  folder `<name>_<participant>_assignsubmission_file_/` is student `<name>_<participant>`;
- `SUBMISSIONS/<student>.zip` (a student's one upload; also `<student>/<anything>.zip`): its
  notebooks are the student's, named as in a folder. Its name is read as a folder's, and
  Canvas's `<name>[_late]_<user>_<file id>_<file>.zip` is student `<name>_<user>`;
- `SUBMISSIONS/<student>_<anything>_<notebook>.ipynb` (flat, as Canvas, Moodle and Blackboard
  downloads are named): the student is everything before the first `_`, with the LMS's
  participant number where the name carries one (Moodle, Canvas); the notebook is the exercise
  whose name the file name ends with. `[tool.grader] submission_pattern` replaces this rule
  (`FileNamePattern`). A file named after the notebook alone has no student: it is reported,
  not graded;
- the whole of it as one `.zip`. A zip whose only top-level entry is a folder named like the
  archive (as "compress folder" makes them) is read as that folder.

One archive is opened inside another (a class's zip of students' zips), no deeper: a zip found
further down is recorded as not opened. Canvas's late mark (`_late_` or `_LATE_` after the name)
is kept as `Submission.lms_late`.

A counter an LMS or a browser appends to a re-downloaded file (`-1`, ` (2)`) is ignored when the
name without it is an exercise. A file that matches no exercise is still collected: grading
records it with a message that names the file and the exercises.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
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
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath

from grader.errors import ConfigError, SubmissionsError
from grader.untrusted import MAX_NOTEBOOK_BYTES, display_name, safe_file_name

SKIPPED_FOLDERS = {"__MACOSX", ".ipynb_checkpoints"}
MAX_ARCHIVE_ENTRIES = 100_000
MAX_ARCHIVE_BYTES = 4 * 1024**3
"""Bytes extracted from the submissions' archives together, at most (each notebook is cut at
the notebook limit, each student's zip inside a zip at `MAX_INNER_ARCHIVE_BYTES`)."""
MAX_INNER_ARCHIVE_BYTES = 256 * 1024**2
MAX_STUDENT_ARCHIVE_BYTES = 2 * MAX_INNER_ARCHIVE_BYTES
"""Bytes one student's zip takes of `MAX_ARCHIVE_BYTES`, at most: its own copy and what is
extracted from it, so that no student's zip bomb leaves the others' notebooks unextracted."""
MAX_STUDENT_NOTEBOOKS = 100
"""Notebooks of one student's zip that are graded (a course has a handful; a zip of thousands
would fill the gradebook and the batch with one student's rows)."""
NESTED_ARCHIVES = 1
"""Archives opened inside the submissions' own folder or zip: a student's zip, not a zip in it."""
_COPY_COUNTER = re.compile(r"(-\d+| \(\d+\))$")
# The participant number follows the name; of several, the first (the file's own name, which the
# student chose, comes last).
_MOODLE = re.compile(r"(?P<name>.+?)_(?P<id>\d+)_assignsubmission_")
_CANVAS = re.compile(r"(?P<late>late_)?(?P<id>\d+)_\d{3,}_", re.IGNORECASE)  # user, file id
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
NO_STUDENT = (
    "put each student's notebooks in a folder (or a zip) named after the student, or name files "
    "<student>_<anything>_<notebook>.ipynb"
)


@dataclass(frozen=True)
class Submission:
    """One notebook handed in by one student."""

    student: str
    """The student key ("" where the name tells none: such a file is reported, not graded)."""
    exercise: str
    path: Path
    file: str
    """Where it was found, relative to the submissions folder or archive."""
    sha256: str
    submitted_at: datetime
    problem: str = ""
    """Why it cannot be graded at all (it is still recorded, with this message)."""
    lms_late: bool = False
    """The LMS marked it late (Canvas's `_late_` in the file's or the student's zip's name); the
    gradebook keeps it, and `grader.standing` counts such work at least a day late."""


@dataclass(frozen=True)
class FileNamePattern:
    """`[tool.grader] submission_pattern`: how a notebook's file name names student and notebook.

    A template (`{student}_{notebook}.ipynb`; `{any}` stands for any text) or, if it holds a
    named group, a regular expression with the groups `student` and `notebook`; either must
    match the whole file name. A template's `{notebook}` is the longest exercise name that fits
    (a copy counter after it allowed), else any text.
    """

    text: str

    @property
    def is_regex(self) -> bool:
        return "(?P<" in self.text

    def read(self, name: str, exercises: Collection[str]) -> tuple[str, str] | None:
        """(student, notebook) named by file name `name`, or None where it does not match."""
        if self.is_regex:
            attempts = [self.text]
        else:
            known = "|".join(re.escape(e) for e in sorted(exercises, key=len, reverse=True))
            attempts = [self._regex(f"(?P<notebook>{known})(?:-\\d+| \\(\\d+\\))?")] * bool(known)
            attempts.append(self._regex("(?P<notebook>.+?)"))
        for regex in attempts:
            found = re.fullmatch(regex, name, re.DOTALL)
            if found and found.group("student").strip():
                return found.group("student"), found.group("notebook")
        return None

    def _regex(self, notebook: str) -> str:
        pieces = {"student": "(?P<student>.+?)", "notebook": notebook, "any": ".*?"}
        parts = _PLACEHOLDER.split(self.text)  # literal, placeholder, literal, ...
        return "".join(pieces[p] if i % 2 else re.escape(p) for i, p in enumerate(parts))


def file_name_pattern(text: str) -> FileNamePattern:
    """`text` as a `FileNamePattern`, or a one-line `ConfigError` saying what is wrong."""
    where = f"[tool.grader] submission_pattern {text!r}"
    pattern = FileNamePattern(text)
    if pattern.is_regex:
        try:
            groups = set(re.compile(text).groupindex)
        except re.error as error:
            raise ConfigError(f"{where} is not a valid regular expression ({error})") from None
        if not {"student", "notebook"} <= groups:
            raise ConfigError(
                f"{where} needs the named groups (?P<student>...) and (?P<notebook>...)"
            )
        return pattern
    names = _PLACEHOLDER.findall(text)
    if sorted(n for n in names if n != "any") != ["notebook", "student"]:
        raise ConfigError(
            f"{where} must hold {{student}} and {{notebook}} once each ({{any}} for any text), "
            "or be a regular expression with those named groups"
        )
    if "{" in _PLACEHOLDER.sub("", text) or "}" in _PLACEHOLDER.sub("", text):
        raise ConfigError(f"{where} has a brace outside a placeholder")
    return pattern


@dataclass(frozen=True)
class NameReading:
    """What a file or folder name says: student ("" for none), exercise, LMS late mark, and why
    it cannot be graded."""

    student: str
    exercise: str
    late: bool = False
    problem: str = ""


@dataclass(frozen=True)
class _Naming:
    exercises: Collection[str]
    pattern: FileNamePattern | None


@dataclass
class _Scratch:
    """Where archives are extracted: numbered folders, and the bytes they may still take."""

    root: Path
    budget: int = field(default_factory=lambda: MAX_ARCHIVE_BYTES)
    counter: Iterator[int] = field(default_factory=itertools.count)
    spent: str = field(
        default_factory=lambda: (
            f"the submissions' archives hold more than {MAX_ARCHIVE_BYTES} bytes"
        )
    )
    """Why an entry is not extracted once the budget is spent."""

    @contextmanager
    def student_share(self) -> Iterator[_Scratch]:
        """The part of the budget one student's zip may take (`MAX_STUDENT_ARCHIVE_BYTES`),
        numbering folders on with this scratch; what it used is taken from this budget."""
        granted = min(self.budget, MAX_STUDENT_ARCHIVE_BYTES)
        share = dataclasses.replace(self, budget=granted)
        if granted == MAX_STUDENT_ARCHIVE_BYTES:
            share.spent = f"this student's zip holds more than {granted} bytes"
        try:
            yield share
        finally:
            self.budget -= granted - share.budget

    def new_folder(self) -> Path:
        folder = self.root / f"{next(self.counter):06d}"
        folder.mkdir()
        return folder


@dataclass(frozen=True)
class _Found:
    """A file collected: its path from the submissions' top (archives' names included), where it
    lies on disk, its SHA-256 and time, and why it cannot be graded."""

    parts: tuple[str, ...]
    path: Path
    sha256: str
    submitted_at: datetime
    problem: str = ""


@contextmanager
def open_submissions(
    source: Path, exercises: Collection[str], pattern: str = ""
) -> Iterator[list[Submission]]:
    """The submissions in folder or zip `source`, in the order of their paths.

    `pattern`: `[tool.grader] submission_pattern` ("": the LMS rules of the module's docstring).
    Archives are extracted into a temporary folder that lives as long as the context.
    """
    naming = _Naming(exercises, file_name_pattern(pattern) if pattern else None)
    with tempfile.TemporaryDirectory(prefix="grader-submissions-") as folder:
        scratch = _Scratch(Path(folder))
        if source.is_dir():
            try:
                found = _walk(source, scratch)
            except OSError as error:
                raise SubmissionsError(f"{source}: cannot be read ({error.strerror})") from None
        elif source.is_file() and zipfile.is_zipfile(source):
            found = extract_archive(source, scratch, (), NESTED_ARCHIVES)
        elif source.is_file():
            raise SubmissionsError(f"{source}: not a folder or a .zip archive of submissions")
        else:
            raise SubmissionsError(f"{source}: no such folder or archive")
        yield _some(source, [_submission(item, naming) for item in found])


def _some(source: Path, found: list[Submission]) -> list[Submission]:
    if not found:
        raise SubmissionsError(
            f"{source}: no .ipynb notebooks found (expected <student>/<notebook>.ipynb, "
            "<student>.zip or <student>_<anything>_<notebook>.ipynb)"
        )
    return found


def _submission(found: _Found, naming: _Naming) -> Submission:
    reading = read_name(found.parts, naming.exercises, naming.pattern)
    return Submission(
        student=reading.student,
        exercise=reading.exercise,
        path=found.path,
        file="/".join(display_name(part) for part in found.parts),
        sha256=found.sha256,
        submitted_at=found.submitted_at,
        problem=found.problem or reading.problem,
        lms_late=reading.late,
    )


def _walk(root: Path, scratch: _Scratch) -> list[_Found]:
    """Every notebook under folder `root`, and those of every zip in it (`extract_archive`).

    The folder is walked without recursion, to any depth, and links are never followed.
    Whatever is named `.ipynb` but is no readable regular file (a link, a folder inside a
    student's folder, a FIFO, a file that cannot be opened) is collected with the reason it
    cannot be graded; so is a zip that cannot be read.
    """
    found: list[_Found] = []
    root = _download_root(root)
    for path, problem in _notebook_paths(root):
        parts = path.relative_to(root).parts
        if path.name.endswith(".zip") and not problem:
            found += _archive_on_disk(path, parts, scratch)
        else:
            found.append(_found_on_disk(path, parts, problem))
    return found


def _download_root(folder: Path) -> Path:
    """`folder`, or the one folder in it where that holds an LMS's student folders and files
    alone (a download unpacked with the LMS's own top folder, `Homework 1-123/...`)."""
    entries = _listing(folder)
    if len(entries) == 1 and entries[0].is_dir() and not entries[0].is_symlink():
        if _lms_download([entry.name for entry in _listing(entries[0])]):
            return entries[0]
    return folder


def _lms_download(names: Sequence[str]) -> bool:
    """Whether every one of `names` is named as an LMS names a student's folder or file."""
    stems = [display_name(name).removesuffix(".zip").removesuffix(".ipynb") for name in names]
    return bool(stems) and all(_lms_student(stem)[0] for stem in stems)


def _archive_on_disk(path: Path, parts: tuple[str, ...], scratch: _Scratch) -> list[_Found]:
    kind, digest, mtime = _inspect(path, parts)
    if kind:
        return [_found_on_disk(path, parts, kind)]
    with scratch.student_share() as share:
        return _student_archive(path, parts, share, NESTED_ARCHIVES - 1, _utc(mtime), digest)


def _student_archive(
    archive: Path,
    parts: tuple[str, ...],
    scratch: _Scratch,
    nested: int,
    when: datetime,
    digest: str,
) -> list[_Found]:
    """The notebooks of a student's zip, or the zip with why none of them can be graded."""
    try:
        found = extract_archive(archive, scratch, parts, nested, when)
    except SubmissionsError:
        return [_Found(parts, archive, digest, when, "a zip that cannot be read: nothing in it "
                       "was graded")]  # fmt: skip
    if not found:
        return [_Found(parts, archive, digest, when, "a zip without .ipynb notebooks in it")]
    if len(found) > MAX_STUDENT_NOTEBOOKS:
        more = f"{len(found) - MAX_STUDENT_NOTEBOOKS} more notebooks in this zip were not graded"
        problem = f"{more}: at most {MAX_STUDENT_NOTEBOOKS} of a student's zip are, in path order"
        return [*found[:MAX_STUDENT_NOTEBOOKS], _Found(parts, archive, digest, when, problem)]
    return found


def _notebook_paths(root: Path) -> Iterator[tuple[Path, str]]:
    """What is named `.ipynb` or `.zip` below `root`, in path order (the top level's folders are
    the students' folders, whatever their names), and each folder that cannot be listed, with
    why."""
    listings = [iter(_listing(root))]
    while listings:
        entry = next(listings[-1], None)
        if entry is None:
            listings.pop()
            continue
        folder = entry.is_dir() and not entry.is_symlink()  # False where it cannot be seen
        if entry.name.endswith(".ipynb") and not (folder and entry.parent == root):
            yield entry, ""
        elif entry.name.endswith(".zip") and not folder:
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


def _found_on_disk(path: Path, parts: Sequence[str], problem: str) -> _Found:
    kind, digest, mtime = _inspect(path, parts)
    return _Found(tuple(parts), path, digest, _utc(mtime), problem or kind)


def read_name(
    parts: Sequence[str], exercises: Collection[str], pattern: FileNamePattern | None = None
) -> NameReading:
    """Student, exercise and late mark of a notebook at relative path `parts`, in the layouts
    of the module's docstring; every name as `display_name` shows it."""
    stem = display_name(parts[-1].removesuffix(".ipynb"))
    if len(parts) > 1 or parts[0].endswith(".zip"):
        owner = read_owner(display_name(parts[0]))
        return dataclasses.replace(owner, exercise=exercise_name(stem, exercises))
    if pattern is not None:
        return _read_by_pattern(display_name(parts[0]), stem, exercises, pattern)
    return parse_flat_name(stem, exercises)


def _read_by_pattern(
    name: str, stem: str, exercises: Collection[str], pattern: FileNamePattern
) -> NameReading:
    read = pattern.read(name, exercises)
    if read is None:
        return NameReading(
            "",
            exercise_name(stem, exercises),
            problem=f"the file name does not match [tool.grader] submission_pattern "
            f"{pattern.text!r}, so its student is not known",
        )
    return NameReading(read[0], exercise_name(read[1], exercises))


def read_owner(name: str) -> NameReading:
    """The student whose folder or zip `name` is (at the top of the submissions): the name, or
    an LMS's `<name>_<participant>` where it carries the LMS's naming, with Canvas's late mark."""
    stem = name.removesuffix(".zip")
    student, late = _lms_student(stem)
    return NameReading(student or stem, "", late)


def _lms_student(stem: str) -> tuple[str, bool]:
    """(`<name>_<participant>`, late) where `stem` is named as Moodle or Canvas name their
    downloads; ("", False) where it is not."""
    readings = []  # (where the LMS's part ends, student, late)
    moodle = _MOODLE.match(stem)
    if moodle:
        readings.append((moodle.end(), f"{moodle.group('name')}_{moodle.group('id')}", False))
    name, underscore, rest = stem.partition("_")
    canvas = _CANVAS.match(rest) if underscore and name.strip() else None
    if canvas:
        end = len(name) + 1 + canvas.end()
        readings.append((end, f"{name}_{canvas.group('id')}", bool(canvas.group("late"))))
    # The LMS's part comes first and the student's own file name after it: of two readings,
    # the one that ends sooner is the LMS's (a Canvas file the student named
    # `x_4711_assignsubmission_<notebook>` must not read as Moodle's participant 4711).
    if not readings:
        return "", False
    _, student, late = min(readings)
    return student, late


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
    """The exercise a file stem names: itself, itself without a copy counter (`-1`, ` (2)`), or
    the longest exercise it ends with after a `_`; else the stem (grading says it is none)."""
    for candidate in dict.fromkeys([stem, _COPY_COUNTER.sub("", stem)]):
        matches = [e for e in exercises if candidate == e or candidate.endswith(f"_{e}")]
        if matches:
            return max(matches, key=len)
    return _COPY_COUNTER.sub("", stem)


def parse_flat_name(stem: str, exercises: Collection[str]) -> NameReading:
    """What an LMS file name `<student>_<anything>_<notebook>` says.

    Where the LMS puts its participant number after the name (Moodle's
    `<name>_<participant>_assignsubmission_...`, Canvas's `<name>[_late]_<user>_<file id>_...`),
    the number is part of the student: two participants with the same display name stay two.
    A name that starts with an exercise's name (`01_autograd_basics.ipynb`) names no student.
    """
    if _starts_with_exercise(stem, exercises):
        return NameReading(
            "",
            exercise_name(stem, exercises),
            problem="the file is named after the notebook, not after a student: " + NO_STUDENT,
        )
    student, late = _lms_student(stem)
    name, underscore, rest = stem.partition("_")
    if not student and (not underscore or not name.strip()):
        return NameReading(
            "", stem, problem="the student cannot be told from the file name: " + NO_STUDENT
        )
    return NameReading(student or name, exercise_name(rest, exercises), late)


def _starts_with_exercise(stem: str, exercises: Collection[str]) -> bool:
    return any(stem == e or stem.startswith((f"{e}_", f"{e}-", f"{e} ")) for e in exercises)


def file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes, in hex."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def extract_archive(
    archive: Path,
    scratch: _Scratch,
    prefix: tuple[str, ...] = (),
    nested: int = NESTED_ARCHIVES,
    handed_in: datetime | None = None,
) -> list[_Found]:
    """The notebooks of `archive`, extracted safely into `scratch`, named `prefix + <path>`.

    Student and file come from each entry's name as they would from a folder. The notebooks are
    not written under those names, though: the n-th one goes to `<scratch>/<n>/<its file name,
    made safe>`, always as a plain file cut one byte past the notebook size limit, so that no
    name (too long, clashing, absolute, with `..` or a NUL) can fail or escape the extraction
    and a lying or oversized entry is reported by grading, not unpacked whole. A `.zip` entry
    (a student's upload) is extracted so too, up to `MAX_INNER_ARCHIVE_BYTES`, and read in turn
    while `nested` allows. An entry that cannot be graded is collected with the reason: an
    unsafe name, a NUL in its name, a name another entry also has (exactly, or but for case,
    Unicode normalisation or separators), a link, a folder, damaged data, the size budget spent,
    a zip too deep or too large.

    `handed_in`: when a student's zip was handed in (its file's time, or its entry's date in the
    LMS's download); every entry takes it, since the dates inside were written by the student's
    own machine and would move their work before a due time. Without it (the class's archive,
    as the LMS made it) each entry has its own date; one that is no date (month 0, ...) gets the
    archive's own time.
    """
    fallback = handed_in or _utc(archive.stat().st_mtime)
    try:
        zipped = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, RuntimeError) as error:
        raise SubmissionsError(f"{archive}: cannot be read as a zip archive ({error})") from None
    name = prefix[-1] if prefix else archive.name
    with zipped:
        entries = _archive_entries(archive, name.removesuffix(".zip"), zipped.infolist())
        found: list[_Found] = []
        for entry in entries:
            when = handed_in or _entry_time(entry.info, fallback)
            parts = prefix + entry.parts
            if entry.parts[-1].endswith(".zip") and not entry.problem:
                found += _inner_archive(zipped, entry, parts, when, scratch, nested)
            else:
                found.append(_extracted(zipped, entry, parts, when, scratch))
    return found


def _extracted(
    zipped: zipfile.ZipFile,
    entry: _Entry,
    parts: tuple[str, ...],
    when: datetime,
    scratch: _Scratch,
) -> _Found:
    """A notebook entry, extracted to a numbered folder, cut one byte past the notebook limit."""
    target = scratch.root / "-" / safe_file_name(entry.parts[-1], ".ipynb")
    digest, problem = _name_digest(entry.info.orig_filename), entry.problem
    if not problem:
        target = scratch.new_folder() / target.name
        digest, problem = _copy_member(zipped, entry.info, target, MAX_NOTEBOOK_BYTES + 1, scratch)
    return _Found(parts, target, digest, when, problem)


def _inner_archive(
    zipped: zipfile.ZipFile,
    entry: _Entry,
    parts: tuple[str, ...],
    when: datetime,
    scratch: _Scratch,
    nested: int,
) -> list[_Found]:
    """The notebooks of a zip inside the archive (a student's upload), or the zip itself with
    why nothing in it can be graded. The zip and what it holds take one student's share of the
    scratch budget."""
    target = scratch.root / "-" / safe_file_name(entry.parts[-1], ".zip")
    digest = _name_digest(entry.info.orig_filename)
    if nested <= 0:
        problem = "a zip inside a zip inside the submissions: not opened (hand in one zip)"
        return [_Found(parts, target, digest, when, problem)]
    with scratch.student_share() as share:
        target = share.new_folder() / target.name
        digest, problem = _copy_member(
            zipped, entry.info, target, MAX_INNER_ARCHIVE_BYTES + 1, share
        )
        if not problem and target.stat().st_size > MAX_INNER_ARCHIVE_BYTES:
            problem = f"a zip larger than {MAX_INNER_ARCHIVE_BYTES} bytes: not opened"
        if problem:
            return [_Found(parts, target, digest, when, problem)]
        return _student_archive(target, parts, share, nested - 1, when, digest)


def _copy_member(
    zipped: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, limit: int, scratch: _Scratch
) -> tuple[str, str]:
    """Write at most `limit` bytes of the entry to `target`, within the scratch budget:
    (SHA-256 of what was written, why it cannot be read or "")."""
    if scratch.budget <= 0:
        return _name_digest(info.orig_filename), f"not extracted: {scratch.spent}"
    digest, left = hashlib.sha256(), min(limit, scratch.budget)
    try:
        with zipped.open(info) as member, target.open("wb") as out:
            while left > 0 and (block := member.read(min(1 << 20, left))):
                digest.update(block)
                out.write(block)
                left -= len(block)
                scratch.budget -= len(block)
    except (zipfile.BadZipFile, zlib.error, lzma.LZMAError, RuntimeError, OSError, EOFError,
            ValueError) as error:  # fmt: skip
        target.unlink(missing_ok=True)
        reason = f"the archive entry could not be extracted ({error})"
        return _name_digest(info.orig_filename), reason
    return digest.hexdigest(), ""


@dataclass(frozen=True)
class _Entry:
    """An archive entry named `.ipynb` or `.zip`: its path in the archive and why it is not
    extracted."""

    info: zipfile.ZipInfo
    parts: tuple[str, ...]
    problem: str


def _archive_entries(archive: Path, stem: str, infos: list[zipfile.ZipInfo]) -> list[_Entry]:
    """The entries named `.ipynb` or `.zip`, in path order, without a top folder named `stem`
    (the archive's name) or one that holds an LMS's student folders and files alone."""
    if len(infos) > MAX_ARCHIVE_ENTRIES:
        raise SubmissionsError(
            f"{archive}: {len(infos)} entries; at most {MAX_ARCHIVE_ENTRIES} are read"
        )
    entries = [entry for info in infos if (entry := _notebook_entry(info)) is not None]
    tops = {e.parts[0] for e in entries}
    if len(tops) == 1 and all(len(e.parts) > 1 for e in entries):
        if tops == {stem} or _lms_download([e.parts[1] for e in entries]):
            entries = [dataclasses.replace(e, parts=e.parts[1:]) for e in entries]
    return sorted(_with_clashes(entries), key=lambda entry: entry.parts)


def _notebook_entry(info: zipfile.ZipInfo) -> _Entry | None:
    # zipfile cuts a name at a NUL (`filename`); `orig_filename` keeps all of it
    name = info.filename if _collected(info.filename) else info.orig_filename
    parts = tuple(part for part in name.replace("\\", "/").split("/") if part not in ("", "."))
    if not _collected(name) or any(_skipped(part) for part in parts):
        return None
    mode = info.external_attr >> 16
    if name.endswith("/") and not _named_notebook(name):
        return None  # a folder named `.zip`: what it holds is listed on its own
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


def _collected(name: str) -> bool:
    return _named_notebook(name) or name.rstrip("/").endswith(".zip")


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


def _entry_time(info: zipfile.ZipInfo, fallback: datetime) -> datetime:
    """When the entry was handed in: its date in the archive, if that is a date at all."""
    try:
        return datetime(*info.date_time)
    except (ValueError, TypeError):
        return fallback

"""Collecting submissions: folders per student, LMS file names, zip archives, hostile archives."""

from __future__ import annotations

import os
import stat
import subprocess
import zipfile
from datetime import datetime, timezone
from pathlib import Path

import pytest

from grader.errors import SubmissionsError
from grader.prepare import MAX_NOTEBOOK_BYTES
from grader.submissions import (
    Submission,
    _utc,
    open_submissions,
    parse_flat_name,
    safe_member_path,
)
from grader.untrusted import MAX_NAME_CHARS

EXERCISES = ["01_autograd_basics", "02_linear_regression_numpy", "basics"]
NOTEBOOK = b'{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}'


def put(path: Path, data: bytes = NOTEBOOK) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def collect(source: Path) -> list[Submission]:
    with open_submissions(source, EXERCISES) as found:
        return found


def summary(found: list[Submission]) -> list[tuple[str, str, str]]:
    return [(s.student, s.exercise, s.problem) for s in found]


def test_a_folder_per_student(tmp_path: Path) -> None:
    put(tmp_path / "alice" / "01_autograd_basics.ipynb")
    put(tmp_path / "alice" / "week1" / "02_linear_regression_numpy.ipynb")
    put(tmp_path / "bob" / "01_autograd_basics (1).ipynb")
    put(tmp_path / "bob" / ".ipynb_checkpoints" / "01_autograd_basics-checkpoint.ipynb")
    put(tmp_path / "__MACOSX" / "alice" / "01_autograd_basics.ipynb")
    put(tmp_path / "carol" / "notes.txt", b"not a notebook")
    found = collect(tmp_path)
    assert summary(found) == [
        ("alice", "01_autograd_basics", ""),
        ("alice", "02_linear_regression_numpy", ""),
        ("bob", "01_autograd_basics", ""),
    ]
    assert found[1].file == "alice/week1/02_linear_regression_numpy.ipynb"
    assert found[0].sha256 == found[2].sha256 and len(found[0].sha256) == 64


@pytest.mark.parametrize(
    ("stem", "expected"),
    [
        ("doejane_12345_67890_01_autograd_basics", ("doejane_12345", "01_autograd_basics")),
        ("doejane_LATE_12345_67890_01_autograd_basics-1", ("doejane_12345", "01_autograd_basics")),
        ("Jane Doe_4711_assignsubmission_file_basics", ("Jane Doe_4711", "basics")),
        ("Jane Doe_4712_assignsubmission_file_basics", ("Jane Doe_4712", "basics")),
        # a number that is no LMS's participant stays out of the student's id
        ("smith_20261201_01_autograd_basics", ("smith", "01_autograd_basics")),
        ("smith_01_autograd_basics", ("smith", "01_autograd_basics")),
        # the longest exercise name that ends the file name wins
        ("lee_x_02_linear_regression_numpy", ("lee", "02_linear_regression_numpy")),
    ],
)
def test_lms_file_names(stem: str, expected: tuple[str, str]) -> None:
    assert parse_flat_name(stem, EXERCISES) == (*expected, "")


def test_lms_file_names_that_name_no_exercise_or_no_student(tmp_path: Path) -> None:
    put(tmp_path / "alice_123_homework3.ipynb")
    put(tmp_path / "anonymous.ipynb")
    found = collect(tmp_path)
    assert summary(found)[0] == ("alice", "123_homework3", "")
    student, exercise, problem = summary(found)[1]
    assert (student, exercise) == ("(unknown: anonymous)", "anonymous")
    assert "the student cannot be told from the file name" in problem


def test_a_symbolic_link_is_recorded_not_followed(tmp_path: Path) -> None:
    secret = put(tmp_path.parent / f"{tmp_path.name}-secret.ipynb", b"secret")
    (tmp_path / "mallory").mkdir()
    (tmp_path / "mallory" / "01_autograd_basics.ipynb").symlink_to(secret)
    (found,) = collect(tmp_path)
    assert found.student == "mallory" and "symbolic link" in found.problem


def test_missing_or_unsupported_source(tmp_path: Path) -> None:
    with pytest.raises(SubmissionsError, match="no such folder"):
        collect(tmp_path / "nowhere")
    with pytest.raises(SubmissionsError, match=r"not a folder or a \.zip"):
        collect(put(tmp_path / "class.tar", b"tar"))


def make_zip(path: Path, entries: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return path


def test_a_zip_of_folders_and_lms_files(tmp_path: Path) -> None:
    archive = make_zip(
        tmp_path / "class.zip",
        {
            "alice/01_autograd_basics.ipynb": NOTEBOOK,
            "bob_99_basics.ipynb": NOTEBOOK + b" ",
            "alice/readme.md": b"ignored",
        },
    )
    found = collect(archive)
    assert summary(found) == [("alice", "01_autograd_basics", ""), ("bob", "basics", "")]
    assert not found[0].path.exists(), "the extracted copy lives only as long as the context"


def test_a_zipped_notebook_keeps_its_time(tmp_path: Path) -> None:
    archive = tmp_path / "class.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr(zipfile.ZipInfo("alice/basics.ipynb", (2026, 11, 3, 23, 59, 58)), NOTEBOOK)
    (found,) = collect(archive)
    assert found.submitted_at == datetime(2026, 11, 3, 23, 59, 58)


def test_no_notebooks_at_all_is_an_error(tmp_path: Path) -> None:
    put(tmp_path / "alice" / "notes.txt", b"")
    with pytest.raises(SubmissionsError, match=r"no \.ipynb notebooks found"):
        collect(tmp_path)
    with pytest.raises(SubmissionsError, match=r"no \.ipynb notebooks found"):
        collect(make_zip(tmp_path.parent / f"{tmp_path.name}.zip", {"a/readme.md": b""}))


def test_a_zip_of_the_submissions_folder_itself(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "week1.zip", {"week1/alice/basics.ipynb": NOTEBOOK})
    assert summary(collect(archive)) == [("alice", "basics", "")]


def test_a_zip_of_a_single_student_folder_is_not_mistaken_for_the_root(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "class.zip", {"alice/basics.ipynb": NOTEBOOK})
    assert summary(collect(archive)) == [("alice", "basics", "")]


@pytest.mark.parametrize("name", ["../evil/basics.ipynb", "/etc/basics.ipynb", "C:/x/basics.ipynb"])
def test_unsafe_archive_paths_are_refused(name: str) -> None:
    assert safe_member_path(name) is None


def test_a_hostile_archive_writes_nothing_outside_and_nothing_but_plain_files(
    tmp_path: Path,
) -> None:
    archive = tmp_path / "class.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zipped:
        zipped.writestr("../../escaped/basics.ipynb", NOTEBOOK)
        zipped.writestr("alice\\basics.ipynb", NOTEBOOK)  # a Windows zip's separator
        link = zipfile.ZipInfo("mallory/basics.ipynb")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zipped.writestr(link, "/etc/shadow")
        zipped.writestr("bomb/basics.ipynb", b"0" * (MAX_NOTEBOOK_BYTES + 10_000_000))
    found = collect(archive)
    assert summary(found)[1:3] == [
        ("alice", "basics", ""),
        ("bomb", "basics", ""),
    ]
    assert "absolute or has `..`: it was not extracted" in found[0].problem
    assert found[3].student == "mallory" and "symbolic link in the archive" in found[3].problem
    assert not (tmp_path.parent / "escaped").exists()
    with open_submissions(archive, EXERCISES) as extracted:
        bomb = extracted[2].path
        assert bomb.stat().st_size == MAX_NOTEBOOK_BYTES + 1, "cut one byte past the limit"
        assert all(not os.path.islink(s.path) for s in extracted)


def test_a_corrupted_entry_is_recorded_with_its_problem(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "class.zip", {"alice/basics.ipynb": NOTEBOOK * 50})
    data = bytearray(archive.read_bytes())
    start = data.index(b"alice/basics.ipynb") + len("alice/basics.ipynb")
    data[start : start + 40] = b"\xff" * 40  # damage the compressed stream
    archive.write_bytes(bytes(data))
    (found,) = collect(archive)
    assert found.student == "alice" and "could not be extracted" in found.problem


def test_names_that_are_not_utf8_are_shown_as_their_bytes(tmp_path: Path) -> None:
    root = os.fsencode(tmp_path)
    os.mkdir(os.path.join(root, b"Jos\xe9"))
    put(Path(os.fsdecode(os.path.join(root, b"Jos\xe9", b"basics\xff.ipynb"))))
    put(tmp_path / "Jos\\xe9" / "basics.ipynb")  # a name that spells the escape
    put(tmp_path / "eve\x1b[2J" / "basics.ipynb")
    found = collect(tmp_path)
    assert sorted((s.student, s.file) for s in found) == [
        ("Jos\\\\xe9", "Jos\\\\xe9/basics.ipynb"),
        ("Jos\\xe9", "Jos\\xe9/basics\\xff.ipynb"),
        ("eve\\x1b[2J", "eve\\x1b[2J/basics.ipynb"),
    ]
    assert all(s.path.exists() for s in found), "each file is read under its own name"


def test_deep_trees_odd_files_and_odd_times_are_collected(tmp_path: Path) -> None:
    deep = tmp_path / "alice"
    deep.mkdir()
    try:
        for _ in range(1500):  # deeper than Python's recursion limit
            deep /= "d"
            deep.mkdir()
        put(deep / "basics.ipynb")
        (tmp_path / "bob" / "basics.ipynb").mkdir(parents=True)
        os.mkfifo(tmp_path / "carol_1_basics.ipynb")
        found = {s.student: s for s in collect(tmp_path)}
    finally:
        subprocess.run(["rm", "-rf", str(tmp_path / "alice")], check=True)  # rmtree recurses
    assert found["alice"].problem == "" and found["alice"].exercise == "basics"
    assert found["bob"].problem == "a folder, not a notebook file"
    assert "not a regular file" in found["carol"].problem
    # a time no calendar date holds (file systems such as btrfs keep 64-bit seconds)
    assert _utc(2.0**40) == _utc(-(2.0**40)) == datetime(1970, 1, 1)


def test_archive_names_that_cannot_be_graded_are_recorded(tmp_path: Path) -> None:
    month0 = zipfile.ZipInfo("frank/basics.ipynb", (1980, 0, 0, 0, 0, 0))
    archive = tmp_path / "class.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("alice/basics.ipynb", NOTEBOOK)
        zipped.writestr("bob/basics.ipynb", NOTEBOOK)
        with pytest.warns(UserWarning, match="Duplicate name"):
            zipped.writestr("bob/basics.ipynb", NOTEBOOK + b" ")  # the same name twice
        zipped.writestr("Carol/basics.ipynb", NOTEBOOK)
        zipped.writestr("carol/basics.ipynb", NOTEBOOK)  # differs only in case
        zipped.writestr("dave/basics.ipynb#tail", NOTEBOOK)  # a NUL, patched in below
        zipped.writestr("erin/basics.ipynb/", b"")  # a folder named like a notebook
        zipped.writestr(month0, NOTEBOOK)
        zipped.writestr("g" * 300 + "/" + "h" * 5000 + "_basics.ipynb", NOTEBOOK)
    archive.write_bytes(archive.read_bytes().replace(b".ipynb#tail", b".ipynb\x00tail"))
    found = collect(archive)
    by_student: dict[str, list[Submission]] = {}
    for submission in found:
        by_student.setdefault(submission.student, []).append(submission)
    assert by_student["alice"][0].problem == ""
    for student in ("bob", "Carol", "carol"):
        assert all("entries with this name" in s.problem for s in by_student[student])
    assert len(by_student["bob"]) == 2
    assert "NUL character" in by_student["dave"][0].problem
    assert by_student["erin"][0].problem == "a folder in the archive, not a notebook file"
    frank = by_student["frank"][0]
    assert frank.problem == "" and frank.submitted_at == _archive_time(archive)
    (long,) = [s for s in found if s.student.startswith("g")]
    assert long.problem == "" and len(long.student) == MAX_NAME_CHARS
    assert len(long.path.name.encode()) <= 255


def _archive_time(archive: Path) -> datetime:
    return datetime.fromtimestamp(archive.stat().st_mtime, timezone.utc).replace(tzinfo=None)


def test_an_archive_that_zipfile_cannot_open_is_a_clear_error(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "class.zip", {"alice/basics.ipynb": NOTEBOOK})
    data = bytearray(archive.read_bytes())
    start = data.rindex(b"alice/")  # the central directory's copy of the name
    data[start : start + 5] = b"\xff\xfe\xfd\xfc\xfb"
    data[data.rindex(b"PK\x01\x02") + 9] |= 0x08  # flag: the name is UTF-8 (it is not)
    archive.write_bytes(bytes(data))
    with pytest.raises(SubmissionsError, match="cannot be read as a zip archive"):
        collect(archive)

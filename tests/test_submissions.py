"""Collecting submissions: folders per student, LMS file names, zip archives, hostile archives."""

from __future__ import annotations

import os
import stat
import zipfile
from datetime import datetime
from pathlib import Path

import pytest

from grader.errors import SubmissionsError
from grader.prepare import MAX_NOTEBOOK_BYTES
from grader.submissions import (
    Submission,
    open_submissions,
    parse_flat_name,
    safe_member_path,
)

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
    assert summary(found)[:2] == [
        ("alice", "basics", ""),
        ("bomb", "basics", ""),
    ]
    assert found[2].student == "mallory" and "symbolic link in the archive" in found[2].problem
    assert not (tmp_path.parent / "escaped").exists()
    with open_submissions(archive, EXERCISES) as extracted:
        bomb = extracted[1].path
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

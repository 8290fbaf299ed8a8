"""Collecting submissions: folders per student, LMS file names, students' zips, LMS downloads,
hostile archives, the configured file-name pattern, and matching them to the roster."""

from __future__ import annotations

import io
import os
import re
import stat
import subprocess
import warnings
import zipfile
from datetime import datetime, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from grader.config import load_config
from grader.errors import ConfigError, SubmissionsError
from grader.prepare import MAX_NOTEBOOK_BYTES
from grader.roster import RosterEntry, match_submissions
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
    reading = parse_flat_name(stem, EXERCISES)
    assert (reading.student, reading.exercise, reading.problem) == (*expected, "")
    assert reading.late == ("_LATE_" in stem)


def test_lms_file_names_that_name_no_exercise_or_no_student(tmp_path: Path) -> None:
    put(tmp_path / "alice_123_homework3.ipynb")
    put(tmp_path / "anonymous.ipynb")
    found = collect(tmp_path)
    assert summary(found)[0] == ("alice", "123_homework3", "")
    student, exercise, problem = summary(found)[1]
    assert (student, exercise) == ("", "anonymous"), "no student is made up"
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


def zip_bytes(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def readings(found: list[Submission]) -> list[tuple[str, str, bool, str]]:
    return [(s.student, s.exercise, s.lms_late, s.problem) for s in found]


def test_per_student_zips_and_lms_folders_are_collected(tmp_path: Path) -> None:
    one = {"basics.ipynb": NOTEBOOK, "week1/01_autograd_basics.ipynb": NOTEBOOK}
    put(tmp_path / "alice.zip", zip_bytes(one))  # a student's one upload
    put(tmp_path / "bob.zip", zip_bytes({"bob/basics.ipynb": NOTEBOOK}))  # "compress folder"
    put(tmp_path / "carol" / "hand-in.zip", zip_bytes({"basics (1).ipynb": NOTEBOOK}))
    put(tmp_path / "doejane_late_12345_67890_notebooks.zip", zip_bytes(one))  # Canvas, late
    moodle = tmp_path / "Jane Doe_4711_assignsubmission_file_"
    put(moodle / "Jane_02_linear_regression_numpy.ipynb")  # Moodle's folder per participant
    assert readings(collect(tmp_path)) == [
        ("Jane Doe_4711", "02_linear_regression_numpy", False, ""),
        ("alice", "basics", False, ""),
        ("alice", "01_autograd_basics", False, ""),
        ("bob", "basics", False, ""),
        ("carol", "basics", False, ""),
        ("doejane_12345", "basics", True, ""),
        ("doejane_12345", "01_autograd_basics", True, ""),
    ]
    alice = [s for s in collect(tmp_path) if s.student == "alice"]
    assert alice[1].file == "alice.zip/week1/01_autograd_basics.ipynb"


def test_a_moodle_download_zip_of_participant_folders_and_their_zips(tmp_path: Path) -> None:
    inner = zip_bytes({"01_autograd_basics.ipynb": NOTEBOOK, "deeper.zip": zip_bytes({})})
    archive = make_zip(
        tmp_path / "moodle.zip",
        {
            "Jane Doe_4711_assignsubmission_file_/work.zip": inner,
            "Jane Doe_4712_assignsubmission_file_/basics.ipynb": NOTEBOOK,
            # the file's own name (the student's choice) cannot claim another participant
            "Eve_4713_assignsubmission_file_x_4711_assignsubmission_file_basics.ipynb": NOTEBOOK,
            "Mallory_4714_assignsubmission_file_/empty.zip": zip_bytes({"notes.txt": b""}),
            "Trent_4715_assignsubmission_file_/broken.zip": b"PK\x03\x04 not really",
        },
    )
    found = collect(archive)
    assert [(s.student, s.exercise) for s in found] == [
        ("Eve_4713", "basics"),
        ("Jane Doe_4711", "01_autograd_basics"),
        ("Jane Doe_4711", "deeper.zip"),
        ("Jane Doe_4712", "basics"),
        ("Mallory_4714", "empty.zip"),
        ("Trent_4715", "broken.zip"),
    ]
    problems = [s.problem for s in found]
    assert problems[:2] == ["", ""] and problems[3] == ""
    assert "a zip inside a zip inside the submissions: not opened" in problems[2]
    assert problems[4] == "a zip without .ipynb notebooks in it"
    assert problems[5].startswith("a zip that cannot be read")


def test_a_students_zip_keeps_every_defence_of_the_archive_reader(tmp_path: Path) -> None:
    hostile = zip_bytes(
        {
            "../../escaped.ipynb": NOTEBOOK,
            "basics.ipynb": NOTEBOOK,
            "BASICS.ipynb": NOTEBOOK,
            "bomb/01_autograd_basics.ipynb": b"0" * (MAX_NOTEBOOK_BYTES + 5_000_000),
        }
    )
    put(tmp_path / "mallory.zip", hostile)
    with open_submissions(tmp_path, EXERCISES) as found:
        by_file = {s.file: s for s in found}
        bomb = by_file["mallory.zip/bomb/01_autograd_basics.ipynb"]
        assert bomb.path.stat().st_size == MAX_NOTEBOOK_BYTES + 1, "cut one byte past the limit"
        scratch = bomb.path.parent.parent
        assert all(s.path.is_relative_to(scratch) for s in found if not s.problem)
    assert not (tmp_path.parent / "escaped.ipynb").exists()
    assert "absolute or has `..`" in by_file["mallory.zip/../../escaped.ipynb"].problem
    assert "entries with this name" in by_file["mallory.zip/basics.ipynb"].problem
    assert "entries with this name" in by_file["mallory.zip/BASICS.ipynb"].problem
    assert {s.student for s in found} == {"mallory"}


@pytest.mark.parametrize(
    "name",
    ["01_autograd_basics", "01_autograd_basics (1)", "basics-2", "basics_final", "basics"],
)
def test_a_file_named_after_the_notebook_names_no_student(name: str) -> None:
    reading = parse_flat_name(name, EXERCISES)
    assert reading.student == "", "neither `01` nor the notebook's name is a student"
    assert "named after the notebook" in reading.problem


@pytest.mark.parametrize(
    ("pattern", "name", "expected"),
    [
        ("{student}_{notebook}.ipynb", "Jane_Doe_01_autograd_basics.ipynb",
         ("Jane_Doe", "01_autograd_basics")),
        ("{student}_{notebook}.ipynb", "ann_basics (2).ipynb", ("ann", "basics")),
        ("{notebook}-{student}.ipynb", "basics-s123.ipynb", ("s123", "basics")),
        ("hw_{any}_{student}_{notebook}.ipynb", "hw_week 3_ann_basics.ipynb", ("ann", "basics")),
        (r"(?P<student>s\d+)-(?P<notebook>.+)\.ipynb", "s42-basics.ipynb", ("s42", "basics")),
        # a name the pattern does not fit names no student; an unknown notebook is still read
        ("{student}_{notebook}.ipynb", "ann-basics.ipynb", ("", "ann-basics")),
        ("{student}_{notebook}.ipynb", "ann_homework.ipynb", ("ann", "homework")),
    ],
)  # fmt: skip
def test_a_configured_file_name_pattern(
    tmp_path: Path, pattern: str, name: str, expected: tuple[str, str]
) -> None:
    put(tmp_path / name)
    with open_submissions(tmp_path, EXERCISES, pattern) as found:
        assert [(s.student, s.exercise) for s in found] == [expected]
        assert ("submission_pattern" in found[0].problem) == (expected[0] == "")


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("{student}.ipynb", "must hold {student} and {notebook} once each"),
        ("{student}_{notebook}_{student}.ipynb", "must hold {student} and {notebook} once each"),
        ("{student}_{nb}.ipynb", "must hold {student} and {notebook} once each"),
        ("{student}_{notebook}}.ipynb", "a brace outside a placeholder"),
        ("(?P<student>.+)_(?P<nb>.+)", "needs the named groups"),
        ("(?P<student>.+_(?P<notebook>.+)", "not a valid regular expression"),
    ],
)
def test_a_bad_file_name_pattern_is_one_line_at_config_load(
    tmp_path: Path, pattern: str, message: str
) -> None:
    quoted = pattern.replace("\\", "\\\\")
    (tmp_path / "pyproject.toml").write_text(f'[tool.grader]\nsubmission_pattern = "{quoted}"\n')
    with pytest.raises(ConfigError, match=re.escape(message)) as error:
        load_config(tmp_path)
    assert "\n" not in str(error.value) and "pyproject.toml" in str(error.value)


def found_as(student: str, file: str = "", problem: str = "") -> Submission:
    return Submission(student, "basics", Path("x"), file or f"{student}.ipynb", "0" * 64,
                      datetime(2026, 11, 1), problem)  # fmt: skip


def test_submissions_are_matched_to_the_roster_and_the_rest_reported() -> None:
    roster = [RosterEntry("4711", "Jane Doe", "jane@example.edu"), RosterEntry("4712", "J. Doe")]
    found = [
        found_as("4711"),  # a folder named by the id
        found_as("Jane Doe_4712"),  # Moodle's participant number
        found_as("JANE@example.edu"),  # a folder named by the e-mail address
        found_as("doejane_9999"),  # a Canvas user the roster does not list
        found_as("", "01_autograd_basics.ipynb", "the file is named after the notebook"),
    ]
    matched = match_submissions(found, roster)
    # The folder named by the address is 4711's too, handed in at the same time: one counts.
    assert [s.student for s in matched.submissions] == ["4711", "4712"]
    assert [line.split(":")[0] for line in matched.duplicates] == ["JANE@example.edu.ipynb"]
    assert matched.unmatched == [
        "doejane_9999.ipynb: student 'doejane_9999' is not on the roster (by id, participant "
        "number or e-mail), so it was not graded",
        "01_autograd_basics.ipynb: the file is named after the notebook",
    ]
    without = match_submissions(found, [])
    assert [s.student for s in without.submissions] == [s.student for s in found[:4]]
    assert len(without.unmatched) == 1, "without a roster only a file naming no one is left out"


def test_the_lms_late_mark_reaches_the_gradebook(tmp_path: Path) -> None:
    from grader.gradebook import Gradebook
    from grader.results import NotebookResult

    put(tmp_path / "doejane_late_12345_67890_basics.ipynb")
    put(tmp_path / "smithann_12346_67891_basics.ipynb")
    with Gradebook(str(tmp_path / "g.db")) as gradebook:
        for found in collect(tmp_path):
            gradebook.record(found, NotebookResult("basics", found.file, ()), "1", "v")
        late = {g.student: g.lms_late for g in gradebook.latest()}
    assert late == {"doejane_12345": True, "smithann_12346": False}


STUDENT_ENTRIES = st.lists(
    st.tuples(
        st.sampled_from(["basics.ipynb", "x/01_autograd_basics.ipynb", "inner.zip", "../up.zip"]),
        st.binary(max_size=60) | st.just(NOTEBOOK),
        st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2]),
    ),
    max_size=4,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(st.tuples(st.sampled_from(["ann.zip", "bob/up.zip", "c_1_22_x.zip"]), STUDENT_ENTRIES),
             min_size=1, max_size=3),
    st.lists(st.tuples(st.integers(0, 4000), st.integers(0, 255)), max_size=6),
)  # fmt: skip
def test_students_zips_of_any_content_or_damage_end_as_results(
    tmp_path_factory: pytest.TempPathFactory,
    students: list[tuple[str, list[tuple[str, bytes, int]]]],
    damage: list[tuple[int, int]],
) -> None:
    """Whatever a student's zip holds, or however it is damaged, inside a class's zip, the
    collector records results or says why; nothing a student made can stop the batch."""
    folder = tmp_path_factory.mktemp("fuzz")
    inner = []
    for name, entries in students:
        data = bytearray(_fuzz_zip(entries))
        for position, byte in damage:
            data[position % len(data)] = byte
        inner.append((name, bytes(data)))
    archive = folder / "class.zip"
    archive.write_bytes(_fuzz_zip([(name, data, zipfile.ZIP_STORED) for name, data in inner]))
    try:
        with open_submissions(archive, EXERCISES) as found:
            assert all(s.student for s in found), "each student's zip names its student"
            assert all(s.problem or s.path.is_file() for s in found)
    except SubmissionsError:
        pass  # the class's own zip says it holds no notebook at all


def _fuzz_zip(entries: list[tuple[str, bytes, int]]) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(buffer, "w") as zipped:
        warnings.simplefilter("ignore")  # duplicate names are part of the point
        for name, data, compression in entries:
            zipped.writestr(zipfile.ZipInfo(name), data, compress_type=compression)
    return buffer.getvalue()


def test_an_lms_download_inside_its_own_top_folder(tmp_path: Path) -> None:
    moodle = {
        "Homework 1-12345/Jane Doe_4711_assignsubmission_file_/basics.ipynb": NOTEBOOK,
        "Homework 1-12345/Jane Doe_4712_assignsubmission_file_/work.zip": zip_bytes(
            {"basics.ipynb": NOTEBOOK}
        ),
    }
    expected = [("Jane Doe_4711", "basics"), ("Jane Doe_4712", "basics")]
    found = collect(make_zip(tmp_path / "download.zip", moodle))
    assert [(s.student, s.exercise) for s in found] == expected
    unpacked = tmp_path / "unpacked"
    for name, data in moodle.items():
        put(unpacked / name, data)
    assert [(s.student, s.exercise) for s in collect(unpacked)] == expected
    # a student's own folder, however it is arranged inside, stays that student's
    put(tmp_path / "one" / "alice" / "week1" / "basics.ipynb")
    assert [s.student for s in collect(tmp_path / "one")] == ["alice"]


def test_grade_names_students_by_the_courses_pattern(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from grader.cli import main
    from grader.gradebook import Gradebook

    course = tmp_path / "course"
    put(
        course / "pyproject.toml",
        b'[tool.grader]\nsubmission_pattern = "{notebook}-{student}.ipynb"\n',
    )
    (course / "solutions").mkdir()
    put(tmp_path / "class" / "homework-s42.ipynb")  # no such exercise: recorded, no kernel runs
    put(tmp_path / "class" / "s43_homework.ipynb")  # the LMS rule is replaced: no student
    db = str(tmp_path / "g.db")
    assert main(["--course", str(course), "grade", str(tmp_path / "class"), "--db", db]) == 1
    err = capsys.readouterr().err
    assert "no student: s43_homework.ipynb: the file name does not match" in err
    with Gradebook(db) as gradebook:
        graded = [(g.student, g.result.notebook) for g in gradebook.latest()]
    assert graded == [("s42", "homework")]


def test_a_students_zip_is_handed_in_when_the_zip_was_not_when_its_entries_say(
    tmp_path: Path,
) -> None:
    forged = io.BytesIO()
    with zipfile.ZipFile(forged, "w") as zipped:  # dates the student's machine wrote
        zipped.writestr(zipfile.ZipInfo("basics.ipynb", (2026, 1, 1, 0, 0, 0)), NOTEBOOK)
    on_disk = put(tmp_path / "class" / "alice.zip", forged.getvalue())
    os.utime(on_disk, (1_790_000_000, 1_790_000_000))
    (found,) = collect(tmp_path / "class")
    assert found.submitted_at == _utc(1_790_000_000), "the zip's own time, not its entries'"
    download = tmp_path / "download.zip"
    with zipfile.ZipFile(download, "w") as zipped:  # the LMS dates what it was handed
        zipped.writestr(zipfile.ZipInfo("bob.zip", (2026, 10, 2, 9, 30, 0)), forged.getvalue())
    (found,) = collect(download)
    assert found.submitted_at == datetime(2026, 10, 2, 9, 30)

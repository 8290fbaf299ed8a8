"""A student cannot claim another participant's number, nor drop or forge the LMS's late mark,
through the part of an LMS download's name that the student chose: the file's own name, which
the LMS puts after its own prefix (`<name>[_late]_<user>_<file id>_` on Canvas,
`<name>_<participant>_assignsubmission_file_` on Moodle)."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from grader.roster import RosterEntry, match_submissions
from grader.submissions import open_submissions, parse_flat_name, read_owner

EXERCISES = ["01_autograd_basics"]
# What a Canvas student would name a file to be read as Moodle's participant 99999.
MOODLE_SPOOF = "x_99999_assignsubmission_file_01_autograd_basics"
LMS_PIECES = ["_", "late_", "_LATE_", "99999", "_99999_assignsubmission_", "_12_3456_", "file_"]
# Text a student chooses, with the pieces of the LMS's names in it, so that every spoof is tried.
CHOSEN = st.lists(st.sampled_from(LMS_PIECES) | st.text(max_size=4)).map("".join)


@settings(deadline=None)  # timing is not what these test; a loaded machine is slow
@given(chosen=CHOSEN, late=st.booleans())
def test_a_canvas_files_own_name_never_changes_its_student_or_late_mark(
    chosen: str, late: bool
) -> None:
    prefix = f"doejane_{'late_' * late}123_4567_"
    reading = parse_flat_name(f"{prefix}{chosen}_01_autograd_basics", EXERCISES)
    assert (reading.student, reading.late) == ("doejane_123", late)
    assert read_owner(f"{prefix}{chosen}.zip").student == "doejane_123"


@settings(deadline=None)
@given(chosen=CHOSEN)
def test_a_moodle_files_own_name_never_changes_its_participant(chosen: str) -> None:
    prefix = "Jane Doe_4711_assignsubmission_file_"
    reading = parse_flat_name(f"{prefix}{chosen}_01_autograd_basics", EXERCISES)
    assert (reading.student, reading.late) == ("Jane Doe_4711", False)


def test_a_canvas_file_named_as_moodle_names_stays_its_students(tmp_path: Path) -> None:
    folder = tmp_path / "class"
    folder.mkdir()
    (folder / f"doejane_late_123_4567_{MOODLE_SPOOF}.ipynb").write_text("{}")
    (folder / "victim_99999_5555_01_autograd_basics.ipynb").write_text("{}")
    roster = [RosterEntry("123", "Jane Doe"), RosterEntry("99999", "Vic Tim")]
    with open_submissions(folder, EXERCISES) as found:
        matched = match_submissions(found, roster)
    owners = {s.file.split("_")[0]: (s.student, s.lms_late) for s in matched.submissions}
    assert owners == {"doejane": ("123", True), "victim": ("99999", False)}

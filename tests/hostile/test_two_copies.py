"""Two copies of one notebook handed in together (in one student's zip or folder) cannot both
count, and which one does must not depend on which finished grading last: the one that can be
graded, nearest the top, then first by path, is graded; each other copy gets a line saying so."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

from grader.roster import RosterEntry, match_submissions
from grader.submissions import open_submissions

EXERCISES = ["01_autograd_basics"]
NOTEBOOK = "01_autograd_basics.ipynb"


def _zip(path: Path, names: list[str]) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        for name in names:
            archive.writestr(name, "{}")


def test_of_two_copies_in_a_students_zip_the_nearest_the_top_is_graded(tmp_path: Path) -> None:
    folder = tmp_path / "class"
    folder.mkdir()
    _zip(folder / "4711.zip", [f"old/{NOTEBOOK}", f"b/{NOTEBOOK}", NOTEBOOK, f"a/{NOTEBOOK}"])
    _zip(folder / "4712.zip", [f"b/{NOTEBOOK}", f"a/{NOTEBOOK}"])
    roster = [RosterEntry("4711", "Ann"), RosterEntry("4712", "Bob")]
    with open_submissions(folder, EXERCISES) as found:
        matched = match_submissions(found, roster)
    graded = sorted(s.file for s in matched.submissions)
    assert graded == [f"4711.zip/{NOTEBOOK}", f"4712.zip/a/{NOTEBOOK}"]
    assert len(matched.duplicates) == 4
    assert all(f"not graded: 4711.zip/{NOTEBOOK} was" in line for line in matched.duplicates[:3])


def test_copies_handed_in_at_different_times_are_all_kept(tmp_path: Path) -> None:
    folder = tmp_path / "class" / "4711"
    (folder / "a").mkdir(parents=True)
    for name, when in ((f"a/{NOTEBOOK}", 1_000_000), (NOTEBOOK, 2_000_000)):
        (folder / name).write_text("{}")
        os.utime(folder / name, (when, when))
    with open_submissions(folder.parent, EXERCISES) as found:
        matched = match_submissions(found, [])
    assert len(matched.submissions) == 2  # the later one counts, as the gradebook keeps it
    assert matched.duplicates == []


def test_a_copy_that_cannot_be_graded_does_not_hide_one_that_can(tmp_path: Path) -> None:
    folder = tmp_path / "class"
    folder.mkdir()
    with zipfile.ZipFile(folder / "4711.zip", "w") as archive:
        link = zipfile.ZipInfo(NOTEBOOK)
        link.external_attr = 0o120777 << 16  # a symbolic link
        archive.writestr(link, "/etc/passwd")
        archive.writestr(f"deeper/{NOTEBOOK}", "{}")
    with open_submissions(folder, EXERCISES) as found:
        matched = match_submissions(found, [])
    assert [s.file for s in matched.submissions] == [f"4711.zip/deeper/{NOTEBOOK}"]

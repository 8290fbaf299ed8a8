"""A Gradescope submission full of junk (thousands of notebooks named after no exercise, odd
names) still finds the exercise's notebook, and its notes stay a few lines, not megabytes."""

from __future__ import annotations

from pathlib import Path

from grader.gradescope import MAX_IGNORED_NOTES, find_submitted

EXERCISES = ["01_autograd_basics", "02_chain_rule"]


def test_a_folder_of_junk_notebooks_gets_a_few_notes(tmp_path: Path) -> None:
    junk = 2_000
    for index in range(junk):
        (tmp_path / f"{'x' * 150}{index}.ipynb").write_text("")
    (tmp_path / "deep" / "er").mkdir(parents=True)
    (tmp_path / "deep" / "er" / "01_autograd_basics.ipynb").write_text("{}")
    (tmp_path / "02_chain_rule\n\x1b[2J\udcff.ipynb").write_text("{}")
    submitted = find_submitted(tmp_path, EXERCISES)
    assert submitted.found == {
        "01_autograd_basics": tmp_path / "deep" / "er" / "01_autograd_basics.ipynb"
    }
    assert len(submitted.notes) == MAX_IGNORED_NOTES + 2  # the junk, its count, 02 is missing
    assert f"{junk + 1 - MAX_IGNORED_NOTES} more .ipynb files were not graded" in "".join(
        submitted.notes
    )
    assert "02_chain_rule\\x0a\\x1b[2J\\xff.ipynb was not graded" in submitted.notes[0]
    assert all("\n" not in note and "\x1b" not in note for note in submitted.notes)

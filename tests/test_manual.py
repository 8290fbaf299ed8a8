"""Manual grading from the command line: overrides, excuses, comments and removals, kept with
who, when and why, winning over regrades, and shown on the feedback pages."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

import pytest
from markupsafe import escape

from grader.cli import main
from grader.config import load_config
from grader.gradebook import Gradebook
from grader.results import FAILED, PASSED, CheckResult, NotebookResult
from grader.roster import RosterEntry
from grader.standing import standings
from grader.submissions import Submission

CHECKS = """import pytest
@pytest.mark.grade("fit", points=2)
def test_fit_converges(student): ...
@pytest.mark.grade("fit", points=3)
def test_fit_matches(student): ...
"""
HOSTILE = "<script>alert(1)</script>"


def course(tmp_path: Path) -> Path:
    root = tmp_path / "course"
    for folder in ("solutions", "checks"):
        (root / folder).mkdir(parents=True)
    for notebook in ("01_nb", "02_nb"):
        (root / "solutions" / f"{notebook}.ipynb").write_text("{}")
        (root / "checks" / f"{notebook}.py").write_text(CHECKS)
    (root / "pyproject.toml").write_text(
        "[tool.grader]\nlate_penalty_per_day = 0.2\n"
        '[tool.grader.due]\n"01_nb" = 2026-10-01T23:59:00Z\n'
    )
    return root


def record(book: Gradebook, student: str, notebook: str, passes: tuple[bool, bool]) -> None:
    checks = tuple(
        CheckResult(notebook, "fit", name, points, points if ok else 0.0, PASSED if ok else FAILED)
        for (name, points), ok in zip(
            (("fit_converges", 2.0), ("fit_matches", 3.0)), passes, strict=True
        )
    )
    submission = Submission(
        student, notebook, Path(f"{student}.ipynb"), f"{student}/{notebook}.ipynb",
        f"{student}{notebook}".ljust(64, "0")[:64], datetime(2026, 10, 3, 12, 0),
    )  # fmt: skip
    book.record(submission, NotebookResult(notebook, submission.file, checks), "1", "v")


@pytest.fixture
def cls(tmp_path: Path) -> tuple[Path, str]:
    root, db = course(tmp_path), str(tmp_path / "g.db")
    with Gradebook(db) as book:
        book.import_roster(
            [RosterEntry("100", "Ann Lee"), RosterEntry("200", "Ben Ode", "ben@example.edu")]
        )
        record(book, "Ann Lee_100", "01_nb", (True, False))  # two days late
        record(book, "Ann Lee_100", "02_nb", (True, True))
        record(book, "200", "02_nb", (False, False))
    return root, db


def grader(root: Path, db: str, *argv: str) -> int:
    return main(["--course", str(root), *argv, "--db", db])


def test_overrides_excuses_and_comments_change_the_standing_and_outlive_a_regrade(
    cls: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    root, db = cls
    assert grader(root, db, "override", "100", "01_nb", "fit_matches", "--score", "1.5",
                  "--reason", "half right", "--by", "prof") == 0  # fmt: skip
    assert grader(root, db, "override", "200", "02_nb", "--score", "4", "--reason", "oral") == 0
    assert grader(root, db, "excuse", "200", "01_nb", "--reason", "ill") == 0
    assert grader(root, db, "comment", "100", "01_nb", "fit", "--text", HOSTILE) == 0
    with Gradebook(db) as book:
        record(book, "200", "02_nb", (False, False))  # `grade --regrade`: a new run
        table = standings(book, load_config(root))
    ann, ben = table["100"], table["200"]
    assert (ann["01_nb"].raw, ann["01_nb"].override, ann["01_nb"].late_days) == (2.0, 3.5, 2)
    assert (ann["01_nb"].penalty, ann["01_nb"].final) == (2.0, 1.5), "0.2 x 2 days x 5 points"
    assert (ben["02_nb"].raw, ben["02_nb"].final, ben["02_nb"].status) == (0.0, 4.0, "overridden")
    assert ben["01_nb"].excused and ben["01_nb"].status == "excused"
    capsys.readouterr()
    assert main(["history", "--db", db]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4 and "prof: override 100 01_nb fit_matches 1.5: half right" in lines[0]
    assert "override 200 02_nb 4: oral" in lines[1] and "excuse 200 01_nb: ill" in lines[2]
    assert grader(root, db, "override", "100", "01_nb", "fit_matches", "--clear",
                  "--reason", "regraded by hand") == 0  # fmt: skip
    assert grader(root, db, "excuse", "200", "01_nb", "--undo", "--reason", "no note") == 0
    with Gradebook(db) as book:
        table = standings(book, load_config(root))
    assert table["100"]["01_nb"].override is None and not table["200"]["01_nb"].excused
    assert grader(root, db, "override", "100", "01_nb", "fit_matches", "--clear",
                  "--reason", "again") == 2  # fmt: skip
    assert "100 has no override of fit_matches to clear" in capsys.readouterr().err
    assert grader(root, db, "excuse", "200", "01_nb", "--undo", "--reason", "again") == 2
    assert "200 is not excused from 01_nb" in capsys.readouterr().err
    with Gradebook(db) as book:
        assert len(book.actions()) == 6, "a refused action is not kept"


def test_remove_takes_a_submission_out_until_it_is_graded_again(cls: tuple[Path, str]) -> None:
    root, db = cls
    with Gradebook(db) as book:
        record(book, "BEN@example.edu", "01_nb", (True, True))  # a key the roster matches too
    assert grader(root, db, "remove", "100", "02_nb", "--reason", "wrong course") == 0
    assert grader(root, db, "remove", "200", "01_nb", "--reason", "wrong course") == 0
    with Gradebook(db) as book:
        table = standings(book, load_config(root))
        assert table["100"]["02_nb"].status == table["200"]["01_nb"].status == "missing"
        assert table["200"]["02_nb"].status == "graded", "only that notebook"
        record(book, "Ann Lee_100", "02_nb", (True, True))
        assert standings(book, load_config(root))["100"]["02_nb"].final == 5.0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["override", "999", "01_nb", "--score", "1", "--reason", "r"],
         "no student on the roster or in the gradebook is called '999'; known: 100, 200"),
        (["override", "100", "09_nb", "--score", "1", "--reason", "r"],
         "no notebook of the course or the gradebook is called '09_nb'"),
        (["override", "100", "01_nb", "nope", "--score", "1", "--reason", "r"],
         "no check of 01_nb is called 'nope'; known: fit_converges, fit_matches"),
        (["override", "100", "01_nb", "--score", "6", "--reason", "r"],
         "--score must be from 0 to 5"),
        (["override", "100", "01_nb", "fit_converges", "--score", "nan", "--reason", "r"],
         "--score must be from 0 to 2"),
        (["comment", "100", "01_nb", "nope", "--text", "t"],
         "no check or TO DO cell of 01_nb is called 'nope'"),
        (["comment", "100", "01_nb", "--text", " "], "a comment needs its text"),
        (["remove", "200", "01_nb", "--reason", "r"], "200 has no submission of 01_nb"),
        (["excuse", "100", "01_nb"], "the following arguments are required: --reason"),
    ],
)  # fmt: skip
def test_a_wrong_name_or_score_is_one_line_and_exit_2(
    cls: tuple[Path, str], capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    root, db = cls
    assert grader(root, db, *argv) == 2
    err = capsys.readouterr().err
    assert message in err and (err.count("\n") == 1 or "usage:" in err), err
    with Gradebook(db) as book:
        assert book.actions() == []


def test_the_pages_show_raw_penalty_override_and_final(cls: tuple[Path, str]) -> None:
    root, db = cls
    out = root.parent / "pages"
    grader(root, db, "override", "100", "01_nb", "fit_matches", "--score", "1.5",
           "--reason", HOSTILE, "--by", "prof")  # fmt: skip
    grader(root, db, "comment", "100", "01_nb", "fit", "--text", "tidy")
    grader(root, db, "excuse", "200", "01_nb", "--reason", "ill")
    assert grader(root, db, "feedback", "--out", str(out)) == 0
    page = (out / "100" / "01_nb.html").read_text(encoding="utf-8")
    assert '<td class="num" id="raw">2</td>' in page and 'id="override">3.5</td>' in page
    assert 'id="penalty">-2</td>' in page and '<span id="late-days">2</span> day(s) late' in page
    assert '<span id="final">1.5</span> / 5' in page
    assert f"overridden: 1.5 ({escape(HOSTILE)}; prof," in page and HOSTILE not in page
    assert '<p class="comment">tidy' in page
    index = (out / "index.html").read_text(encoding="utf-8")
    cells = dict(re.findall(r'<th scope="row">(\d+) <span class="name">.*?</span></th>(.*?)</tr>',
                            index, re.S))  # fmt: skip
    assert re.search(
        r">1\.5</a><sup class=\"late\"[^>]*>L2</sup><sup class=\"override\"", cells["100"]
    )
    assert '<td class="excused"' in cells["200"] and cells["200"].endswith("0 / 5</td>")
    assert cells["100"].endswith("6.5 / 10</td>")

"""Feedback pages: a page per student and notebook, and the class summary, from a gradebook."""

from __future__ import annotations

import base64
import math
import re
import struct
from dataclasses import dataclass
from datetime import datetime
from html import escape
from html.parser import HTMLParser
from pathlib import Path

import pytest

from grader.feedback import pass_rates, student_folders, write_feedback
from grader.gradebook import Gradebook, GradedNotebook
from grader.results import (
    FAILED,
    PASSED,
    Answer,
    CheckResult,
    Figure,
    NotebookResult,
    Series,
)
from grader.submissions import Submission

HOSTILE = "<script>alert(1)</script>"
FORMULA = '=HYPERLINK("x")'
HOSTILE_CODE = "w = 1  # </pre><script>alert(2)</script>\nprint('<b>&amp;</b>')"
HOSTILE_MESSAGE = "`w_gd` is <img src=x onerror=alert(3)> wrong"
MISSING = "`gd_losses` is not defined"
PNG = b"\x89PNG\r\n\x1a\n"
# student -> which checks of 02_x pass: sgd_loop::matches, gd_loop::matches, gd_loop::losses
PASSES = {"alice": (1, 1, 1), "bob": (1, 0, 0), HOSTILE: (1, 1, 0)}


def checks_02(passes: tuple[int, ...]) -> tuple[CheckResult, ...]:
    specs = [("sgd_loop", "matches", 2.0), ("gd_loop", "matches", 2.0), ("gd_loop", "losses", 1)]
    return tuple(
        CheckResult("02_x", gid, name, points, points * ok, PASSED if ok else FAILED,
                    "" if ok else HOSTILE_MESSAGE)
        for (gid, name, points), ok in zip(specs, passes, strict=True)
    )  # fmt: skip


def figures_02(student: str) -> tuple[Figure, ...]:
    nan = math.nan
    losses = Figure(
        "gd_loop", "GD: loss per step", "step", "loss",
        (Series(f"you ({student})", (0, 1, 2, 3), (4.0, nan, 1.0, 0.5)),
         Series("reference", (0, 1, 2, 3), (4.0, 2.0, 1.0, 0.0), "dashed")),
        log_y=True,
    )  # fmt: skip
    fit = Figure(
        "sgd_loop", "SGD fit", "x", "y",
        (Series("data", (0, 1, 2), (0.5, nan, 2.5), "points"), Series("$\\frac{", (0, 2), (0, 2))),
    )  # fmt: skip
    missing = Figure("gd_loop", "GD: weights", "step", "w", missing=MISSING)
    return (losses, fit, missing)


def submission(student: str, notebook: str, sha: str, day: int) -> Submission:
    return Submission(
        student=student,
        exercise=notebook,
        path=Path(f"/nowhere/{notebook}.ipynb"),
        file=f"{student}/{notebook}.ipynb",
        sha256=sha * 64,
        submitted_at=datetime(2024, 5, day, 9, 30),
    )


def result_02(student: str) -> NotebookResult:
    answers = (Answer("sgd_loop", "w_sgd = train()"), Answer("gd_loop", HOSTILE_CODE))
    return NotebookResult(
        "02_x", f"{student}/02_x.ipynb", checks_02(PASSES[student]), notices=(f"<b>{student}</b>",),
        seeds=(0, 9), answers=answers, figures=figures_02(student),
    )  # fmt: skip


def build_gradebook(tmp_path: Path) -> Gradebook:
    """Three students on 02_x (bob resubmitted), two on 03_y (one unreadable), one odd name."""
    book = Gradebook(str(tmp_path / "g.db"))
    book.record(submission("bob", "02_x", "0", 1), result_02("alice"), "1", "c")  # superseded
    for student in PASSES:
        book.record(submission(student, "02_x", "a", 2), result_02(student), "1", "c")
    bad_series = Figure("fit", "broken", "x", "y", (Series("x", (0, 1, 2), (1, 2)),))
    fit = (CheckResult("03_y", "fit", "converges", 3, 3, PASSED),)
    alice = NotebookResult("03_y", "alice/03_y.ipynb", fit, figures=(bad_series,))
    book.record(submission("alice", "03_y", "b", 3), alice, "1", "c")
    error = NotebookResult("03_y", "x.ipynb", (), error=f"not a notebook: {HOSTILE}")
    book.record(submission(FORMULA, "03_y", "c", 3), error, "1", "c")
    index = NotebookResult("04_z", "index.html/04_z.ipynb", ())
    book.record(submission("index.html", "04_z", "d", 4), index, "1", "c")
    return book


class Tags(HTMLParser):
    """Every start tag of a page, with its attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def tags(page: Path) -> list[tuple[str, dict[str, str | None]]]:
    parser = Tags()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser.tags


@dataclass(frozen=True)
class Written:
    """The class's feedback, written once for the module's tests."""

    graded: list[GradedNotebook]
    pages: list[Path]
    out: Path

    def page(self, student: str, notebook: str) -> str:
        folder = student_folders(item.student for item in self.graded)[student]
        return (self.out / folder / f"{notebook}.html").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Written:
    folder = tmp_path_factory.mktemp("feedback")
    graded = build_gradebook(folder).latest()
    return Written(graded, write_feedback(graded, folder / "out"), folder / "out")


def test_a_page_per_student_and_notebook_and_a_summary(written: Written) -> None:
    out, pages = written.out, written.pages
    assert len(pages) == len(written.graded) + 1 == 7 and pages[-1] == out / "index.html"
    assert all(page.is_file() and out in page.parents for page in pages)
    assert (out / "alice" / "02_x.html").is_file() and (out / "alice" / "03_y.html").is_file()
    index_student = student_folders(item.student for item in written.graded)["index.html"]
    assert index_student.startswith("index-") and index_student.endswith(".html")
    assert (out / index_student / "04_z.html").is_file()  # never the summary's own name


def test_student_data_is_escaped_and_nothing_is_loaded_from_outside(written: Written) -> None:
    for page in written.pages:
        assert "<script" not in page.read_text(encoding="utf-8").lower()
        for tag, attrs in tags(page):
            assert tag not in {"script", "iframe", "object", "embed", "link", "base", "form"}
            assert not any(name.startswith("on") for name in attrs)
            if tag == "img":
                assert (attrs["src"] or "").startswith("data:image/png;base64,") and attrs["alt"]
            if tag == "a":
                assert not re.match(r"[a-z]+:", attrs["href"] or "")  # relative links only
    hostile = written.page(HOSTILE, "02_x")
    assert escape(HOSTILE) in hostile and escape(HOSTILE_MESSAGE) in hostile
    assert escape(HOSTILE_CODE) in hostile and "&lt;/pre&gt;&lt;script&gt;" in hostile
    assert "&lt;b&gt;" in hostile  # the notice
    assert escape(FORMULA) in (written.out / "index.html").read_text(encoding="utf-8")


def test_images_are_png_with_a_size(written: Written) -> None:
    images = [attrs for page in written.pages for tag, attrs in tags(page) if tag == "img"]
    # 02_x: 2 plots x 3 students; summary: 3 histograms and 2 pass-rate charts (04_z has no check)
    assert len(images) == 3 * 2 + 3 + 2
    for attrs in images:
        data = base64.b64decode((attrs["src"] or "").split(",", 1)[1], validate=True)
        width, height = struct.unpack(">II", data[16:24])
        assert data.startswith(PNG) and data[12:16] == b"IHDR" and width > 0 and height > 0


def test_figures_missing_or_undrawable_say_why(written: Written) -> None:
    bob = written.page("bob", "02_x")
    assert f"no plot: {escape(MISSING)}" in bob
    assert 'alt="Plot: GD: loss per step"' in bob and 'alt="Plot: SGD fit"' in bob
    assert "no plot: the values could not be drawn" in written.page("alice", "03_y")


def test_numbers_are_the_gradebooks(written: Written) -> None:
    for item in written.graded:
        page = written.page(item.student, item.result.notebook)
        assert f'<span id="score">{item.result.score:g}</span>' in page
        assert escape(item.file) in page and item.sha256[:12] in page
        assert f"{item.submitted_at:%Y-%m-%d %H:%M} UTC" in page
        if not item.result.error:
            assert f'<span id="max-score">{item.result.max_score:g}</span>' in page
    bob = written.page("bob", "02_x")  # the resubmission, not the superseded full marks
    assert '<span id="score">2</span> / <span id="max-score">5</span>' in bob
    assert bob.count('class="fail">FAIL') == 4 and bob.count(escape(HOSTILE_MESSAGE)) == 2


def test_code_sits_with_its_cells_checks_and_figures(written: Written) -> None:
    bob = written.page("bob", "02_x")
    section = bob[bob.index('id="cell-gd_loop"') :]
    assert section.index(escape(HOSTILE_CODE)) < section.index("losses")
    assert section.index("losses") < section.index("GD: loss per step")


def test_an_ungradable_notebook_shows_its_error_and_zero(written: Written) -> None:
    page = written.page(FORMULA, "03_y")
    assert 'class="error"' in page and f"not a notebook: {escape(HOSTILE)}" in page
    assert '<span id="score">0</span> (not graded)' in page


def test_summary_shows_pass_rates_most_missed_first(written: Written) -> None:
    summary = (written.out / "index.html").read_text(encoding="utf-8")
    assert '<span id="students">5</span>' in summary
    rows = re.findall(
        r'data-check="([^"]+)">.*?"num passed">(\d+/\d+)<.*?"num share">(\d+%)<', summary
    )
    assert rows == [
        ("gd_loop::losses", "1/3", "33%"), ("gd_loop::matches", "2/3", "67%"),
        ("sgd_loop::matches", "3/3", "100%"), ("fit::converges", "1/2", "50%"),
    ]  # fmt: skip
    x = [g for g in written.graded if g.result.notebook == "02_x"]
    assert [(r.grade_id, r.passed, r.students) for r in pass_rates(x)] == [
        ("gd_loop", 1, 3), ("gd_loop", 2, 3), ("sgd_loop", 3, 3),
    ]  # fmt: skip
    assert 'data-stat="mean">3.67<' in summary and 'data-stat="median">4<' in summary
    index_student = student_folders(item.student for item in written.graded)["index.html"]
    assert 'href="bob/02_x.html"' in summary and f'href="{index_student}/04_z.html"' in summary


def test_every_figure_is_closed(written: Written) -> None:
    from matplotlib import pyplot

    assert written.pages and pyplot.get_fignums() == []

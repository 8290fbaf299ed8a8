"""Feedback pages: a page per student and notebook, and the class summary, from a gradebook."""

from __future__ import annotations

import base64
import math
import re
import struct
from dataclasses import dataclass
from datetime import datetime
from html.parser import HTMLParser
from pathlib import Path

import pytest
from markupsafe import escape

from grader.cli import main
from grader.errors import CourseError
from grader.feedback import CSP, pass_rates, student_folders, write_feedback
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
from grader.roster import RosterEntry
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
    # the student pages, the class page sorted by total and by each of 3 notebooks, the index
    assert len(pages) == len(written.graded) + 4 + 1 == 11 and pages[-1] == out / "index.html"
    sorted_copies = {page.name for page in pages[len(written.graded) : -1]}
    assert sorted_copies == {f"sorted-by-{key}.html" for key in ("total", "02_x", "03_y", "04_z")}
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


def class_rows(page: str) -> list[tuple[str, list[str], str]]:
    """(student, the notebook cells' text, the total) of each row of the class table."""
    body = page[page.index('<table class="students">') :]
    body = body[body.index("<tbody>") : body.index("</tbody>")]
    rows = re.findall(r'<tr class="student"><th scope="row">(.*?)</th>(.*?)</tr>', body, re.S)
    parsed = []
    for student, cells in rows:
        texts = [re.sub(r"<[^>]+>", "", cell) for cell in re.findall(r"<td[^>]*>(.*?)</td>", cells)]
        parsed.append((student, texts[:-1], texts[-1]))
    return parsed


def test_the_class_page_opens_on_students_by_notebooks_with_totals(written: Written) -> None:
    page = (written.out / "index.html").read_text(encoding="utf-8")
    assert page.index('<table class="students">') < page.index('id="statistics"')
    assert page.index('id="statistics"') < page.index('class="rate"')
    rows = {student: (cells, total) for student, cells, total in class_rows(page)}
    assert rows["alice"] == (["5", "3", "—"], "8 / 8")
    assert rows["bob"] == (["2", "—", "—"], "2 / 8")  # the resubmission counts
    assert rows[escape(FORMULA)] == (["—", "not graded", "—"], "0 / 8")
    assert 'title="not handed in"' in page
    assert '<tr class="mean"><th scope="row">class mean</th>' in page and "2.8 / 8" in page


def test_sorted_copies_order_the_table_by_each_column(written: Written) -> None:
    def order(name: str) -> list[str]:
        return [row[0] for row in class_rows((written.out / name).read_text(encoding="utf-8"))]

    names = sorted(escape(g.student) for g in written.graded)
    assert order("index.html") == sorted(set(names))
    assert order("sorted-by-total.html")[:3] == ["alice", escape(HOSTILE), "bob"]
    # highest first; the students who did not hand 02_x in come last, by name
    assert order("sorted-by-02_x.html") == [
        "alice",
        escape(HOSTILE),
        "bob",
        escape(FORMULA),
        "index.html",
    ]
    page = (written.out / "sorted-by-02_x.html").read_text(encoding="utf-8")
    assert 'aria-sort="descending"><a href="sorted-by-02_x.html">02_x</a>' in page
    assert 'id="statistics"' not in page and 'href="index.html#statistics"' in page
    assert "<img" not in page


COURSE_CLASS_PAGE = """{% extends "grader/class.html.j2" %}
{% block heading %}<h1 id="course-title">Autodiff, autumn term</h1>{% endblock %}
"""
RAW_STUDENT_PAGE = (
    "<html><head><title>t</title></head><body><p id='who'>{{ item.student }}</p></body></html>"
)


def test_a_course_template_replaces_the_packaged_one_and_keeps_escaping_and_policy(
    written: Written, tmp_path: Path
) -> None:
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "class.html.j2").write_text(COURSE_CLASS_PAGE, encoding="utf-8")
    (templates / "student.html.j2").write_text(RAW_STUDENT_PAGE, encoding="utf-8")
    pages = write_feedback(written.graded, tmp_path / "out", templates)
    index = pages[-1].read_text(encoding="utf-8")
    assert "Autodiff, autumn term" in index and "Class summary</h1>" not in index
    assert '<table class="students">' in index  # the rest of the packaged page is still there
    hostile = next(p for p, g in zip(pages, written.graded, strict=False) if g.student == HOSTILE)
    text = hostile.read_text(encoding="utf-8")
    assert f"<p id='who'>{escape(HOSTILE)}</p>" in text and "<script>" not in text
    for page in pages:
        head = page.read_text(encoding="utf-8").split("<head>", 1)[1]
        assert head.startswith(f'<meta http-equiv="Content-Security-Policy" content="{CSP}">')


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{% block heading %}", "class.html.j2, line 1"),
        ("<body>{{ table.rows }}</body>", "has no <head>"),
        ("<head></head>{{ nothing_such }}", "'nothing_such' is undefined"),
    ],
)
def test_a_broken_course_template_is_a_course_error(
    written: Written, tmp_path: Path, template: str, message: str
) -> None:
    (tmp_path / "class.html.j2").write_text(template, encoding="utf-8")
    with pytest.raises(CourseError, match=re.escape(message)):
        write_feedback(written.graded, tmp_path / "out", tmp_path)
    with pytest.raises(CourseError, match="no such folder"):
        write_feedback(written.graded, tmp_path / "out", tmp_path / "missing")


def test_feedback_uses_the_courses_templates_dir(
    written: Written, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    course = tmp_path / "course"
    (course / "page-templates").mkdir(parents=True)
    (course / "pyproject.toml").write_text('[tool.grader]\ntemplates_dir = "page-templates"\n')
    (course / "page-templates" / "class.html.j2").write_text(COURSE_CLASS_PAGE, encoding="utf-8")
    db, out = str(written.out.parent / "g.db"), tmp_path / "out"
    assert main(["--course", str(course), "feedback", "--db", db, "--out", str(out)]) == 0
    assert "Autodiff, autumn term" in (out / "index.html").read_text(encoding="utf-8")
    (course / "page-templates" / "class.html.j2").write_text("{% if %}", encoding="utf-8")
    assert main(["--course", str(course), "feedback", "--db", db, "--out", str(out)]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_the_class_table_lists_roster_students_who_handed_in_nothing(
    written: Written, tmp_path: Path
) -> None:
    roster = [RosterEntry("zoe", "Zoë Zeta"), RosterEntry("alice", "Alice <b>A.</b>")]
    pages = write_feedback(written.graded, tmp_path / "out", roster=roster)
    page = pages[-1].read_text(encoding="utf-8")
    rows = {student: (cells, total) for student, cells, total in class_rows(page)}
    assert rows['zoe <span class="name">Zoë Zeta</span>'] == (["—", "—", "—"], "0 / 8")
    assert rows[f'alice <span class="name">{escape("Alice <b>A.</b>")}</span>'][1] == "8 / 8"
    assert '<span id="students">6</span>' in page
    assert not (tmp_path / "out" / "zoe").exists()  # no page for what was not handed in

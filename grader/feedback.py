"""Feedback pages: what each student looks at, and what the class as a whole missed.

`write_feedback` renders the gradebook's latest runs (`Gradebook(...).latest()`) as
self-contained HTML from the Jinja2 templates in `grader/templates/`: a page per student and
notebook, and the class page, `index.html`, which opens on the students x notebooks table (with
copies sorted by each column, so that sorting needs no script) and has the per-check statistics
below it. A course may replace any template with one of the same name in the folder that
`templates_dir` names (`{% extends "grader/<name>" %}` reaches the packaged one). Plots are drawn
here from the `Figure` data grading kept (matplotlib, Agg backend) and embedded as PNG data URIs,
so that a page is one file that opens offline, prints and can be mailed. Autoescaping is always
on, so everything a student controls (names, file names, code, messages, notices, figure text)
is escaped, and the grader puts a Content Security Policy that forbids scripts and outside
resources into every page's head, whatever the templates say, as a second line of defence.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import math
import re
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import jinja2

from grader.config import Config, without_course
from grader.errors import CourseError
from grader.export import student_slugs, write_atomically
from grader.gradebook import GradedNotebook, GradingAction
from grader.results import CheckResult, Figure, NotebookResult, Series
from grader.roster import RosterEntry
from grader.standing import (
    ManualGrade,
    Standing,
    class_standings,
    manual_grades,
    student_total,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes

INDEX = "index.html"
SORTED_PAGE = "sorted-by-{}.html"
PACKAGED_TEMPLATES = Path(__file__).parent / "templates"
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'"
CSP_META = f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
_HEAD = re.compile(r"<head\b[^>]*>", re.IGNORECASE)


@dataclass(frozen=True)
class CheckRate:
    """How many of the students who handed in a notebook passed one of its checks."""

    grade_id: str
    name: str
    passed: int
    students: int

    @property
    def share(self) -> float:
        return self.passed / self.students if self.students else 0.0

    @property
    def percent(self) -> int:
        return round(100 * self.share)


@dataclass(frozen=True)
class FigureView:
    """A plot as a page shows it: a PNG data URI, or why there is none."""

    title: str
    uri: str = ""
    reason: str = ""


@dataclass(frozen=True)
class CellView:
    """One TO DO cell on a student's page: the code, its checks and plots."""

    grade_id: str
    source: str | None
    checks: tuple[CheckResult, ...]
    figures: tuple[FigureView, ...]

    @property
    def score(self) -> float:
        return sum(check.score for check in self.checks)

    @property
    def points(self) -> float:
        return sum(check.points for check in self.checks)


@dataclass(frozen=True)
class ScoreCell:
    """One student's notebook in the class table: its standing, and the link to its page
    (None when nothing was handed in)."""

    standing: Standing
    link: str | None = None
    error: bool = False

    @property
    def score(self) -> float:
        """What counts (0 when nothing does)."""
        return self.standing.final or 0.0

    @property
    def counted(self) -> bool:
        """Whether the notebook has a score: handed in or overridden, not excused."""
        return self.standing.final is not None


@dataclass(frozen=True)
class StudentRow:
    student: str
    cells: tuple[ScoreCell, ...]
    total: float
    maximum: float
    """The student's maximum: their excused notebooks' points do not count."""
    name: str = ""
    """The roster's name for the student, if the roster lists them."""


@dataclass(frozen=True)
class NotebookColumn:
    notebook: str
    key: str
    """What the column is sorted by in links: the notebook's page name without `.html`."""
    mean: float
    maximum: float


@dataclass(frozen=True)
class ClassTable:
    """Students x notebooks, in one order, with the page sorted by each column."""

    columns: tuple[NotebookColumn, ...]
    rows: tuple[StudentRow, ...]
    sorted_by: str
    sort_links: dict[str, str]
    """Sort key (`student`, `total` or a column's key) -> the page sorted by it."""
    mean_total: float
    max_total: float
    home: str = INDEX

    @property
    def sorted_label(self) -> str:
        """What the table is sorted by, in words."""
        names = {column.key: column.notebook for column in self.columns}
        return names.get(self.sorted_by, self.sorted_by)


@dataclass(frozen=True)
class NotebookSummary:
    """One notebook's statistics on the class page."""

    name: str
    stats: tuple[tuple[str, str], ...]
    histogram: str
    rates: tuple[CheckRate, ...]
    chart: str


def write_feedback(
    graded: list[GradedNotebook],
    folder: Path,
    templates: Path | None = None,
    roster: Sequence[RosterEntry] = (),
    actions: Sequence[GradingAction] = (),
    config: Config | None = None,
) -> list[Path]:
    """Write a page per student and notebook, and the class page with its sorted copies.

    Parameters
    ----------
    graded
        The latest run of each student's latest submission per notebook (`Gradebook.latest()`).
    folder
        Where to write: `folder/<student>/<notebook>.html`, `folder/index.html` and
        `folder/sorted-by-<column>.html`.
    templates
        A course's folder of templates that replace the packaged ones of the same name.
    roster
        The class list: its students are rows of the class table, handed in or not, with their
        names (`graded` is matched to it already, `grader.roster.match_roster`).
    actions
        The instructor's overrides, excuses and comments (`Gradebook.actions()`).
    config
        The course: its notebooks, their maxima and its late policy (default: none).

    Returns
    -------
    list[Path]
        The pages written, the class page last.
    """
    environment = template_environment(templates)
    grades = class_standings(graded, roster, actions, config or without_course())
    manual = manual_grades(actions)
    notebooks = list(next(iter(grades.values()), {}))
    pages = _page_names(notebooks)
    sorted_pages = _sorted_page_names(pages)
    folders = student_folders((g.student for g in graded), sorted_pages.values())
    written = []
    for item in graded:
        standing = grades[item.student][item.result.notebook]
        own = manual.get((item.student, item.result.notebook), ManualGrade())
        view = _student_view(item, standing, own)
        target = folder / folders[item.student] / pages[item.result.notebook]
        write_atomically(target, _render(environment, "student.html.j2", **view))
        written.append(target)
    summaries = [_notebook_summary(nb, items) for nb, items in _by_notebook(graded).items()]
    for key, name in sorted_pages.items():
        table = _class_table(graded, roster, grades, folders, pages, sorted_pages, key)
        page = _render(environment, "class.html.j2", table=table, notebooks=summaries,
                       statistics=name == INDEX)  # fmt: skip
        write_atomically(folder / name, page)
        if name != INDEX:
            written.append(folder / name)
    return [*written, folder / INDEX]


def template_environment(templates: Path | None = None) -> jinja2.Environment:
    """The feedback templates: a course's own first, then the packaged ones (also as `grader/`)."""
    packaged = jinja2.FileSystemLoader(PACKAGED_TEMPLATES)
    loaders: list[jinja2.BaseLoader] = [packaged, jinja2.PrefixLoader({"grader": packaged})]
    if templates is not None:
        if not templates.is_dir():
            raise CourseError(f"templates_dir {templates}: no such folder of feedback templates")
        loaders.insert(0, jinja2.FileSystemLoader(templates))
    return jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        autoescape=True,  # every template, whatever its name: student text is never markup
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )


def _render(environment: jinja2.Environment, name: str, **values: Any) -> str:
    """A page from template `name`, the Content Security Policy first in its head."""
    try:
        page = environment.get_template(name).render(**values)
    except jinja2.TemplateSyntaxError as error:
        raise CourseError(
            f"feedback template {error.filename or error.name}, line {error.lineno}: {error}"
        ) from None
    except jinja2.TemplateError as error:
        raise CourseError(f"feedback template {name}: {error}") from None
    head = _HEAD.search(page)
    if head is None:
        raise CourseError(
            f"feedback template {name}: the page has no <head> for its security policy"
        )
    return page[: head.end()] + CSP_META + page[head.end() :]


def student_folders(students: Iterable[str], pages: Iterable[str] = (INDEX,)) -> dict[str, str]:
    """The export's student slugs, but never the name of a page beside them."""
    return student_slugs(students, reserved={INDEX, *pages})


def _page_names(notebooks: Iterable[str]) -> dict[str, str]:
    """A safe file name per notebook (one that matches no exercise is named by the student)."""
    # Never a sort key of the class page's other columns: a page name is a notebook's key.
    slugs = student_slugs(notebooks, reserved={"student", "total"})
    return {name: f"{slug}.html" for name, slug in slugs.items()}


def _sorted_page_names(pages: dict[str, str]) -> dict[str, str]:
    """Sort key -> the class page sorted by it: by student (`index.html`), total, each notebook."""
    keys = ["total", *(page.removesuffix(".html") for page in pages.values())]
    return {"student": INDEX, **{key: SORTED_PAGE.format(key) for key in keys}}


def _by_notebook(graded: Sequence[GradedNotebook]) -> dict[str, list[GradedNotebook]]:
    groups: dict[str, list[GradedNotebook]] = {}
    for item in sorted(graded, key=lambda g: g.result.notebook):
        groups.setdefault(item.result.notebook, []).append(item)
    return groups


def pass_rates(items: Sequence[GradedNotebook]) -> list[CheckRate]:
    """Per check of one notebook, how many of its students passed it; the most missed first.

    Every student who handed the notebook in counts, those whose notebook could not be graded
    too (they passed nothing).
    """
    passed: dict[tuple[str, str], int] = {}
    for item in items:
        for check in item.result.checks:
            key = (check.grade_id, check.name)
            passed[key] = passed.get(key, 0) + check.passed
    rates = [CheckRate(gid, name, count, len(items)) for (gid, name), count in passed.items()]
    return sorted(rates, key=lambda rate: rate.share)


# --- the student's page ---
def _student_view(item: GradedNotebook, standing: Standing, manual: ManualGrade) -> dict[str, Any]:
    result = item.result
    return {
        "item": item,
        "result": result,
        "standing": standing,
        "manual": manual,
        "cells": [_cell_view(result, g) for g in _grade_ids(result)],
    }


def _grade_ids(result: NotebookResult) -> list[str]:
    found = [a.grade_id for a in result.answers] + [c.grade_id for c in result.checks]
    return list(dict.fromkeys(found + [f.grade_id for f in result.figures]))


def _cell_view(result: NotebookResult, grade_id: str) -> CellView:
    sources = [answer.source for answer in result.answers if answer.grade_id == grade_id]
    return CellView(
        grade_id=grade_id,
        source=sources[-1] if sources else None,
        checks=tuple(check for check in result.checks if check.grade_id == grade_id),
        figures=tuple(_figure_view(f) for f in result.figures if f.grade_id == grade_id),
    )


def _figure_view(figure: Figure) -> FigureView:
    if figure.missing:
        return FigureView(figure.title, reason=figure.missing)
    try:
        return FigureView(figure.title, uri=_png_data_uri(partial(_draw_figure, figure)))
    except ValueError as error:  # series that do not fit together (x and y of other lengths)
        return FigureView(figure.title, reason=f"the values could not be drawn ({error})")


# --- the class page ---
def _class_table(
    graded: list[GradedNotebook],
    roster: Sequence[RosterEntry],
    grades: dict[str, dict[str, Standing]],
    folders: dict[str, str],
    pages: dict[str, str],
    sorted_pages: dict[str, str],
    sort_key: str,
) -> ClassTable:
    """The students x notebooks table, sorted by `sort_key` (scores: highest first)."""
    notebooks = list(pages)
    names = {entry.lms_id: entry.name for entry in roster}
    handed_in = {(item.student, item.result.notebook): item for item in graded}
    rows = [
        _student_row(student, grades[student], handed_in, folders.get(student, ""), pages)
        for student in grades
    ]
    rows = [dataclasses.replace(row, name=names.get(row.student, "")) for row in rows]
    maxima = next(iter(grades.values()), {})
    columns = tuple(
        NotebookColumn(nb, pages[nb].removesuffix(".html"), _mean(rows, i), maxima[nb].maximum)
        for i, nb in enumerate(notebooks)
    )
    keys = [column.key for column in columns]
    rows.sort(key=lambda row: _sort_value(row, sort_key, keys))
    return ClassTable(
        columns=columns,
        rows=tuple(rows),
        sorted_by=sort_key,
        sort_links={key: quote(name) for key, name in sorted_pages.items()},
        mean_total=round(statistics.mean(row.total for row in rows), 2) if rows else 0.0,
        max_total=sum(column.maximum for column in columns),
    )


def _student_row(
    student: str,
    standings: dict[str, Standing],
    handed_in: dict[tuple[str, str], GradedNotebook],
    folder: str,
    pages: dict[str, str],
) -> StudentRow:
    cells = []
    for notebook, standing in standings.items():
        item = handed_in.get((student, notebook))
        link = None if item is None else quote(f"{folder}/{pages[notebook]}")
        cells.append(ScoreCell(standing, link, item is not None and bool(item.result.error)))
    total, maximum = student_total(standings)
    return StudentRow(student, tuple(cells), total, maximum)


def _mean(rows: list[StudentRow], column: int) -> float:
    """The mean score of the students whose notebook has a score (not missing or excused)."""
    scores = [row.cells[column].score for row in rows if row.cells[column].counted]
    return round(statistics.mean(scores), 2) if scores else 0.0


def _sort_value(row: StudentRow, key: str, columns: list[str]) -> tuple[float, str]:
    """Highest score first, what was not handed in last, then by name."""
    if key == "student":
        return (0.0, row.student)
    if key == "total":
        return (-row.total, row.student)
    cell = row.cells[columns.index(key)]
    return (-cell.score if cell.counted else math.inf, row.student)


def _notebook_summary(notebook: str, items: list[GradedNotebook]) -> NotebookSummary:
    totals = [item.result.score for item in items]
    maximum = max(item.result.max_score for item in items)
    stats = (
        ("students", str(len(items))),
        ("could not be graded", str(sum(bool(item.result.error) for item in items))),
        ("mean", _points(round(statistics.mean(totals), 2))),
        ("median", _points(round(statistics.median(totals), 2))),
        ("highest", _points(max(totals))),
        ("out of", _points(maximum)),
    )
    rates = pass_rates(items)
    chart = (
        _png_data_uri(partial(_draw_pass_rates, rates), 1.2 + 0.32 * len(rates)) if rates else ""
    )
    return NotebookSummary(
        name=notebook,
        stats=stats,
        histogram=_png_data_uri(partial(_draw_histogram, totals, maximum)),
        rates=tuple(rates),
        chart=chart,
    )


# --- drawing ---
def _png_data_uri(draw: Callable[[Axes], None], height: float = 3.6) -> str:
    """What `draw` plots on fresh axes, as a PNG `data:` URI (the figure is closed after)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(figsize=(6.4, height), dpi=100)
    try:
        draw(axes)
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", bbox_inches="tight")
    finally:
        pyplot.close(figure)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _draw_figure(figure: Figure, axes: Axes) -> None:
    for series in figure.series:
        _draw_series(series, axes)
    # A log axis needs a positive value to show; zeros and negatives become gaps.
    if figure.log_y and any(y > 0 for series in figure.series for y in series.y):
        axes.set_yscale("log", nonpositive="mask")
    axes.set(title=_literal(figure.title), xlabel=_literal(figure.xlabel))
    axes.set_ylabel(_literal(figure.ylabel))
    axes.grid(alpha=0.3)
    if axes.get_legend_handles_labels()[0]:
        axes.legend()


def _draw_series(series: Series, axes: Axes) -> None:
    # NaN values need nothing: matplotlib leaves a gap in a line and skips the point.
    if series.style == "points":
        axes.scatter(series.x, series.y, s=14, label=_literal(series.label))
    else:
        style = "--" if series.style == "dashed" else "-"
        axes.plot(series.x, series.y, linestyle=style, label=_literal(series.label))


def _draw_histogram(totals: list[float], maximum: float, axes: Axes) -> None:
    from matplotlib.ticker import MaxNLocator

    edges = _score_bins(maximum)
    axes.hist(totals, bins=edges, color="#4a78b0", edgecolor="white")
    axes.set(title="Scores", xlabel="score", ylabel="students", xlim=(edges[0], edges[-1]))
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))


def _score_bins(maximum: float) -> list[float]:
    """Bin edges from 0 to `maximum`, each bin centred on a score (up to 21 bins)."""
    count = min(20, math.ceil(maximum))
    width = maximum / count if count else 1.0
    return [(i - 0.5) * width for i in range(count + 2)]


def _literal(text: str) -> str:
    """`text` as matplotlib shows it literally: a student's `$...$` is not mathtext."""
    return text.replace("$", r"\$")


def _draw_pass_rates(rates: list[CheckRate], axes: Axes) -> None:
    positions = range(len(rates))
    axes.barh(positions, [100 * rate.share for rate in rates], color="#4a78b0")
    axes.set_yticks(positions, [_literal(f"{rate.grade_id}::{rate.name}") for rate in rates])
    axes.invert_yaxis()
    axes.set(xlim=(0, 100), xlabel="% of students who passed", title="Checks passed")


def _points(value: float) -> str:
    return f"{value:g}"

"""Feedback pages: what each student looks at, and what the class as a whole missed.

`write_feedback` renders the gradebook's latest runs (`Gradebook(...).latest()`) as
self-contained HTML: a page per student and notebook, and a class summary, `index.html`. Plots
are drawn here from the `Figure` data grading kept (matplotlib, Agg backend) and embedded as PNG
data URIs, so that a page is one file that opens offline, prints and can be mailed. Everything a
student controls (names, file names, code, messages, notices, figure text) is escaped, and a
Content Security Policy forbids scripts and outside resources as a second line of defence.
"""

from __future__ import annotations

import base64
import io
import math
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from grader.export import by_student, student_slugs, write_atomically
from grader.gradebook import GradedNotebook
from grader.results import CheckResult, Figure, NotebookResult, Series

if TYPE_CHECKING:
    from matplotlib.axes import Axes

INDEX = "index.html"
SCORE_COLUMNS = ("TO DO cell", "Check", "Result", "Points")
RATE_COLUMNS = ("TO DO cell", "Check", "Passed", "Share")
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'"
STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; color: #1b1b1b; max-width: 72rem; margin: auto;
  padding: 1rem 1.5rem; }
h1 { font-size: 1.6rem; margin-bottom: .3rem; } h2 { margin-top: 2rem; }
code, pre { font: 13px/1.4 ui-monospace, monospace; }
pre { background: #f6f6f4; border: 1px solid #ddd; padding: .6rem; white-space: pre-wrap;
  overflow-wrap: anywhere; }
table { border-collapse: collapse; margin: .5rem 0; }
th, td { border: 1px solid #ccc; padding: .25rem .6rem; text-align: left; vertical-align: top; }
td.num { text-align: right; } .total { font-size: 1.3rem; font-weight: 600; }
.pass { color: #17612b; font-weight: 600; } .fail { color: #a11b1b; font-weight: 600; }
.error { border: 3px solid #a11b1b; background: #fdecec; padding: 0 1rem; }
.meta { display: grid; grid-template-columns: max-content auto; gap: .1rem 1rem; margin: 0; }
.meta dt { font-weight: 600; } .meta dd { margin: 0; }
.columns { display: grid; grid-template-columns: minmax(0, 1fr) minmax(0, 1fr); gap: 1.2rem; }
.checks { list-style: none; padding: 0; } .checks li { margin-bottom: .5rem; }
.message { margin: .2rem 0 0 1rem; white-space: pre-wrap; } .no-plot { font-style: italic; }
figure { margin: .8rem 0; } img { max-width: 100%; height: auto; }
@media (max-width: 50rem) { .columns { grid-template-columns: minmax(0, 1fr); } }
@media print { body { max-width: none; padding: 0; font-size: 11pt; } .error { background: none; }
  section, figure, tr { break-inside: avoid; } a { color: inherit; text-decoration: none; } }
"""


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


def write_feedback(graded: list[GradedNotebook], folder: Path) -> list[Path]:
    """Write a page per student and notebook, and the class summary.

    Parameters
    ----------
    graded
        The latest run of each student's latest submission per notebook (`Gradebook.latest()`).
    folder
        Where to write: `folder/<student>/<notebook>.html` and `folder/index.html`.

    Returns
    -------
    list[Path]
        The pages written, the summary last.
    """
    folders = student_folders(g.student for g in graded)
    pages = _page_names(g.result.notebook for g in graded)
    written = []
    for item in graded:
        target = folder / folders[item.student] / pages[item.result.notebook]
        write_atomically(target, _student_page(item))
        written.append(target)
    index = folder / INDEX
    write_atomically(index, _summary_page(graded, folders, pages))
    return [*written, index]


def student_folders(students: Iterable[str]) -> dict[str, str]:
    """The export's student slugs, but never the name of a page beside them."""
    return student_slugs(students, reserved={INDEX})


def _page_names(notebooks: Iterable[str]) -> dict[str, str]:
    """A safe file name per notebook (one that matches no exercise is named by the student)."""
    return {name: f"{slug}.html" for name, slug in student_slugs(notebooks).items()}


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
def _student_page(item: GradedNotebook) -> str:
    """The HTML page of one student's graded notebook."""
    result = item.result
    body = [
        _header(item),
        _error_box(result.error),
        _notices(result.notices),
        _score_table(result),
        *(_cell_section(result, grade_id) for grade_id in _grade_ids(result)),
    ]
    return _page(f"{result.notebook}: feedback for {item.student}", body)


def _header(item: GradedNotebook) -> str:
    result = item.result
    maximum = f' / <span id="max-score">{_points(result.max_score)}</span>'
    total = f'Score <span id="score">{_points(result.score)}</span>'
    total += " (not graded)" if result.error else maximum
    meta = [
        ("Student", f'<span id="student">{escape(item.student)}</span>'),
        ("Notebook", escape(result.notebook)),
        ("Submission", f"<code>{escape(item.file)}</code>"),
        ("SHA-256", f'<code title="{escape(item.sha256)}">{escape(item.sha256[:12])}</code>'),
        ("Submitted", _time(item.submitted_at)),
        ("Graded", f"{_time(item.graded_at)} by grader {escape(item.grader_version)}"),
    ]
    rows = "".join(f"<dt>{name}</dt><dd>{value}</dd>" for name, value in meta)
    return (
        f"<header><h1>Feedback: {escape(result.notebook)}</h1>"
        f'<dl class="meta">{rows}</dl><p class="total">{total}</p></header>'
    )


def _error_box(error: str) -> str:
    if not error:
        return ""
    return (
        '<div class="error" role="alert"><h2>This notebook could not be graded</h2>'
        f'<p class="message">{escape(error)}</p></div>'
    )


def _notices(notices: tuple[str, ...]) -> str:
    if not notices:
        return ""
    items = "".join(f"<li>{escape(notice)}</li>" for notice in notices)
    return f'<h2>Notes about your submission</h2><ul class="notices">{items}</ul>'


def _score_table(result: NotebookResult) -> str:
    if result.error:
        return ""
    if not result.checks:
        return "<h2>Scores</h2><p>No check was run on this notebook.</p>"
    total = (
        f'<tfoot><tr><th colspan="3">Total</th>'
        f'<td class="num">{_out_of(result.score, result.max_score)}</td></tr></tfoot>'
    )
    rows = [_score_row(check) for check in result.checks]
    return "<h2>Scores</h2>" + _table("scores", SCORE_COLUMNS, rows, total)


def _score_row(check: CheckResult) -> str:
    gid = escape(check.grade_id)
    return (
        f'<tr><td><a href="#cell-{gid}">{gid}</a></td><td>{escape(check.name)}</td>'
        f"<td>{_verdict(check)}</td>"
        f'<td class="num">{_out_of(check.score, check.points)}</td></tr>'
    )


def _grade_ids(result: NotebookResult) -> list[str]:
    found = [a.grade_id for a in result.answers] + [c.grade_id for c in result.checks]
    return list(dict.fromkeys(found + [f.grade_id for f in result.figures]))


def _cell_section(result: NotebookResult, grade_id: str) -> str:
    checks = [check for check in result.checks if check.grade_id == grade_id]
    sources = [answer.source for answer in result.answers if answer.grade_id == grade_id]
    code = (
        f"<pre><code>{escape(sources[-1])}</code></pre>"
        if sources
        else "<p>No code of yours was found for this cell.</p>"
    )
    items = "".join(_check_item(check) for check in checks)
    checks_html = f'<h3>Checks</h3><ul class="checks">{items}</ul>' if checks else ""
    figures = "".join(_figure(f) for f in result.figures if f.grade_id == grade_id)
    score = _out_of(sum(c.score for c in checks), sum(c.points for c in checks))
    gid = escape(grade_id)
    return (
        f'<section class="cell" id="cell-{gid}"><h2>TO DO cell <code>{gid}</code>: {score}</h2>'
        f'<div class="columns"><div><h3>Your code</h3>{code}</div>'
        f"<div>{checks_html}{figures}</div></div></section>"
    )


def _check_item(check: CheckResult) -> str:
    message = f'<p class="message">{escape(check.message)}</p>' if check.message else ""
    return (
        f"<li>{_verdict(check)} {escape(check.name)} "
        f"({_out_of(check.score, check.points)}){message}</li>"
    )


def _verdict(check: CheckResult) -> str:
    return '<span class="pass">PASS</span>' if check.passed else '<span class="fail">FAIL</span>'


def _figure(figure: Figure) -> str:
    reason = figure.missing
    if not reason:
        try:
            uri = _png_data_uri(partial(_draw_figure, figure))
            return f"<figure>{_image(uri, f'Plot: {figure.title}')}</figure>"
        except ValueError as error:  # series that do not fit together (x and y of other lengths)
            reason = f"the values could not be drawn ({error})"
    return (
        f"<figure><figcaption>{escape(figure.title)}</figcaption>"
        f'<p class="no-plot">no plot: {escape(reason)}</p></figure>'
    )


# --- the class summary ---
def _summary_page(
    graded: list[GradedNotebook], folders: dict[str, str], pages: dict[str, str]
) -> str:
    """The class summary: per notebook, the scores and what the class missed; the students."""
    students = by_student(graded)
    notebooks = sorted({item.result.notebook for item in graded})
    body = [
        "<h1>Class summary</h1>",
        f'<p>Students: <span id="students">{len(students)}</span>; '
        f"notebooks: {len(notebooks)}.</p>",
        *(
            _notebook_summary(nb, [g for g in graded if g.result.notebook == nb])
            for nb in notebooks
        ),
        _student_table(students, notebooks, folders, pages),
    ]
    return _page("Class summary", body)


def _notebook_summary(notebook: str, items: list[GradedNotebook]) -> str:
    totals = [item.result.score for item in items]
    maximum = max(item.result.max_score for item in items)
    errors = sum(bool(item.result.error) for item in items)
    stats = [
        ("students", str(len(items))),
        ("could not be graded", str(errors)),
        ("mean", _points(round(statistics.mean(totals), 2))),
        ("median", _points(round(statistics.median(totals), 2))),
        ("highest", _points(max(totals))),
        ("out of", _points(maximum)),
    ]
    cells = "".join(f'<td class="num" data-stat="{name}">{value}</td>' for name, value in stats)
    histogram = _png_data_uri(partial(_draw_histogram, totals, maximum))
    return (
        f'<section class="notebook" id="nb-{escape(notebook)}"><h2>{escape(notebook)}</h2>'
        + _table("stats", [name for name, _ in stats], [f"<tr>{cells}</tr>"])
        + f"<figure>{_image(histogram, f'Histogram of the scores in {notebook}')}</figure>"
        f"{_rates_block(notebook, pass_rates(items))}</section>"
    )


def _rates_block(notebook: str, rates: list[CheckRate]) -> str:
    if not rates:
        return "<p>No check was run on this notebook.</p>"
    rows = [
        f'<tr class="rate" data-check="{escape(r.grade_id)}::{escape(r.name)}">'
        f"<td>{escape(r.grade_id)}</td><td>{escape(r.name)}</td>"
        f'<td class="num passed">{r.passed}/{r.students}</td>'
        f'<td class="num share">{round(100 * r.share)}%</td></tr>'
        for r in rates
    ]
    chart = _png_data_uri(partial(_draw_pass_rates, rates), height=1.2 + 0.32 * len(rates))
    return (
        "<h3>Checks, the most missed first</h3>"
        + _table("rates", RATE_COLUMNS, rows)
        + f"<figure>{_image(chart, f'Share of students who passed each check of {notebook}')}"
        "</figure>"
    )


def _student_table(
    students: dict[str, list[GradedNotebook]],
    notebooks: list[str],
    folders: dict[str, str],
    pages: dict[str, str],
) -> str:
    rows = []
    for student, items in students.items():
        results = {item.result.notebook: item.result for item in items}
        cells = "".join(
            _student_cell(results.get(nb), f"{folders[student]}/{pages[nb]}") for nb in notebooks
        )
        rows.append(f'<tr><th scope="row">{escape(student)}</th>{cells}</tr>')
    columns = ["Student", *(escape(notebook) for notebook in notebooks)]
    return "<h2>Students</h2>" + _table("students", columns, rows)


def _student_cell(result: NotebookResult | None, link: str) -> str:
    if result is None:
        return "<td>—</td>"
    score = "not graded" if result.error else _out_of(result.score, result.max_score)
    return f'<td><a href="{escape(quote(link))}">{score}</a></td>'


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


# --- page parts ---
def _page(title: str, body: list[str]) -> str:
    content = "\n".join(part for part in body if part)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)}</title><style>{STYLE}</style></head>
<body>
{content}
</body></html>
"""


def _table(css_class: str, columns: Sequence[str], rows: Sequence[str], foot: str = "") -> str:
    head = "".join(f"<th>{column}</th>" for column in columns)
    body = f"<tbody>{''.join(rows)}</tbody>"
    return f'<table class="{css_class}"><thead><tr>{head}</tr></thead>{body}{foot}</table>'


def _image(uri: str, alt: str) -> str:
    return f'<img src="{uri}" alt="{escape(alt)}">'


def _time(moment: datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M} UTC"


def _points(value: float) -> str:
    return f"{value:g}"


def _out_of(score: float, points: float) -> str:
    return f"{_points(score)} / {_points(points)}"

"""The feedback pages in a real browser: they render, every image loads, nothing errs, and the
numbers a reader sees are the gradebook's."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from grader.config import Config
from grader.feedback import write_feedback
from grader.gradebook import GradedNotebook, GradingAction
from grader.standing import class_standings
from tests.test_feedback import COURSE_CLASS_PAGE, build_gradebook

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


@dataclass(frozen=True)
class Site:
    graded: list[GradedNotebook]
    pages: list[Path]

    def page(self, item: GradedNotebook) -> Path:
        return self.pages[self.graded.index(item)]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Site:
    folder = tmp_path_factory.mktemp("feedback")
    graded = build_gradebook(folder).latest()
    return Site(graded, write_feedback(graded, folder / "out"))


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.exists()]
    if missing:
        pytest.skip(f"needs Debian's chromium and chromedriver; missing: {', '.join(missing)}")
    options = webdriver.ChromeOptions()
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1200,900"):
        options.add_argument(argument)
    options.binary_location = str(CHROMIUM)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    yield driver
    driver.quit()


def open_page(browser: WebDriver, page: Path) -> None:
    browser.get(page.as_uri())
    assert browser.execute_script("return document.readyState") == "complete"


def test_every_page_renders_loads_its_images_and_logs_no_error(
    browser: WebDriver, site: Site
) -> None:
    for page in site.pages:
        open_page(browser, page)  # a script of a student's that ran would have raised an alert
        assert browser.title and browser.find_element(By.TAG_NAME, "h1").text
        assert browser.find_elements(By.TAG_NAME, "h2")
        loaded = browser.execute_script(
            "return Array.from(document.images, image => image.complete && image.naturalWidth)"
        )
        assert all(width and width > 0 for width in loaded), page
        assert browser.execute_script("return document.scripts.length") == 0
        severe = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
        assert severe == [], page


def test_the_scores_a_student_reads_are_the_gradebooks(browser: WebDriver, site: Site) -> None:
    for item in site.graded:
        open_page(browser, site.page(item))
        assert browser.find_element(By.ID, "student").text == item.student
        assert browser.find_element(By.ID, "score").text == f"{item.result.score:g}"
        if not item.result.error:
            maximum = browser.find_element(By.ID, "max-score").text
            assert maximum == f"{item.result.max_score:g}"
        assert item.result.notebook in browser.title


def test_the_summary_shows_each_checks_pass_rate_and_links_every_page(
    browser: WebDriver, site: Site
) -> None:
    open_page(browser, site.pages[-1])
    assert browser.find_element(By.ID, "students").text == str(
        len({g.student for g in site.graded})
    )
    shown = {
        row.get_attribute("data-check"): row.find_element(By.CSS_SELECTOR, ".share").text
        for row in browser.find_elements(By.CSS_SELECTOR, "tr.rate")
    }
    assert shown == expected_shares(site.graded)
    links = browser.find_elements(By.CSS_SELECTOR, "table.students tbody a")
    targets = {Path(browser.execute_script("return arguments[0].href", a)[7:]) for a in links}
    assert targets == set(site.pages[: len(site.graded)])


def expected_shares(graded: list[GradedNotebook]) -> dict[str, str]:
    """`grade_id::check` -> the share of the notebook's students who passed it, counted here."""
    shares = {}
    for item in graded:
        students = [g for g in graded if g.result.notebook == item.result.notebook]
        for check in item.result.checks:
            passed = sum(
                c.passed
                for g in students
                for c in g.result.checks
                if (c.grade_id, c.name) == (check.grade_id, check.name)
            )
            shares[f"{check.grade_id}::{check.name}"] = f"{round(100 * passed / len(students))}%"
    return shares


def test_the_class_table_is_on_the_first_screen_at_laptop_size(
    browser: WebDriver, site: Site
) -> None:
    assert_table_on_first_screen(browser, site.pages[len(site.graded) :])


def assert_table_on_first_screen(browser: WebDriver, pages: list[Path]) -> None:
    """At 1,280 x 800, the students x notebooks table of each page fits without scrolling."""
    metrics = {"width": 1280, "height": 800, "deviceScaleFactor": 1, "mobile": False}
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
    try:
        for page in pages:
            open_page(browser, page)
            box = browser.execute_script(
                "const r = document.querySelector('table.students').getBoundingClientRect();"
                "return [r.top, r.bottom, document.documentElement.scrollWidth, innerWidth];"
            )
            top, bottom, width, viewport = box
            assert 0 <= top and bottom <= 800 and width <= viewport == 1280, (page, box)
    finally:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def test_the_class_table_shows_the_gradebooks_scores_and_totals(
    browser: WebDriver, site: Site
) -> None:
    open_page(browser, site.pages[-1])
    notebooks = sorted({g.result.notebook for g in site.graded})
    for row in browser.find_elements(By.CSS_SELECTOR, "table.students tbody tr"):
        student = row.find_element(By.TAG_NAME, "th").text
        cells = [cell.text for cell in row.find_elements(By.TAG_NAME, "td")]
        mine = {g.result.notebook: g.result for g in site.graded if g.student == student}
        expected = [
            "—" if nb not in mine else "not graded" if mine[nb].error else f"{mine[nb].score:g}"
            for nb in notebooks
        ]
        maximum = sum(
            max(g.result.max_score for g in site.graded if g.result.notebook == nb)
            for nb in notebooks
        )
        total = sum(result.score for result in mine.values())
        assert cells == [*expected, f"{total:g} / {maximum:g}"], student


def test_a_sort_link_opens_the_table_sorted_by_that_column(browser: WebDriver, site: Site) -> None:
    open_page(browser, site.pages[-1])
    browser.find_element(By.LINK_TEXT, "Total").click()
    assert browser.current_url.endswith("/sorted-by-total.html")
    totals = [
        float(cell.text.split(" / ")[0])
        for cell in browser.find_elements(By.CSS_SELECTOR, "table.students tbody td.grand")
    ]
    assert totals == sorted(totals, reverse=True) and len(totals) == 5
    assert browser.execute_script("return document.scripts.length") == 0


def test_a_course_template_changes_the_page_in_the_browser(
    browser: WebDriver, site: Site, tmp_path: Path
) -> None:
    (tmp_path / "class.html.j2").write_text(COURSE_CLASS_PAGE, encoding="utf-8")
    pages = write_feedback(site.graded, tmp_path / "out", tmp_path)
    open_page(browser, pages[-1])
    assert browser.find_element(By.ID, "course-title").text == "Autodiff, autumn term"
    assert browser.find_elements(By.CSS_SELECTOR, "table.students tbody tr")
    severe = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert severe == []


def test_late_penalties_and_overrides_read_as_the_standings_say(
    browser: WebDriver, site: Site, tmp_path: Path
) -> None:
    # every 02_x was handed in on 2 May, 09:30: a day and a half late, so two days
    config = Config(
        root=Path(os.devnull), due={"02_x": datetime(2024, 5, 1, tzinfo=timezone.utc)},
        late_penalty_per_day=0.1,
    )  # fmt: skip
    actions = [GradingAction("bob", "02_x", "override", "", 4.0, "right in the oral", "prof")]
    pages = write_feedback(site.graded, tmp_path / "out", actions=actions, config=config)
    table = class_standings(site.graded, [], actions, config)
    open_page(browser, pages[-1])
    notebooks, late = list(table["alice"]), []
    for row in browser.find_elements(By.CSS_SELECTOR, "table.students tbody tr"):
        student = row.find_element(By.TAG_NAME, "th").text
        cells = row.find_elements(By.TAG_NAME, "td")
        x = table[student]["02_x"]
        if x.final is not None:
            marks = ("L2" if x.late_days == 2 else "") + ("O" if x.override is not None else "")
            assert cells[notebooks.index("02_x")].text == f"{x.final:g}{marks}", student
            late.append(student)
    assert len(late) == 3 and all(table[s]["02_x"].late_days == 2 for s in late)
    bob = table["bob"]["02_x"]
    assert (bob.override, bob.penalty, bob.final) == (4.0, 1.0, 3.0)
    open_page(browser, next(page for page in pages if page.parts[-2:] == ("bob", "02_x.html")))
    shown = [browser.find_element(By.ID, name).text for name in ("raw", "override", "penalty")]
    assert shown == [f"{bob.raw:g}", "4", "-1"] and browser.find_element(By.ID, "final").text == "3"
    assert "right in the oral (prof," in browser.find_element(By.CSS_SELECTOR, "tr.override").text
    assert_table_on_first_screen(browser, pages[len(site.graded) :])

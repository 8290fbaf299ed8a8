"""The gradebook on SQLite and on a real PostgreSQL server: schema, history, incremental grading."""

from __future__ import annotations

import dataclasses
import math
import os
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, text

from grader.errors import GradebookError
from grader.gradebook import Base, Gradebook, database_url
from grader.results import FAILED, PASSED, Answer, CheckResult, Figure, NotebookResult, Series
from grader.submissions import Submission
from grader.untrusted import MAX_MESSAGE_CHARS

POSTGRES_ENV = "GRADER_TEST_POSTGRES_URL"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A new, empty database: a SQLite file, or a fresh database on the PostgreSQL server."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'gradebook.db'}"
        return
    server = os.environ.get(POSTGRES_ENV)
    if not server:
        pytest.skip(f"{POSTGRES_ENV} is not set (.ci/run starts PostgreSQL and sets it)")
    name = f"grader_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server.replace("postgresql://", "postgresql+psycopg://", 1))
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text(f"CREATE DATABASE {name}"))
    try:
        yield server.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text(f"DROP DATABASE {name} WITH (FORCE)"))
        admin.dispose()


def submission(student: str = "alice", sha: str = "a" * 64, when: int = 1) -> Submission:
    return Submission(
        student=student,
        exercise="01_basics",
        path=Path(f"/class/{student}/01_basics.ipynb"),
        file=f"{student}/01_basics.ipynb",
        sha256=sha,
        submitted_at=datetime(2026, 11, when, 12, 0),
    )


def result(score: float = 1.0, message: str = "wrong") -> NotebookResult:
    checks = (
        CheckResult("01_basics", "first", "answer", 1.0, score, PASSED if score else FAILED,
                    "" if score else message),
        CheckResult("01_basics", "second", "double", 2.0, 2.0, PASSED),
    )  # fmt: skip
    figure = Figure(
        "first", "loss", "epoch", "loss",
        (Series("you", (0.0, 1.0, 2.0), (3.0, math.nan, 1.0)),), log_y=True,
    )  # fmt: skip
    return NotebookResult(
        "01_basics", "/class/alice/01_basics.ipynb", checks, notices=("a notice",),
        seconds=1.5, isolation="bubblewrap", seeds=(1, 2),
        answers=(Answer("first", "answer = 42"),),
        figures=(figure, Figure("second", "fit", "x", "y", missing="`x` is not defined")),
    )  # fmt: skip


def test_the_schema_is_created_and_matches_the_models(db_url: str) -> None:
    with Gradebook(db_url) as gradebook:
        with gradebook.engine.connect() as connection:
            context = MigrationContext.configure(connection)
            assert compare_metadata(context, Base.metadata) == []
            assert context.get_current_revision() == "0004"
        assert gradebook.latest() == []
    with Gradebook(db_url) as reopened:  # already up to date: opened as is
        assert reopened.latest() == []


OPEN_WHEN_TOLD = """
import sys, time
from pathlib import Path
from grader.gradebook import Gradebook
while not Path(sys.argv[2]).exists():
    time.sleep(0.005)
with Gradebook(sys.argv[1]) as gradebook:
    assert gradebook.latest() == []
"""


def test_graders_opening_a_new_gradebook_at_once_all_get_it(db_url: str, tmp_path: Path) -> None:
    # Four graders started together on one new gradebook (a class split over CI jobs): one
    # creates the schema, the others wait for it and find it up to date.
    go = tmp_path / "go"
    openers = [
        subprocess.Popen(
            [sys.executable, "-c", OPEN_WHEN_TOLD, db_url, str(go)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        for _ in range(4)
    ]  # fmt: skip
    time.sleep(2)  # their imports
    go.touch()
    outputs = [opener.communicate(timeout=60)[0] for opener in openers]
    assert [opener.returncode for opener in openers] == [0] * 4, outputs


def test_a_result_reads_back_whole(db_url: str) -> None:
    with Gradebook(db_url) as gradebook:
        gradebook.record(submission(), result(score=0.0), "1.0", "course-v1")
        (graded,) = gradebook.latest()
    assert graded.student == "alice" and graded.file == "alice/01_basics.ipynb"
    assert graded.submitted_at == datetime(2026, 11, 1, 12, 0)
    expected = result(score=0.0)
    got = graded.result
    assert got.checks == expected.checks
    assert (got.score, got.max_score) == (2.0, 3.0)
    assert got.answers == expected.answers and got.notices == expected.notices
    assert got.seeds == (1, 2) and got.isolation == "bubblewrap"
    (series,) = got.figures[0].series
    assert series.y[0] == 3.0 and math.isnan(series.y[1]), "NaN survives as a gap"
    assert got.figures[1].missing == "`x` is not defined"


HOSTILE = "a\x00b\ud800c\udcff\x1b[2J\u202e"
SHOWN = "a\\x00b\\ud800c\\xff\\x1b[2J\\u202e"


def test_text_no_database_takes_is_stored_cleaned_and_cut(db_url: str) -> None:
    hostile = dataclasses.replace(
        result(score=0.0, message=HOSTILE + "x" * 50_000),
        notices=(HOSTILE,), error=HOSTILE, answers=(Answer("first", HOSTILE),),
    )  # fmt: skip
    with Gradebook(db_url) as gradebook:
        gradebook.record(submission(student=HOSTILE), hostile, "1.0", "course-v1")
        assert gradebook.is_graded(submission(student=HOSTILE), "1.0", "course-v1")
        (graded,) = gradebook.latest()
    assert graded.student == SHOWN and graded.result.error == SHOWN
    assert graded.result.notices == (SHOWN,) and graded.result.answers[0].source == SHOWN
    message = graded.result.checks[0].message
    assert message.startswith(SHOWN) and len(message) == MAX_MESSAGE_CHARS


def test_history_is_kept_and_the_latest_submission_counts(db_url: str) -> None:
    with Gradebook(db_url) as gradebook:
        gradebook.record(submission(), result(score=0.0), "1.0", "v1")
        gradebook.record(submission(), result(score=1.0), "1.0", "v2")  # a regrade: a new run
        gradebook.record(submission(sha="b" * 64, when=2), result(score=0.0), "1.0", "v2")
        gradebook.record(submission("bob"), result(score=1.0), "1.0", "v2")
        assert gradebook.run_count() == 4
        latest = {g.student: g for g in gradebook.latest()}
    assert latest["alice"].sha256 == "b" * 64, "the later submission is the current one"
    assert latest["alice"].result.score == 2.0
    assert latest["bob"].result.score == 3.0


def test_the_lms_late_mark_reads_back(db_url: str) -> None:
    late = dataclasses.replace(submission("bob"), lms_late=True)
    with Gradebook(db_url) as gradebook:
        gradebook.record(late, result(), "1.0", "v1")
        gradebook.record(submission(), result(), "1.0", "v1")
        marks = {g.student: g.lms_late for g in gradebook.latest()}
    assert marks == {"alice": False, "bob": True}


def test_is_graded_needs_the_same_file_grader_and_course(db_url: str) -> None:
    with Gradebook(db_url) as gradebook:
        gradebook.record(submission(), result(), "1.0", "v1")
        assert gradebook.is_graded(submission(), "1.0", "v1")
        assert not gradebook.is_graded(submission(sha="c" * 64), "1.0", "v1")
        assert not gradebook.is_graded(submission(), "1.1", "v1")
        assert not gradebook.is_graded(submission(), "1.0", "v2")
        assert not gradebook.is_graded(submission("bob"), "1.0", "v1")


def test_a_database_that_is_not_a_gradebook_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE payroll (id INTEGER)")
    with pytest.raises(GradebookError, match=r"holds tables \(payroll\) but is not a gradebook"):
        Gradebook(str(path))


def test_a_gradebook_from_a_newer_grader_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "gradebook.db"
    Gradebook(str(path)).close()
    with sqlite3.connect(path) as connection:
        connection.execute("UPDATE alembic_version SET version_num = '9999'")
    with pytest.raises(GradebookError, match=r"written by a newer grader .*9999"):
        Gradebook(str(path))


def test_a_file_that_is_not_a_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_text("these are my notes, not a database\n" * 100)
    with pytest.raises(GradebookError, match="cannot open the gradebook"):
        Gradebook(str(path))


def test_database_locations() -> None:
    assert database_url(None) == "sqlite:///gradebook.db"
    assert database_url("class/grades.db") == "sqlite:///class/grades.db"
    url = "postgresql://grader@db.example.edu/course"
    assert database_url(url) == url
    with pytest.raises(GradebookError, match="cannot use the database 'nosuchdialect://x'"):
        Gradebook("nosuchdialect://x")


def test_an_unreachable_server_is_a_clear_error() -> None:
    with pytest.raises(
        GradebookError, match=r"cannot open the gradebook postgresql.*127\.0\.0\.1:9"
    ) as error:
        Gradebook("postgresql://grader:secret@127.0.0.1:9/course")
    assert "secret" not in str(error.value), "the password is never printed"

"""Hypothesis at the boundaries where student data enters the grader: arbitrary input never
raises anything but the documented error.

- the payload decoder (`extract.decode_payload`): a value, or `PayloadError`;
- the notebook reader (`prepare.read_submission`, then `merge_cells`): a notebook, or a reason;
- the archive collector (`submissions.open_submissions` on zips built from arbitrary names,
  dates, contents and damage): submissions with clean names, or `SubmissionsError`;
- the text cleaner (`grader.untrusted`) against every sink: what it returns round-trips through
  JSON (as UTF-8), an XML parser, SQLite, CSV, holds nothing a terminal interprets, and makes
  a file name any file system takes.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sqlite3
import tempfile
import unicodedata
import warnings
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path
from typing import Any

import nbformat
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from grader.errors import SubmissionsError
from grader.extract import PayloadError, decode_payload
from grader.prepare import merge_cells, read_submission
from grader.submissions import open_submissions
from grader.untrusted import (
    clean_line,
    clean_message,
    clean_text,
    display_name,
    safe_file_name,
)
from tests.conftest import mini_solution

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ANY_TEXT = st.text(st.characters(exclude_categories=[]))  # lone surrogates included
FORBIDDEN = {"Cc", "Cf", "Cs", "Zl", "Zp"}
EXERCISE = mini_solution()


def unsafe(text: str, allowed: str = "\n\t") -> list[str]:
    """What no sink may get: controls, format characters, separators, surrogates and
    noncharacters (the policy of `grader.untrusted`, restated)."""
    return [
        char
        for char in text
        if char not in allowed
        and (
            unicodedata.category(char) in FORBIDDEN
            or 0xFDD0 <= ord(char) <= 0xFDEF
            or (ord(char) & 0xFFFE) == 0xFFFE
        )
    ]


# ----------------------------------------------------------------------------- the decoder

TAGS = [
    "__tuple__",
    "__dict__",
    "__tensor__",
    "__ndarray__",
    "__module__",
    "__linear__",
    "__unsupported__",
    "other",
]
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | ANY_TEXT,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from([*TAGS, "dtype", "shape", "data", "state", "type"]),
            children,
            max_size=3,
        )
    ),
    max_leaves=20,
)
ARRAY_BODIES = st.fixed_dictionaries(
    {
        "dtype": st.sampled_from(["float32", "float64", "int64", "bool", "bfloat16", "x"]),
        "shape": st.lists(st.integers(-2, 4), max_size=3),
        "data": st.sampled_from(["", "AAAA", "AAAAAAAAAAA=", "not base64!", "AA=="]),
        "requires_grad": st.booleans(),
    }
)


@FUZZ
@given(
    st.one_of(
        JSON_VALUES.map(json.dumps),
        ANY_TEXT,
        st.builds(
            lambda tag, body: json.dumps({tag: body}),
            st.sampled_from(["__tensor__", "__ndarray__"]),
            ARRAY_BODIES,
        ),
    )
)
def test_the_decoder_returns_a_value_or_payload_error(text: str) -> None:
    try:
        decode_payload(text)
    except PayloadError:
        pass


# ----------------------------------------------------------------------------- the reader


def notebook_like(cells: list[Any], version: Any) -> bytes:
    return json.dumps({"cells": cells, "nbformat": version, "metadata": {}}).encode()


CELLS = st.lists(
    st.fixed_dictionaries(
        {},
        optional={
            "cell_type": st.sampled_from(["code", "markdown", 3]) | JSON_VALUES,
            "source": ANY_TEXT | st.lists(ANY_TEXT | st.integers(), max_size=3) | JSON_VALUES,
            "metadata": st.fixed_dictionaries(
                {},
                optional={
                    "nbgrader": st.fixed_dictionaries(
                        {},
                        optional={"grade_id": st.sampled_from(["first", "second"]) | JSON_VALUES},
                    )
                    | JSON_VALUES
                },
            )
            | JSON_VALUES,
        },
    )
    | JSON_VALUES,
    max_size=6,
)
NOTEBOOK_FILES = st.one_of(
    st.binary(max_size=300),
    JSON_VALUES.map(lambda value: json.dumps(value).encode()),
    st.builds(notebook_like, CELLS, st.sampled_from([4, 3, "4", None, 4.0, True])),
    st.integers(0, 5000).map(lambda depth: b'{"cells": ' + b"[" * depth + b"]" * depth + b"}"),
)


@FUZZ
@given(NOTEBOOK_FILES)
def test_the_reader_returns_a_notebook_or_a_reason(content: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "nb.ipynb"
        path.write_bytes(content)
        nb, problem = read_submission(path)
    assert (nb is None) == bool(problem)
    if nb is not None:
        merged = merge_cells(EXERCISE, nb)
        assert unsafe("".join(merged.notices)) == []
        nbformat.writes(merged.notebook)  # the merged notebook can be sent to a kernel
        json.dumps(merged.notebook).encode("utf-8")


# ----------------------------------------------------------------------------- the collector

NAMES = st.lists(
    st.sampled_from(["alice", "b_1_01_mini", "..", ".", "", "x" * 300, "É", "é"])
    | st.text(st.characters(exclude_categories=["Cs"]), max_size=12),
    min_size=1,
    max_size=4,
).map("/".join)
ENTRIES = st.lists(
    st.tuples(
        st.one_of(NAMES, NAMES.map(lambda name: name + ".ipynb"), NAMES.map(lambda n: n + "/")),
        st.tuples(
            st.integers(1980, 2107),
            st.integers(0, 15),
            st.integers(0, 31),
            st.integers(0, 31),
            st.integers(0, 63),
            st.integers(0, 31).map(lambda s: 2 * s),
        ),
        st.binary(max_size=100) | st.just(nbformat.writes(EXERCISE).encode()),
        st.sampled_from(
            [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA]
        ),
        st.sampled_from([0, 0o120777 << 16, 0o040755 << 16]),  # plain, link, folder
    ),
    min_size=1,
    max_size=6,
)


def build_zip(entries: list[Any]) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(buffer, "w") as zipped:
        warnings.simplefilter("ignore")  # duplicate names are part of the point
        for name, date, data, compression, mode in entries:
            info = zipfile.ZipInfo(name, date)
            info.compress_type, info.external_attr = compression, mode
            zipped.writestr(info, data)
    return buffer.getvalue()


def collect_zip(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        archive = Path(folder) / "class.zip"
        archive.write_bytes(data)
        try:
            with open_submissions(archive, ["01_mini", "02_mini"]) as found:
                for item in found:
                    assert unsafe(item.student + item.file + item.exercise + item.problem) == []
                    if not item.problem:
                        read_submission(item.path)
        except SubmissionsError:
            pass
        assert os.listdir(folder) == ["class.zip"]


@FUZZ
@given(ENTRIES)
def test_the_collector_records_any_archive_or_says_why_not(entries: list[Any]) -> None:
    collect_zip(build_zip(entries))


@FUZZ
@given(ENTRIES, st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=8))
def test_the_collector_survives_damaged_archives(
    entries: list[Any], damage: list[tuple[int, int]]
) -> None:
    data = bytearray(build_zip(entries))
    for position, byte in damage:
        data[position % len(data)] = byte
    collect_zip(bytes(data))


# ----------------------------------------------------------------------------- the cleaner


@FUZZ
@given(ANY_TEXT)
def test_cleaned_text_is_safe_for_every_sink(text: str) -> None:
    for cleaned in (clean_text(text), clean_message(text), clean_line(text), display_name(text)):
        assert unsafe(cleaned) == [], "the terminal: nothing it interprets"
        assert json.loads(json.dumps(cleaned, ensure_ascii=False).encode("utf-8")) == cleaned
        element = ET.Element("case", message=cleaned)
        element.text = cleaned
        parsed = ET.fromstring(ET.tostring(element, encoding="utf-8"))
        assert (parsed.get("message"), parsed.text or "") == (cleaned, cleaned)
        with sqlite3.connect(":memory:") as db:
            db.execute("CREATE TABLE t (x TEXT)")
            db.execute("INSERT INTO t VALUES (?)", (cleaned,))
            assert db.execute("SELECT x FROM t").fetchone() == (cleaned,)
        buffer = io.StringIO(newline="")
        csv.writer(buffer).writerow([cleaned])
        assert next(csv.reader(io.StringIO(buffer.getvalue(), newline=""))) == [cleaned]
        assert "\x00" not in cleaned  # PostgreSQL's text takes no NUL, and UTF-8 only:
        cleaned.encode("utf-8")
    assert clean_text(clean_text(text)) == clean_text(text)
    assert unsafe(clean_line(text), allowed="") == [] and "\n" not in display_name(text)


@FUZZ
@given(ANY_TEXT, ANY_TEXT)
def test_display_names_of_distinct_names_differ(first: str, second: str) -> None:
    assert (display_name(first) == display_name(second)) == (first == second)


@settings(FUZZ, suppress_health_check=list(HealthCheck))
@given(ANY_TEXT, st.sampled_from(["", ".ipynb"]))
def test_safe_file_names_are_taken_by_the_file_system(name: str, suffix: str) -> None:
    safe = safe_file_name(name, suffix)
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / safe).write_bytes(b"")
        assert os.listdir(folder) == [safe]

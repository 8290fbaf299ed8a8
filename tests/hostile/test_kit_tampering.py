"""A kit's reference files are the student's to edit: whatever an edit leaves in one (any JSON
value in any field, nesting too deep for the parser, bytes that are no JSON), checking in the
kit either decodes it or says in one line that no reference fits; it never fails otherwise."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from grader.errors import PrecomputedMismatchError
from grader.extract import RunData
from grader.precomputed import load_reference, save_reference
from tests.test_release import PUBLIC, RECORD, _asked

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=12,
)
# Where an edit can land: the entry, its key and record, the cells and the probes' pairs.
PLACES = [
    (),
    ("key",),
    ("key", "parameters"),
    ("key", "device"),
    ("hidden",),
    ("record",),
    ("record", "cells"),
    ("record", "cells", 0),
    ("record", "cells", 0, "status"),
    ("record", "cells", 0, "ename"),
    ("record", "probes"),
    ("record", "probes", 0),
    ("record", "probes", 0, "payload"),
    ("record", "probes", 0, "failure"),
    ("record", "seconds"),
    ("record", "isolation"),
]


def _edited(entry: dict[str, Any], place: tuple[str | int, ...], value: object) -> object:
    if not place:
        return value
    parent: Any = entry
    for step in place[:-1]:
        parent = parent[step]
    parent[place[-1]] = value
    return entry


def _saved_entry() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        path = save_reference(Path(folder), "01_mini", PUBLIC, _asked(), RECORD)
        entry: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return entry


def _load_after(text: str) -> RunData | str:
    """The reference read from a store whose entry is `text`, or the one line refusing it."""
    with tempfile.TemporaryDirectory() as folder:
        store = Path(folder)
        path = save_reference(store, "01_mini", PUBLIC, _asked(), RECORD)
        path.write_text(text, encoding="utf-8")
        try:
            return load_reference(store, "01_mini", PUBLIC, _asked())
        except PrecomputedMismatchError as error:
            assert "\n" not in str(error)  # what it says follows the edit (a device, a version)
            return str(error)


@settings(deadline=None)  # each example writes and reads a store: a loaded machine is slow
@given(place=st.sampled_from(PLACES), value=JSON)
def test_any_edit_of_a_reference_file_is_read_or_refused_in_one_line(
    place: tuple[str | int, ...], value: object
) -> None:
    _load_after(json.dumps(_edited(_saved_entry(), place, value)))


@pytest.mark.parametrize(
    "text", ["[" * 100_000 + "]" * 100_000, "\x00\xff not json", '{"key": {"exercise": 1}}']
)
def test_a_reference_file_that_is_no_entry_is_refused_in_one_line(text: str) -> None:
    assert "get the kit again" in str(_load_after(text))


@pytest.mark.parametrize(
    ("place", "value"),
    [(("record", "seconds"), 10**400), (("hidden",), None), (("key", "device"), ["cpu"])],
    ids=["seconds-no-float-holds", "hidden-missing", "device-a-list"],
)
def test_edits_that_broke_the_decoder_are_refused(
    place: tuple[str | int, ...], value: object
) -> None:
    edited = json.dumps(_edited(_saved_entry(), place, value))
    assert "get the kit again" in str(_load_after(edited))

"""Student kits: the precomputed reference store, `grader release` and checking inside a kit."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from grader.course import CheckSpec
from grader.errors import PrecomputedMismatchError
from grader.precomputed import load_reference, save_reference, stored_keys
from grader.prepare import Variant
from grader.references import Questions, collect_record, questions

SPEC = CheckSpec(values=("answer",), calls=None, hidden_parameters=None)
PUBLIC = Variant("the notebook's own data", {"seed": 0, "device": "cpu", "scale": 2.0}, 7)
RECORD: dict[str, Any] = {
    "cells": {"first": ["ok", "", ""]},
    "payloads": [['{"answer": {"type": "float", "value": 42.0}}', ""]],
}


def _asked(variant: Variant = PUBLIC) -> Questions:
    return questions(SPEC, variant)


def test_a_stored_record_is_found_by_what_a_kit_can_compute(tmp_path: Path) -> None:
    save_reference(tmp_path, "01_mini", PUBLIC, _asked(), RECORD)
    found = load_reference(tmp_path, "01_mini", PUBLIC, _asked())
    assert found == collect_record(PUBLIC, RECORD, _asked())
    assert stored_keys(tmp_path, "01_mini")[0][0].device == "cpu"


def _other_probes(variant: Variant) -> Questions:
    asked = _asked(variant)
    return dataclasses.replace(asked, probes=[*asked.probes, "pass"])


MISMATCHES = [
    # (what differs from the stored record, the fragment of the one-line error)
    ("exercise", "have none for 02_mini: get the kit again"),
    ("grader_version", "were made by autodiff-grader 0.0.1, this is"),
    ("device", "are for cpu, not cuda: run `grader check --device cpu`"),
    ("probes", "another version of 01_mini's checks module or exercise notebook"),
    ("parameters", "another version of 01_mini's checks module or exercise notebook"),
]


@pytest.mark.parametrize(("differs", "message"), MISMATCHES)
def test_a_record_that_does_not_fit_is_an_error_saying_what_to_do(
    tmp_path: Path, differs: str, message: str
) -> None:
    path = save_reference(tmp_path, "01_mini", PUBLIC, _asked(), RECORD)
    if differs == "grader_version":  # a kit released by another grader
        entry = json.loads(path.read_text(encoding="utf-8"))
        entry["key"]["grader_version"] = "0.0.1"
        path.write_text(json.dumps(entry), encoding="utf-8")
    variant, asked, name = PUBLIC, _asked(), "01_mini"
    if differs == "exercise":
        name = "02_mini"
    elif differs == "device":
        variant = dataclasses.replace(PUBLIC, parameters={**PUBLIC.parameters, "device": "cuda"})
        asked = _asked(variant)
    elif differs == "probes":
        asked = _other_probes(PUBLIC)
    elif differs == "parameters":
        variant = dataclasses.replace(PUBLIC, parameters={**PUBLIC.parameters, "scale": 3.0})
        asked = _asked(variant)
    with pytest.raises(PrecomputedMismatchError) as raised:
        load_reference(tmp_path, name, variant, asked)
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_an_unreadable_entry_is_not_a_match(tmp_path: Path) -> None:
    path = save_reference(tmp_path, "01_mini", PUBLIC, _asked(), RECORD)
    path.write_text(json.dumps({"key": {}, "record": RECORD}), encoding="utf-8")
    with pytest.raises(PrecomputedMismatchError, match="have none for 01_mini"):
        load_reference(tmp_path, "01_mini", PUBLIC, _asked())

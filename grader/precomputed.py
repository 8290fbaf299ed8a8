"""Precomputed reference results: reference records kept without the solutions that made them.

A student kit (`grader release`) and an autograder bundle ship, instead of `solutions/`, the
run (`runner.ExecutedNotebook.to_json`) of each exercise's reference run per variant and device.
A record is filed under what a grader can work out without the solution: the exercise's name,
the variant's parameters (the device among them), the probes (the checks module's questions
under the variant's input seed) and the grader's version; the solution's text is not in the key
(so `references`' own cache, keyed by it, cannot serve here). `save_reference` files a record,
`load_reference` finds one or says in one line why none fits (`PrecomputedMismatchError`).

What can be precomputed, for whoever builds a bundle:

- the public variant (`prepare.public_variant`) follows from the exercise notebook, its name
  and the device only, never from the hidden secret: a kit ships it;
- the hidden variant (`prepare.variants`) follows from the secret, the exercise's name and its
  checks module's `hidden_parameters`, never from the student or their notebook: one run per
  exercise and device serves a whole class, built where the secret is. A grader that looks it
  up must plan the same `Variant` (parameters and input seed), so it needs the secret, or the
  planned variants, at grading time too; neither may ever reach a student (a kit holds the
  public variant only).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grader.errors import CourseError, PrecomputedMismatchError
from grader.extract import RunData
from grader.prepare import Variant
from grader.references import GRADER_VERSION, Questions, collect_executed
from grader.runner import ExecutedNotebook

ENTRY_SUFFIX = ".json"


@dataclass(frozen=True)
class StoreKey:
    """What a precomputed record is filed under: everything its run depends on but the solution."""

    exercise: str
    parameters: dict[str, Any]
    probes_sha256: str
    device: str
    grader_version: str = GRADER_VERSION

    def digest(self) -> str:
        fields = [self.exercise, self.parameters, self.probes_sha256, self.device]
        text = json.dumps([*fields, self.grader_version], sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()


def store_key(exercise: str, variant: Variant, asked: Questions) -> StoreKey:
    """The key of the reference run of `exercise` under `variant`, asked `asked`."""
    probes = hashlib.sha256(json.dumps(asked.probes).encode()).hexdigest()
    device = str(variant.parameters.get("device", "cpu"))
    return StoreKey(exercise, dict(variant.parameters), probes, device)


def save_reference(
    store: Path, exercise: str, variant: Variant, asked: Questions, executed: ExecutedNotebook
) -> Path:
    """File the reference run `executed` of `exercise` under `variant` in `store`; the file written.

    The entry also says which variant it is (`hidden`), so that a release can refuse to ship a
    hidden one.
    """
    key = store_key(exercise, variant, asked)
    entry = {"key": _key_fields(key), "hidden": variant.hidden, "record": executed.to_json()}
    path = store / exercise / f"{key.digest()}{ENTRY_SUFFIX}"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(entry, sort_keys=True, indent=1) + "\n", encoding="utf-8")
    return path


def load_reference(store: Path, exercise: str, variant: Variant, asked: Questions) -> RunData:
    """The precomputed reference run of `exercise` under `variant`, decoded as the checks read it.

    Raises PrecomputedMismatchError, naming what differs and what to do, when `store` has none
    for this exercise, grader version, device or checks module.
    """
    key = store_key(exercise, variant, asked)
    entry = _read_entry(store / exercise / f"{key.digest()}{ENTRY_SUFFIX}")
    if entry is None or entry["key"] != json.loads(json.dumps(_key_fields(key))):
        raise PrecomputedMismatchError(_why_missing(store, key))
    try:
        return collect_executed(variant, ExecutedNotebook.from_json(entry["record"]), asked)
    except (KeyError, TypeError, ValueError) as error:
        raise PrecomputedMismatchError(
            f"{store / exercise}: a reference result cannot be read ({error!r}); "
            "get the kit again from your instructor"
        ) from None


def stored_keys(store: Path, exercise: str) -> list[tuple[StoreKey, bool]]:
    """The keys of the records kept for `exercise`, each with whether it is a hidden variant's."""
    found = []
    for path in sorted((store / exercise).glob(f"*{ENTRY_SUFFIX}")):
        entry = _read_entry(path)
        if entry is not None:
            found.append((StoreKey(**entry["key"]), entry["hidden"] is True))
    return found


def _key_fields(key: StoreKey) -> dict[str, Any]:
    return {
        "exercise": key.exercise,
        "parameters": key.parameters,
        "probes_sha256": key.probes_sha256,
        "device": key.device,
        "grader_version": key.grader_version,
    }


def _read_entry(path: Path) -> dict[str, Any] | None:
    """An entry of the store, or None when it is missing or not an entry's shape.

    A kit's entries are files its holder can edit: every field is checked for its type here, so
    that an edited one is "no record fits", never a grader error further on.
    """
    try:
        entry = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):  # RecursionError: nesting too deep
        return None
    if not isinstance(entry, dict) or not _is_key(entry.get("key")):
        return None
    if not isinstance(entry.get("hidden"), bool) or not _is_run(entry.get("record")):
        return None
    return entry


def _is_key(key: object) -> bool:
    """Whether `key` holds a `StoreKey`'s fields, each of its type."""
    fields = _key_fields(StoreKey("", {}, "", ""))
    return (
        isinstance(key, dict)
        and set(key) == set(fields)
        and all(isinstance(key[name], type(value)) for name, value in fields.items())
    )


def _is_run(record: object) -> bool:
    try:
        ExecutedNotebook.from_json(record)
    except ValueError:
        return False
    return True


def _why_missing(store: Path, key: StoreKey) -> str:
    """Why no record fits `key`: the first difference, from the most to the least likely fix."""
    kept = [stored for stored, hidden in stored_keys(store, key.exercise) if not hidden]
    kept = kept or [stored for stored, _ in stored_keys(store, key.exercise)]
    where = f"the reference results in {store}"
    if not kept:
        return f"{where} have none for {key.exercise}: get the kit again from your instructor"
    versions = sorted({stored.grader_version for stored in kept})
    if key.grader_version not in versions:
        return (
            f"{where} were made by autodiff-grader {', '.join(versions)}, this is "
            f"{key.grader_version}: install the kit's own grader "
            "(`pip install -r requirements.txt` in the kit)"
        )
    kept = [stored for stored in kept if stored.grader_version == key.grader_version]
    devices = sorted({stored.device for stored in kept})
    if key.device not in devices:
        return (
            f"{where} are for {' and '.join(devices)}, not {key.device}: run "
            f"`grader check --device {devices[0]}`"
        )
    return (
        f"{where} were made for another version of {key.exercise}'s checks module or exercise "
        "notebook (not the kit's files, or edited since): get the kit again from your instructor"
    )


def save_variants(path: Path, planned: dict[str, list[Variant]]) -> None:
    """Write the planned variants of each exercise (all its runs, on one device) to `path`.

    An autograder bundle grades the hidden variant without the secret that drew it: the plan is
    drawn where the bundle is built and shipped instead (it tells the bundle's holder the hidden
    parameters of these exercises only, where the secret would tell those of every exercise).
    """
    entries: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for exercise, plan in planned.items():
        for variant in plan:
            fields = dataclasses.asdict(variant)
            if json.loads(json.dumps(fields)) != fields:  # a tuple would come back as a list
                raise CourseError(
                    f"{exercise}: the parameters of {variant.label} are not plain JSON values "
                    "(numbers, strings, lists, dicts), so they cannot be shipped"
                )
            device = str(variant.parameters.get("device", "cpu"))
            entries.setdefault(exercise, {}).setdefault(device, []).append(fields)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(entries, sort_keys=True, indent=1) + "\n", encoding="utf-8")


def load_variants(path: Path, exercise: str, device: str) -> list[Variant]:
    """The planned variants of `exercise` on `device` that `save_variants` wrote to `path`."""
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
        return [Variant(**fields) for fields in entries[exercise][device]]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise PrecomputedMismatchError(
            f"{path}: no planned variants of {exercise} on {device} ({type(error).__name__}); "
            "build the autograder again (`grader gradescope`)"
        ) from None

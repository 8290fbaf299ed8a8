"""Cleaning a student's text: what each function keeps, escapes and cuts."""

from __future__ import annotations

import os

import pytest

from grader.untrusted import (
    MAX_FILE_NAME_BYTES,
    MAX_MESSAGE_CHARS,
    MAX_NAME_CHARS,
    clean_line,
    clean_message,
    clean_text,
    display_name,
    runnable_source,
    safe_file_name,
)

# (text, how clean_text shows it)
UNSAFE = {
    "ansi_colour": ("\x1b[31mred\x1b[0m", "\\x1b[31mred\\x1b[0m"),
    "osc_title": ("\x1b]0;owned\x07", "\\x1b]0;owned\\x07"),
    "c1_csi": ("\x9b2J", "\\u009b2J"),
    "carriage_return": ("FAIL\rPASS", "FAIL\nPASS"),
    "crlf": ("a\r\nb", "a\nb"),
    "nul": ("a\x00b", "a\\x00b"),
    "bidi_override": ("abc\u202edcba", "abc\\u202edcba"),
    "bidi_isolate": ("\u2066x\u2069", "\\u2066x\\u2069"),
    "zero_width": ("a\u200bb", "a\\u200bb"),
    "byte_order_mark": ("\ufeffx", "\\ufeffx"),
    "line_separator": ("a\u2028b", "a\\u2028b"),
    "lone_surrogate": ("a\ud800b", "a\\ud800b"),
    "escaped_byte": ("caf\udce9", "caf\\xe9"),
    "noncharacter": ("a\uffffb\U0010fffe", "a\\uffffb\\U0010fffe"),
    "delete": ("a\x7fb", "a\\x7fb"),
}


@pytest.mark.parametrize("case", sorted(UNSAFE))
def test_unsafe_characters_are_shown_as_escapes(case: str) -> None:
    text, shown = UNSAFE[case]
    assert clean_text(text) == shown
    assert clean_text(shown) == shown, "cleaning twice changes nothing"


def test_ordinary_text_is_kept_as_it_is() -> None:
    text = "ℓ(w) = Σ (ŷ − y)²\n\tIndentation, 日本語, émoji 🙂, a\\b"
    assert clean_text(text) == text
    assert clean_line("a\nb\tc") == "a\\x0ab\\x09c"


def test_long_messages_are_cut_with_a_note() -> None:
    cut = clean_message("x" * 100_000)
    assert len(cut) == MAX_MESSAGE_CHARS and cut.endswith("100000 characters in all]")
    assert clean_message("\x1b" * MAX_MESSAGE_CHARS).endswith("characters in all]")
    assert len(clean_message("\x1b" * MAX_MESSAGE_CHARS)) == MAX_MESSAGE_CHARS
    assert clean_message("short") == "short"


def test_display_names_keep_distinct_names_distinct() -> None:
    names = ["Jos\udce9", "Jos\\xe9", "Jos\u00e9", "Jos\x80", "Jos\udc80", "a\nb", "a\\x0ab"]
    shown = [display_name(name) for name in names]
    assert len(set(shown)) == len(names), shown
    assert display_name("Jos\udce9") == "Jos\\xe9" and display_name("Jane Doe") == "Jane Doe"
    long = [display_name("x" * 1000 + tail) for tail in "ab"]
    assert long[0] != long[1] and all(len(name) == MAX_NAME_CHARS for name in long)


@pytest.mark.parametrize(
    "name", ["..", ".", "", "a/b", "x" * 300 + ".ipynb", "é" * 300, "\udcff\x00.ipynb"]
)
def test_safe_file_names_can_be_created(name: str, tmp_path: os.PathLike[str]) -> None:
    safe = safe_file_name(name, ".ipynb")
    assert safe.endswith(".ipynb") and len(safe.encode()) <= MAX_FILE_NAME_BYTES
    path = os.path.join(tmp_path, safe)
    with open(path, "wb"):
        pass
    assert os.listdir(tmp_path) == [safe]


def test_runnable_source_replaces_only_lone_surrogates() -> None:
    assert runnable_source("s = 'a\ud800'\n\x0c") == "s = 'a\ufffd'\n\x0c"
    assert runnable_source("x = '\x1b'") == "x = '\x1b'"

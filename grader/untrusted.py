"""Text from a student, made safe once, where it enters the grader.

Students control far more text than their code: cell error names and texts, the strings their
functions return, folder, file and archive entry names. Every such string passes through one of
the functions below before it reaches a sink (the terminal, JSON, JUnit XML, the SQL gradebook,
HTML, CSV, a file name); past that point it holds no character any sink could choke on or be
fooled by:

- no control characters (C0, DEL, C1: no ANSI or OSC escape sequences, no carriage returns that
  overwrite a line), no format characters (bidi overrides and isolates, zero-width characters,
  byte order marks), no line or paragraph separators, no lone surrogates and no noncharacters;
  so also nothing XML 1.0 forbids, nothing SQLite's or PostgreSQL's UTF-8 text rejects (NUL,
  surrogates), nothing a terminal interprets;
- each such character is written as a visible escape (`\\x1b`, `\\u202e`); a surrogate that
  `surrogateescape` made of an undecodable byte (a non-UTF-8 file name, as `unzip` writes them)
  is written as that byte, `\\xff`;
- multi-line text keeps its line breaks (`\\r\\n` and `\\r` become `\\n`) and tabs.

Messages are cut to `MAX_MESSAGE_CHARS` and names to `MAX_NAME_CHARS`. The code a student wrote
is not cleaned before it runs, only where it is shown or stored (`runnable_source` merely makes
it sendable to the kernel).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

MAX_MESSAGE_CHARS = 2_000
"""A message (cell error, notice, check message) is cut to this many characters."""
MAX_NAME_CHARS = 200
"""A name (student, file, archive entry) is cut to this many characters, ending in a hash."""
MAX_FILE_NAME_BYTES = 255
"""What Linux, macOS and Windows file systems accept in one path component."""
MAX_NOTEBOOK_BYTES = 20 * 1024 * 1024
"""A notebook file or archive entry is read up to this many bytes; a larger one is not graded."""
_UNSAFE_CATEGORIES = {"Cc", "Cf", "Cs", "Zl", "Zp"}
_HASH_CHARS = 12
_SURROGATE = re.compile("[\ud800-\udfff]")


def clean_text(text: str) -> str:
    """`text` with every unsafe character escaped; line breaks and tabs are kept."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return "\n".join(_clean_line(line, keep="\t") for line in lines)


def clean_line(text: str) -> str:
    """`text` as one line: unsafe characters, line breaks and tabs escaped."""
    return _clean_line(text, keep="")


def clean_message(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """`clean_text(text)`, cut to `limit` characters with a note of how much was cut."""
    cleaned = clean_text(text[:limit])
    if len(text) <= limit and len(cleaned) <= limit:
        return cleaned
    note = f" [... cut by the grader: {len(text)} characters in all]"
    return cleaned[: max(limit - len(note), 0)] + note


def display_name(name: str) -> str:
    """A file, folder or entry name as one safe line, distinct for distinct names.

    Backslashes are doubled so that an escape cannot be forged by a name that spells it, and a
    name longer than `MAX_NAME_CHARS` ends in a hash of the whole name.
    """
    shown = _clean_line(name.replace("\\", "\\\\"), keep="")
    if len(shown) <= MAX_NAME_CHARS:
        return shown
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:_HASH_CHARS]
    return f"{shown[: MAX_NAME_CHARS - _HASH_CHARS - 1]}~{digest}"


def safe_file_name(name: str, suffix: str = "") -> str:
    """A name any file system accepts as one path component, readable as `name`, ending in
    `suffix` (which must be short and safe itself)."""
    stem = display_name(name.removesuffix(suffix)).replace("/", "_")
    budget = MAX_FILE_NAME_BYTES - len(suffix.encode())
    stem = stem.encode()[:budget].decode(errors="ignore")
    if stem.strip(".") == "":  # "", "." and ".." are not names of files
        stem = f"_{stem}"
    return stem + suffix


def runnable_source(source: str) -> str:
    """A cell's code as text the kernel can be sent: lone surrogates (which no UTF-8 message can
    carry, nor Python compile) become U+FFFD; everything else runs as written."""
    return _SURROGATE.sub("\ufffd", source)


def _clean_line(line: str, keep: str) -> str:
    if line.isprintable():  # the common case, in C: no character of any unsafe category
        return line
    return "".join(char if char in keep or not _unsafe(char) else _escaped(char) for char in line)


def _unsafe(char: str) -> bool:
    code = ord(char)
    noncharacter = 0xFDD0 <= code <= 0xFDEF or (code & 0xFFFE) == 0xFFFE
    return noncharacter or unicodedata.category(char) in _UNSAFE_CATEGORIES


def _escaped(char: str) -> str:
    code = ord(char)
    if code < 0x80:
        return f"\\x{code:02x}"
    if 0xDC80 <= code <= 0xDCFF:  # an undecodable byte, kept by surrogateescape
        return f"\\x{code - 0xDC00:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"

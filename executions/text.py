"""Text that reaches an operator's terminal: names are refused with control characters, and
whatever is printed has every character that could steer or hide text escaped (old rows,
other writers).

One rule for every line written for a person (the commands' text, the request log): a
character is escaped when Unicode calls it a control (Cc), a format character (Cf) or a line
or paragraph separator (Zl, Zp). Cc holds ESC, which starts terminal escape sequences (clear
the screen, recolour, retitle the window), and CR, LF or BEL, which forge or hide a line. Cf
holds what makes a terminal show text in another order than it is written or hides it: the
bidirectional marks and overrides (U+200E, U+200F, U+061C, U+202A-U+202E, U+2066-U+2069),
the zero-width characters (U+200B-U+200D, U+2060, U+FEFF), the interlinear annotation
marks (U+FFF9-U+FFFB) and the invisible tag characters (U+E0000 block). The commands' --json
output escapes all of them too (json.dumps writes every non-ASCII character as \\uXXXX).
"""

import re
import unicodedata

# C0 and C1 controls and DEL: refused in names (executions/api/schemas.py, the commands).
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f]")
UNPRINTABLE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})


def has_control_characters(text: str) -> bool:
    return CONTROL_CHARACTERS.search(text) is not None


def is_unprintable(character: str) -> bool:
    return unicodedata.category(character) in UNPRINTABLE_CATEGORIES


def _escape(character: str) -> str:
    code = ord(character)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def printable(text: str) -> str:
    """`text` with every character that could steer a terminal or hide text written as an
    escape (\\x1b, \\u200e, \\U000e0041); everything else as it is."""
    if text.isascii() and text.isprintable():
        return text
    return "".join(_escape(character) if is_unprintable(character) else character for character in text)

"""Text that reaches an operator's terminal: names are refused with control characters, and
whatever is printed has its control characters escaped (old rows, other writers)."""

import re

# C0 and C1 controls and DEL: ESC starts terminal escape sequences (clear the screen,
# recolour, retitle the window), and CR, LF or BEL can forge or hide a line of output.
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# Shown escaped too: line and paragraph separators, and the bidirectional controls that make
# a terminal display text in another order than it is written.
_UNSAFE_TO_PRINT = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def has_control_characters(text: str) -> bool:
    return CONTROL_CHARACTERS.search(text) is not None


def printable(text: str) -> str:
    """`text` with every character that could steer a terminal written as an escape (\\x1b)."""
    return _UNSAFE_TO_PRINT.sub(
        lambda match: f"\\x{ord(match[0]):02x}" if ord(match[0]) < 0x100 else f"\\u{ord(match[0]):04x}", text
    )

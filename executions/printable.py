"""Text from users (names, reasons) made safe to print on a terminal or in a log."""

import unicodedata


def printable(text: str) -> str:
    """`text` with control and format characters (escape sequences, newlines, bidi overrides)
    written as Python escapes, so that printing it cannot move the cursor, forge a line or
    reorder what follows; other characters, non-ASCII ones too, are kept."""
    return "".join(
        repr(char)[1:-1] if unicodedata.category(char)[0] == "C" else char for char in text
    )

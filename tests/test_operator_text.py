"""One rule for text written for an operator (executions/text.py `printable`): every
character that could steer a terminal or hide text is escaped, in both cleanup commands'
text output as in their --json output."""

import json
import unicodedata
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from executions.models import ExecutionStatus
from executions.text import printable

from .factories import ExecutionFactory

# The marks the issue found unescaped, and their neighbours of the same kind: bidirectional
# marks, overrides and isolates, zero-width characters, the interlinear annotation marks, a
# tag character, line and paragraph separators, C0 and C1 controls.
HIDDEN_CHARACTERS = [
    "\u200e",  # LEFT-TO-RIGHT MARK
    "\u200f",  # RIGHT-TO-LEFT MARK
    "\u061c",  # ARABIC LETTER MARK
    "\u200b",  # ZERO WIDTH SPACE
    "\ufeff",  # ZERO WIDTH NO-BREAK SPACE (byte order mark)
    "\ufff9",  # INTERLINEAR ANNOTATION ANCHOR
    "\ufffa",  # INTERLINEAR ANNOTATION SEPARATOR
    "\ufffb",  # INTERLINEAR ANNOTATION TERMINATOR
    "\u200c",  # ZERO WIDTH NON-JOINER
    "\u200d",  # ZERO WIDTH JOINER
    "\u2060",  # WORD JOINER
    "\u202a",  # LEFT-TO-RIGHT EMBEDDING
    "\u202e",  # RIGHT-TO-LEFT OVERRIDE
    "\u2066",  # LEFT-TO-RIGHT ISOLATE
    "\u2069",  # POP DIRECTIONAL ISOLATE
    "\u2028",  # LINE SEPARATOR
    "\u2029",  # PARAGRAPH SEPARATOR
    "\U000e0041",  # TAG LATIN CAPITAL LETTER A
    "\x1b",  # ESCAPE
    "\x85",  # NEXT LINE (C1)
]
ESCAPED = {
    character: (
        f"\\x{ord(character):02x}"
        if ord(character) < 0x100
        else f"\\u{ord(character):04x}"
        if ord(character) < 0x10000
        else f"\\U{ord(character):08x}"
    )
    for character in HIDDEN_CHARACTERS
}


def run(command: str, *args: str) -> str:
    out = StringIO()
    call_command(command, *args, stdout=out)
    return out.getvalue()


def stale_execution(name: str):
    return ExecutionFactory(name=name, created_at=timezone.now() - timedelta(days=2))


def finished_execution(name: str):
    long_ago = timezone.now() - timedelta(days=200)
    return ExecutionFactory(
        name=name, status=ExecutionStatus.COMPLETED, created_at=long_ago, finished_at=long_ago
    )


COMMANDS = {
    "cleanup_stale_executions": (stale_execution, ["--older-than", "1h", "--dry-run"]),
    "purge_executions": (finished_execution, ["--finished-before", "90d", "--dry-run"]),
}


@pytest.mark.parametrize("character", HIDDEN_CHARACTERS, ids=lambda c: unicodedata.name(c, f"U+{ord(c):04X}"))
@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.django_db
def test_dry_run_text_escapes_every_hidden_character(command, character):
    make, args = COMMANDS[command]
    execution = make(f"nightly{character}report")

    text = run(command, *args)
    assert character not in text
    assert f"{execution.id}  nightly{ESCAPED[character]}report  " in text

    # --json says the same with JSON's escapes: the name comes back exactly as stored.
    summary = json.loads(run(command, *args, "--json"))
    assert [row["name"] for row in summary["sample"]] == [execution.name]
    assert json.dumps(summary).isascii()


def test_printable_keeps_ordinary_text_of_any_script():
    text = "nightly-report é ß 日本語 عربى 🚀 👩\u200d💻"
    assert printable("nightly-report é ß 日本語 عربى 🚀") == "nightly-report é ß 日本語 عربى 🚀"
    # A joiner inside an emoji sequence is escaped too: the rule is the character's category.
    assert printable(text).endswith("👩\\u200d💻")

"""A Slack incoming webhook, as far as its request goes, in a process of its own: it checks each
POST against the JSON shape Slack documents for incoming webhooks and answers as Slack does
(200 "ok"; 400 "invalid_payload" or "no_text" otherwise), logging each request as a JSON line.

    python tests/slack_receiver.py LOG_JSONL

It listens on a free port of 127.0.0.1 and prints "listening on PORT" once ready.

What it checks (Slack's "Sending messages using incoming webhooks", "Formatting text for app
surfaces" and the Block Kit reference for section blocks):
- Content-Type application/json, a UTF-8 JSON object;
- `text` a non-empty string of at most 40,000 characters (the message, and the fallback shown
  in notifications when `blocks` are used);
- `blocks`, if present, a list of 1-50 objects with a `type`; a `section` block's `text` is a
  text object {"type": "mrkdwn" or "plain_text", "text": 1-3000 characters};
- in mrkdwn text, `&`, `<` and `>` appear only escaped (&amp; &lt; &gt;) or as Slack's own
  sequences: a link <https://...|label>, a user <@U...>, a channel <#C...>, <!here>.

Each log line: valid, problems (what was wrong), status, and the body as parsed (or null).
"""

import json
import re
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOG_PATH = sys.argv[1]
MAX_TEXT = 40_000
MAX_BLOCKS = 50
MAX_SECTION_TEXT = 3000
# Slack's control sequences: links (with or without a label), users, channels, special mentions.
CONTROL_SEQUENCE = re.compile(
    r"<(?:(?:https?|mailto):[^|<>\s]+(?:\|[^<>]+)?|@[UW][A-Z0-9]+|#C[A-Z0-9]+|![a-z]+)>"
)
ENTITY = re.compile(r"&(?:amp|lt|gt);")
_lock = threading.Lock()
_log = open(LOG_PATH, "a", buffering=1)  # noqa: SIM115 - open for the life of the process


def mrkdwn_problems(text: str, where: str) -> list[str]:
    """`&`, `<` or `>` outside an entity or a control sequence: Slack would read them as markup."""
    bare = ENTITY.sub("", CONTROL_SEQUENCE.sub("", text))
    return [f"{where}: unescaped {char!r}" for char in "&<>" if char in bare]


def text_object_problems(value, where: str) -> list[str]:
    if not isinstance(value, dict) or value.get("type") not in ("mrkdwn", "plain_text"):
        return [f"{where}: not a text object of type mrkdwn or plain_text"]
    text = value.get("text")
    if not isinstance(text, str) or not 1 <= len(text) <= MAX_SECTION_TEXT:
        return [f"{where}.text: a string of 1-{MAX_SECTION_TEXT} characters"]
    return mrkdwn_problems(text, f"{where}.text") if value["type"] == "mrkdwn" else []


def payload_problems(body) -> tuple[list[str], str]:
    """What is wrong with `body`, and the error Slack would answer ("" when nothing is)."""
    if not isinstance(body, dict):
        return ["the body is not a JSON object"], "invalid_payload"
    text = body.get("text")
    if not isinstance(text, str) or not text.strip():
        return ["no text"], "no_text"
    problems = []
    if len(text) > MAX_TEXT:
        problems.append(f"text: over {MAX_TEXT} characters")
    problems += mrkdwn_problems(text, "text")
    blocks = body.get("blocks")
    if blocks is not None:
        if not isinstance(blocks, list) or not 1 <= len(blocks) <= MAX_BLOCKS:
            problems.append(f"blocks: a list of 1-{MAX_BLOCKS} blocks")
        else:
            for index, block in enumerate(blocks):
                if not isinstance(block, dict) or not isinstance(block.get("type"), str):
                    problems.append(f"blocks[{index}]: no type")
                elif block["type"] == "section":
                    problems += text_object_problems(block.get("text"), f"blocks[{index}].text")
    return problems, ("invalid_payload" if problems else "")


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        body, problems, error = None, [], ""
        if self.headers.get("Content-Type", "").split(";")[0].strip() != "application/json":
            problems, error = ["Content-Type is not application/json"], "invalid_payload"
        else:
            try:
                body = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                problems, error = ["the body is not UTF-8 JSON"], "invalid_payload"
            else:
                problems, error = payload_problems(body)
        status, answer = (400, error) if error else (200, "ok")
        with _lock:
            entry = {
                "path": self.path,
                "valid": not error,
                "problems": problems,
                "status": status,
                "body": body,
            }
            _log.write(json.dumps(entry) + "\n")
        payload = answer.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):  # the log file says what happened; stderr stays quiet
        pass


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(f"listening on {server.server_address[1]}", flush=True)
    server.serve_forever()

"""The audit events are one list (``AUDIT_EVENTS``): the code records exactly those names, and
docs/audit.md describes exactly these, marking exactly the notified ones."""

import ast
import re
from pathlib import Path

from bridge.store import AUDIT_EVENTS, NOTIFIED_EVENTS

REPO = Path(__file__).resolve().parents[2]


def _documented() -> dict[str, bool]:
    """docs/audit.md's table rows: each event name and whether it is marked told."""
    rows = {}
    for line in (REPO / "docs" / "audit.md").read_text().splitlines():
        if match := re.match(r"\| `([a-z_]+)` \|", line):
            rows[match[1]] = line.rstrip().endswith("| told |")
    return rows


def _strings(node: ast.AST) -> set[str]:
    return {n.value for n in ast.walk(node) if isinstance(n, ast.Constant)
            and isinstance(n.value, str)}


def _recorded() -> tuple[set[str], list[str]]:
    """The names the code passes to ``Tx.audit`` (``tx.audit("name", …)``, and the event of
    ``attempts.fail(…)``, which forwards it), and where an ``audit`` call names none."""
    names, unnamed = set(), []
    for path in (REPO / "bridge").rglob("*.py"):
        for call in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)):
                continue
            if call.func.attr == "audit" and call.args:
                if isinstance(call.args[0], ast.Constant):
                    names.add(call.args[0].value)
                else:
                    unnamed.append(f"{path.relative_to(REPO)}:{call.lineno}")
            elif call.func.attr == "fail" and ast.unparse(call.func.value) == "self.attempts":
                event = call.args[5] if len(call.args) > 5 else next(
                    k.value for k in call.keywords if k.arg == "event")
                names |= _strings(event)
    return names, unnamed


def test_the_page_describes_every_event_and_marks_the_notified_ones():
    documented = _documented()
    assert set(documented) == AUDIT_EVENTS
    assert {name for name, told in documented.items() if told} == NOTIFIED_EVENTS


def test_the_code_records_exactly_the_listed_events():
    """A misspelt or new name fails here; so does a listed name nothing records any more.
    The one call that names no event is the one that forwards ``fail``'s."""
    names, unnamed = _recorded()
    assert names == AUDIT_EVENTS
    assert [where.split(":")[0] for where in unnamed] == ["bridge/challenge/attempts.py"]

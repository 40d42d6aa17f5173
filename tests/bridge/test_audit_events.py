"""The audit events are one list (``AUDIT_EVENTS``): the store records no other name, every
name is one the bridge records, and docs/audit.md describes exactly these, marking exactly
the notified ones."""

import re
from pathlib import Path

import pytest

from bridge.store import AUDIT_EVENTS, NOTIFIED_EVENTS

REPO = Path(__file__).resolve().parents[2]


def _documented() -> dict[str, bool]:
    """docs/audit.md's table rows: each event name and whether it is marked told."""
    rows = {}
    for line in (REPO / "docs" / "audit.md").read_text().splitlines():
        if match := re.match(r"\| `([a-z_]+)` \|", line):
            rows[match[1]] = line.rstrip().endswith("| told |")
    return rows


def test_the_page_describes_every_event_and_marks_the_notified_ones():
    documented = _documented()
    assert set(documented) == AUDIT_EVENTS
    assert {name for name, told in documented.items() if told} == NOTIFIED_EVENTS


def test_every_listed_event_is_one_the_bridge_records():
    """No name is listed that no code writes (a renamed event would leave its old name)."""
    sources = "\n".join(path.read_text() for path in (REPO / "bridge").rglob("*.py")
                        if path.name != "records.py")
    assert {name for name in AUDIT_EVENTS if f'"{name}"' not in sources} == set()


def test_the_store_records_no_other_name(app):
    store = app.extensions["stepup"].store
    with pytest.raises(ValueError, match="not an audit event: 'lock_out'"), store.begin() as tx:
        tx.audit("lock_out", 0.0, subject="ann")
    with store.begin() as tx:
        assert tx.audit_events(subject="ann", event=None, before=None, since=None,
                               limit=5) == []

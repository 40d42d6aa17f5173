"""Recovery-code rotation that loses nothing (DESIGN.md "Rotation loses nothing"): using the
code only stages a replacement; the swap happens when the user confirms they saved it."""

from __future__ import annotations

import pytest

from bridge.factors import RECOVERY_CODE, recovery
from tests.bridge.conftest import (
    alert,
    events,
    flow_of,
    is_callback,
    shown,
    user,
    way_back,
)


def test_recovery_code_only_stages_and_a_closed_tab_leaves_the_old_code_valid(act, clock):
    first, _ = act.enroll("hana")
    before = user(act, "hana")
    abandoned = act.start("hana")
    assert act.post(abandoned, "recovery", recovery_code=first.recovery_code).status_code == 303
    staged = shown(abandoned.last_page, "recovery-code")
    after = user(act, "hana")
    assert (after.recovery_digest, after.recovery_version) == (
        before.recovery_digest, before.recovery_version)
    # The tab is closed here. Straight away, a new hand-off:
    login = act.start("hana")
    assert act.post(login, "recovery", recovery_code=staged).status_code == 400
    assert act.post(login, "recovery", recovery_code=first.recovery_code).status_code == 303
    replacement = shown(login.last_page, "recovery-code")
    assert replacement != staged
    response = act.post(login, "saved", saved="yes")
    assert act.finish(login, response.headers["Location"])["amr"] == [RECOVERY_CODE]

    # The abandoned flow's code never works, and the abandoned flow cannot finish.
    probe = act.start("hana")
    assert act.post(probe, "recovery", recovery_code=staged).status_code == 400
    late = act.post(abandoned, "saved", saved="yes")
    assert not is_callback(late)
    assert "replaced in another sign-in" in abandoned.last_page
    assert "will never work" in abandoned.last_page  # the code that tab showed: not kept
    back = way_back(abandoned.last_page)  # not a dead end: back to the IdP's sign-in
    assert (back["error"], back["state"]) == ("access_denied", abandoned.state)
    assert user(act, "hana").recovery_digest == recovery.keyed_digest(act.bridge.secrets.pepper,
                                                                replacement)
    assert act.post(probe, "recovery", recovery_code=replacement).status_code == 303


def lost_rotation(act, subject: str):
    """Two tabs used one recovery code and the first saved its replacement: the second tab's
    sign-in, and the code it showed, which will never work."""
    first, _ = act.enroll(subject)
    won, lost = act.start(subject), act.start(subject)
    for login in (won, lost):
        assert act.post(login, "recovery", recovery_code=first.recovery_code).status_code == 303
    dead = shown(lost.last_page, "recovery-code")
    assert is_callback(act.post(won, "saved", saved="yes"))
    return lost, dead


@pytest.mark.parametrize("path", ["", "/recovery-code.txt"], ids=["page", "download"])
def test_a_tab_whose_rotation_another_sign_in_won_no_longer_offers_its_code(act, path):
    """A reload or a download of the losing tab says its code will never work and hands it out
    no more (found by review: both still offered it, and a user who kept it would have
    replaced the working code with a dead one)."""
    lost, dead = lost_rotation(act, "lea")
    answer = act.client.get(lost.flow_url + path)
    text = answer.get_data(as_text=True)
    assert answer.status_code == 404, answer.status_code
    assert "replaced in another sign-in" in text and "will never work" in text
    assert dead not in text and 'id="recovery-code"' not in text
    assert flow_of(act, lost) is None
    assert events(act, "lea").count("rotation_lost") == 1
    assert act.client.get(lost.flow_url + "/recovery-code.txt").status_code == 404


def test_a_tab_whose_rotation_was_lost_does_not_show_its_code_with_a_refusal(act):
    """The losing tab posts "Continue" without ticking the box: not its dead code again with
    "tick the box", but that it will never work (found by review)."""
    lost, dead = lost_rotation(act, "lou")
    refused = act.post(lost, "saved")
    assert refused.status_code == 404
    assert "replaced in another sign-in" in lost.last_page and dead not in lost.last_page


def test_an_expired_flow_leaves_the_old_code_valid(act, clock):
    first, _ = act.enroll("ian")
    abandoned = act.start("ian")
    act.post(abandoned, "recovery", recovery_code=first.recovery_code)
    clock.advance(act.bridge.settings.flow_ttl + 1)
    assert act.client.get(abandoned.flow_url).status_code == 404
    assert act.post(abandoned, "saved", saved="yes").status_code == 404
    login = act.start("ian")
    assert act.post(login, "recovery", recovery_code=first.recovery_code).status_code == 303


@pytest.mark.parametrize("form", [{}, {"saved": ""}, {"saved": "no"}, {"saved": "on"},
                                  {"next": "reenroll"}])
def test_confirming_without_the_saved_box_changes_nothing(act, form):
    first, _ = act.enroll("jo")
    before = user(act, "jo")
    login = act.start("jo")
    act.post(login, "recovery", recovery_code=first.recovery_code)
    staged = shown(login.last_page, "recovery-code")

    response = act.post(login, "saved", **form)
    assert response.status_code == 400
    assert "saved" in alert(login.last_page)
    assert shown(login.last_page, "recovery-code") == staged
    assert flow_of(act, login).stage == "rotate"
    assert user(act, "jo") == before
    assert "rotation" not in events(act, "jo")

    done = act.post(login, "saved", saved="yes")
    assert is_callback(done)


def test_after_confirmation_the_old_code_fails_and_the_new_one_works(act):
    first, _ = act.enroll("kim")
    login = act.start("kim")
    act.post(login, "recovery", recovery_code=first.recovery_code)
    new_code = shown(login.last_page, "recovery-code")
    assert is_callback(act.post(login, "saved", saved="yes"))
    assert user(act, "kim").recovery_version == 2

    old = act.start("kim")
    assert act.post(old, "recovery", recovery_code=first.recovery_code).status_code == 400
    # Nothing says this code was right once (a guesser learns nothing), but the user holding
    # an old printout is told to look for the newer one.
    assert "if you saved a newer one since, use that one" in alert(old.last_page)
    new = act.start("kim")
    assert act.post(new, "recovery", recovery_code=new_code.lower()).status_code == 303
    assert [e for e in events(act, "kim") if e in ("recovery_code_used", "rotation")] == [
        "recovery_code_used", "rotation", "recovery_code_used"]

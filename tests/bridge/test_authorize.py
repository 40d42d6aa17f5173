"""``/authorize`` (RFC 9126 §4): a browser starts a sign-in only with a pushed request's
``request_uri`` — once, in time, for the client that pushed it; the address bar adds nothing."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from bridge.oidc.clients import new_client
from bridge.store.schema import flows, pushed_requests
from tests.bridge.conftest import CALLBACK, IDP_ID, flow_url, shown

OTHER_ID, OTHER_SECRET = "other-idp", "other-secret-0123456789"


def pushed_uri(act, subject="alice", **params) -> str:
    response, _ = act.push(subject, **params)
    assert response.status_code == 201, response.get_json()
    return response.get_json()["request_uri"]


def assert_refused_page(response) -> None:
    """A 400 HTML page for the user — never a redirect to anyone."""
    assert response.status_code == 400
    assert response.mimetype == "text/html"
    assert "Location" not in response.headers
    assert "Go back to your sign-in page" in response.get_data(as_text=True)


def flow_subjects(bridge) -> list[str]:
    with bridge.store.engine.connect() as conn:
        return list(conn.execute(sa.select(flows.c.subject)).scalars())


@pytest.fixture
def other_client(bridge):
    with bridge.store.begin() as tx:
        tx.add_client(new_client(bridge.secrets.pepper, OTHER_ID, secret=OTHER_SECRET,
                                 jwks_uri=None, redirect_uris=[CALLBACK],
                                 redirect_uri_prefixes=[]))


class TestRefused:
    @pytest.mark.parametrize("query", [
        "",
        f"?client_id={IDP_ID}",
        f"?client_id={IDP_ID}&login_hint=alice&redirect_uri={CALLBACK}&response_type=code"
        "&scope=openid&nonce=n&code_challenge=" + "a" * 43 + "&code_challenge_method=S256",
    ], ids=["nothing", "client-only", "classic-request"])
    def test_without_request_uri(self, client, bridge, query):
        assert_refused_page(client.get("/authorize" + query))
        assert flow_subjects(bridge) == []

    def test_without_client_id(self, act, client, bridge):
        uri = pushed_uri(act)
        assert_refused_page(client.get(f"/authorize?request_uri={uri}"))
        assert flow_subjects(bridge) == []

    def test_unknown_request_uri(self, client, bridge):
        response = client.get(f"/authorize?client_id={IDP_ID}"
                              "&request_uri=urn:ietf:params:oauth:request_uri:nope")
        assert_refused_page(response)
        assert flow_subjects(bridge) == []

    def test_single_use_across_browsers(self, act, app, bridge):
        uri = pushed_uri(act)
        assert app.test_client().get(
            f"/authorize?client_id={IDP_ID}&request_uri={uri}").status_code == 200
        assert_refused_page(app.test_client().get(
            f"/authorize?client_id={IDP_ID}&request_uri={uri}"))
        assert len(flow_subjects(bridge)) == 1

    def test_a_head_request_spends_nothing(self, act, app, bridge):
        """A link checker or previewer that asks HEAD (RFC 9110 §9.3.2: safe) must not spend
        the user's sign-in: nothing is opened, and the browser's GET still gets its page."""
        uri = pushed_uri(act)
        url = f"/authorize?client_id={IDP_ID}&request_uri={uri}"
        head = app.test_client().head(url)
        assert head.status_code == 200 and head.data == b""
        assert "no-store" in head.headers["Cache-Control"]
        assert flow_subjects(bridge) == []
        assert 'name="otp"' in app.test_client().get(url).get_data(as_text=True)
        assert len(flow_subjects(bridge)) == 1

    def test_expired(self, act, client, clock, bridge):
        uri = pushed_uri(act)
        clock.advance(61)
        assert_refused_page(client.get(f"/authorize?client_id={IDP_ID}&request_uri={uri}"))
        assert flow_subjects(bridge) == []

    def test_still_valid_just_before_expiry(self, act, client, clock):
        uri = pushed_uri(act)
        clock.advance(59)
        assert client.get(f"/authorize?client_id={IDP_ID}&request_uri={uri}").status_code == 200

    @pytest.mark.parametrize("kept", ["registered_at", "no registered_at"])
    def test_other_clients_request_uri(self, act, client, bridge, other_client, kept):
        uri = pushed_uri(act)  # pushed by IDP_ID
        if kept == "no registered_at":
            # As the previous release pushed it: the store's own client check must refuse it,
            # not only the check of the registration's time in Challenge.begin.
            with bridge.store.engine.begin() as conn:
                params = conn.execute(sa.select(pushed_requests.c.params)).scalar_one()
                params.pop("registered_at")
                conn.execute(sa.update(pushed_requests).values(params=params))
        response = client.get(f"/authorize?client_id={OTHER_ID}&request_uri={uri}")
        assert_refused_page(response)
        assert flow_subjects(bridge) == []

    def test_a_request_pushed_under_a_registration_replaced_meanwhile(self, act, client, bridge,
                                                                       monkeypatch):
        """`client add --replace` between /par's client check and its save (found by review):
        the request was pushed under the old registration, which is gone; it opens no sign-in
        that would end at a redirect URI the new one no longer has."""
        from bridge.oidc import par

        validate = par.validate

        def replaced_meanwhile(*args, **kwargs):
            params = validate(*args, **kwargs)
            with bridge.store.begin() as tx:
                tx.remove_client(IDP_ID)
                tx.add_client(new_client(bridge.secrets.pepper, IDP_ID, secret="s" * 40,
                                         jwks_uri=None,
                                         redirect_uris=["https://idp-new.example/callback"],
                                         redirect_uri_prefixes=[]))
            return params

        monkeypatch.setattr(par, "validate", replaced_meanwhile)
        uri = pushed_uri(act)
        assert_refused_page(client.get(f"/authorize?client_id={IDP_ID}&request_uri={uri}"))
        assert flow_subjects(bridge) == []

    def test_unknown_client_id(self, act, client, bridge):
        uri = pushed_uri(act)
        assert_refused_page(client.get(f"/authorize?client_id=nobody&request_uri={uri}"))
        assert flow_subjects(bridge) == []

    @pytest.mark.parametrize("query", ["client_id={client}&client_id={client}&request_uri={uri}",
                                       "client_id={client}&client_id=other-idp&request_uri={uri}",
                                       "client_id={client}&request_uri={uri}&request_uri=bogus"],
                             ids=["client-id-twice", "two-client-ids", "two-request-uris"])
    def test_a_repeated_parameter_spends_nothing(self, act, client, bridge, query):
        """RFC 6749 §3.1: which copy would count is a guess; the link is refused as it is."""
        uri = pushed_uri(act)
        response = client.get("/authorize?" + query.format(client=IDP_ID, uri=uri))
        assert_refused_page(response)
        assert "This sign-in link is not valid" in response.get_data(as_text=True)
        assert flow_subjects(bridge) == []
        assert client.get(f"/authorize?client_id={IDP_ID}&request_uri={uri}").status_code == 200

    def test_overlong_client_id(self, act, client):
        uri = pushed_uri(act)
        assert_refused_page(client.get(f"/authorize?client_id={'x' * 300}&request_uri={uri}"))


class TestPushedRequestIsTheOnlySource:
    def test_extra_query_parameters_are_ignored(self, act, client, bridge):
        uri = pushed_uri(act, "alice")
        response = client.get(
            f"/authorize?client_id={IDP_ID}&request_uri={uri}&login_hint=mallory"
            "&preferred_username=mallory%40evil&redirect_uri=https%3A%2F%2Fevil.example%2Fcb"
            "&state=forged&prompt=none")
        assert response.status_code == 200
        assert flow_subjects(bridge) == ["alice"]
        page = response.get_data(as_text=True)
        assert "mallory" not in page and "evil.example" not in page
        assert shown(page, "totp-secret")  # alice is new: enrollment

    def test_assertion_is_for_the_pushed_subject(self, act, client):
        response, login = act.push("alice")
        uri = response.get_json()["request_uri"]
        page = client.get(f"/authorize?client_id={IDP_ID}&request_uri={uri}&login_hint=mallory")
        login.last_page = page.get_data(as_text=True)
        login.flow_url = flow_url(login.last_page)
        login.secret = shown(login.last_page, "totp-secret")
        assert act.post(login, "enroll", otp=act.code_now(login)).status_code == 303
        location = act.post(login, "saved", saved="yes").headers["Location"]
        assert location.startswith(CALLBACK + "?")
        assert act.finish(login, location)["sub"] == "alice"

    def test_flow_is_bound_to_the_browser(self, act, app):
        login = act.start("alice")
        stranger = app.test_client()
        assert stranger.get(login.flow_url).status_code == 404


class TestTheAnswerIsTheFirstPage:
    """No redirect to the flow's page: one round trip less at the login screen. The spent
    request_uri stays in the address bar, so reloading it must show the same sign-in."""

    def open(self, client, uri: str, client_id: str = IDP_ID):
        return client.get(f"/authorize?client_id={client_id}&request_uri={uri}")

    def test_the_first_page_is_the_answer(self, act, client):
        response = self.open(client, pushed_uri(act, "alice"))
        assert response.status_code == 200 and "Location" not in response.headers
        assert response.headers["Cache-Control"] == "no-store"
        page = response.get_data(as_text=True)
        assert shown(page, "totp-secret") and flow_url(page).startswith("/flow/")

    def test_a_reload_shows_the_same_sign_in_at_its_current_stage(self, act, client, bridge):
        response, login = act.push("alice")
        uri = response.get_json()["request_uri"]
        act.opened(login, self.open(client, uri))
        login.secret = shown(login.last_page, "totp-secret")
        assert act.post(login, "enroll", otp=act.code_now(login)).status_code == 303
        again = self.open(client, uri)
        assert again.status_code == 200
        page = again.get_data(as_text=True)
        assert flow_url(page) == login.flow_url  # the same flow, not a second one
        assert shown(page, "recovery-code") == shown(login.last_page, "recovery-code")
        assert flow_subjects(bridge) == ["alice"]

    def test_a_reload_after_the_sign_in_ended_is_a_clear_page(self, act, client, bridge):
        response, login = act.push("alice")
        uri = response.get_json()["request_uri"]
        act.opened(login, self.open(client, uri))
        assert act.post(login, "cancel").status_code == 303
        again = self.open(client, uri)
        assert again.status_code == 404 and again.mimetype == "text/html"
        assert "already complete" in again.get_data(as_text=True)
        assert flow_subjects(bridge) == []

    def test_back_onto_an_ended_sign_in_says_it_ended(self, act, client):
        """The browser's Back button onto a page of this browser's own sign-in, once it has
        ended: why it cannot go on, not "Page not found"."""
        response, login = act.push("alice")
        act.opened(login, self.open(client, response.get_json()["request_uri"]))
        assert act.post(login, "cancel").status_code == 303
        back = client.get(login.flow_url)
        assert back.status_code == 404 and back.mimetype == "text/html"
        page = back.get_data(as_text=True)
        assert "This sign-in cannot continue" in page and "already complete" in page

    def test_a_reload_after_the_sign_in_expired_starts_nothing(self, act, client, clock,
                                                              bridge):
        uri = pushed_uri(act, "alice")
        assert self.open(client, uri).status_code == 200
        clock.advance(bridge.settings.flow_ttl + 1)
        again = self.open(client, uri)
        assert again.status_code == 404 and "has expired" in again.get_data(as_text=True)
        assert flow_subjects(bridge) == ["alice"]  # the expired flow, and no second one

    def test_a_sign_in_opened_by_the_previous_release_goes_on(self, act, client):
        """Its session lists the flow in ``flows`` only (a rolling upgrade)."""
        login = act.start("alice")
        with client.session_transaction() as session:
            del session["opened"]
        login.secret = shown(login.last_page, "totp-secret")
        assert act.post(login, "enroll", otp=act.code_now(login)).status_code == 303

    def test_the_same_link_for_another_client_is_not_a_reload(self, act, client, bridge,
                                                            other_client):
        uri = pushed_uri(act, "alice")
        assert self.open(client, uri).status_code == 200
        assert_refused_page(self.open(client, uri, client_id=OTHER_ID))
        assert flow_subjects(bridge) == ["alice"]

    def test_a_reload_in_another_browser_is_refused(self, act, app, client, bridge):
        uri = pushed_uri(act, "alice")
        assert self.open(client, uri).status_code == 200
        assert_refused_page(self.open(app.test_client(), uri))
        assert flow_subjects(bridge) == ["alice"]


class TestPosted:
    """OpenID Connect Core §3.1.2.1: the authorization endpoint takes POST too. The IdP's page
    posts the two parameters cross-site, with no form token of ours; the answer sends them on
    to the GET, so the sign-in opens (and reopens on a reload) as a link's does."""

    def test_a_posted_link_goes_on_to_the_get(self, act, client, bridge):
        uri = pushed_uri(act, "alice")
        posted = client.post("/authorize", data={"client_id": IDP_ID, "request_uri": uri})
        assert posted.status_code == 303
        assert flow_subjects(bridge) == []  # the POST itself spends nothing
        page = client.get(posted.headers["Location"])
        assert page.status_code == 200 and shown(page.get_data(as_text=True), "totp-secret")
        assert flow_subjects(bridge) == ["alice"]
        assert client.get(posted.headers["Location"]).status_code == 200  # a reload: the same
        assert len(flow_subjects(bridge)) == 1

    @pytest.mark.parametrize("data", [
        {"client_id": IDP_ID},
        {"client_id": [IDP_ID, IDP_ID], "request_uri": "{uri}"},
    ], ids=["no-request-uri", "client-id-twice"])
    def test_a_bad_posted_link_is_refused_as_a_bad_link_is(self, act, client, bridge, data):
        uri = pushed_uri(act)
        data = {name: value.format(uri=uri) if isinstance(value, str) else value
                for name, value in data.items()}
        assert_refused_page(client.post("/authorize", data=data))
        assert flow_subjects(bridge) == []

    def test_query_parameters_do_not_count(self, act, client):
        uri = pushed_uri(act)
        assert_refused_page(client.post(f"/authorize?client_id={IDP_ID}&request_uri={uri}"))


@pytest.mark.parametrize(("method", "path", "allow"), [
    ("PUT", "/authorize", "GET, HEAD, OPTIONS, POST"),
    ("DELETE", "/flow/abc/totp", "GET, HEAD, OPTIONS, POST"),
    ("POST", "/", "GET, HEAD, OPTIONS"),
])
def test_a_wrong_method_on_a_page_names_the_right_ones(client, method, path, allow):
    """RFC 9110 §15.5.6: a 405 carries Allow, on the browser's pages as on the back channel."""
    response = client.open(path, method=method)
    assert response.status_code == 405 and response.mimetype == "text/html"
    assert response.headers["Allow"] == allow

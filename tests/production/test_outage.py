"""The database goes away mid-flow: a clear "try again", never a 500, nothing half-written;
the bridge recovers by itself when PostgreSQL is back (a real server stopped and started)."""

from __future__ import annotations

import socket
import threading
import time
from contextlib import ExitStack

import pytest
import sqlalchemy as sa

from bridge import create_app
from bridge.store import create_engine, migrate
from tests.bridge.conftest import IDP_ID, IDP_SECRET, Actions, register_idp
from tests.conftest import fresh_database, start_postgres, stop_postgres
from tests.e2e.browser import free_port

from .conftest import shared_env

pytestmark = pytest.mark.e2e


@pytest.fixture
def own_postgres():
    """A private PostgreSQL cluster that this test may stop and start."""
    port = free_port()
    url = start_postgres(port)

    yield url, lambda: stop_postgres(port), lambda: start_postgres(port)
    stop_postgres(port, remove=True)


def _bridge_on(url: str, folder, clock, **config):
    """A bridge on a fresh PostgreSQL database, migrated, with the test IdP."""
    engine = create_engine(url)
    migrate.upgrade(engine)
    engine.dispose()
    shared = {k.removeprefix("STEPUP_").lower(): v for k, v in shared_env(url).items()}
    app = create_app({"data_dir": folder, "issuer": "https://bridge.example", **shared,
                      **config}, environ={}, clock=clock)
    register_idp(app)
    return app


def _signing_in(url: str, folder, clock, subject: str, **config):
    """Actions on a bridge as :func:`_bridge_on`, ``subject`` enrolled, and a sign-in of
    theirs at its TOTP page, the next time step due."""
    app = _bridge_on(url, folder, clock, **config)
    act = Actions(app.test_client(), app.extensions["stepup"], clock)
    enrolled, _ = act.enroll(subject)
    clock.advance(30)
    login = act.start(subject)
    login.secret = enrolled.secret
    return act, login


def test_database_outage_mid_flow(clock, own_postgres, tmp_path):
    url, stop, start = own_postgres
    act, login = _signing_in(url, tmp_path, clock, "outage-user")

    stop()
    page = act.post(login, "totp", otp=act.code_now(login))
    assert page.status_code == 503
    assert "try again" in page.get_data(as_text=True)
    assert page.headers["Retry-After"]
    par, _ = act.push("outage-user")
    assert par.status_code == 503
    assert par.get_json()["error"] == "temporarily_unavailable"
    token = act.client.post("/token", data={"grant_type": "authorization_code", "code": "x"},
                            auth=(IDP_ID, IDP_SECRET))
    assert token.status_code == 503
    assert act.client.get("/readyz").status_code == 503

    start()
    login.last_page = ""  # back to the flow's own page (and its CSRF token)
    # Nothing was half-written: the same flow and the same code now go through.
    done = act.post(login, "totp", otp=act.code_now(login))
    assert done.status_code == 303, done.get_data(as_text=True)
    assert act.finish(login, done.headers["Location"])["sub"] == "outage-user"
    assert act.client.get("/readyz").status_code == 200


def test_a_broken_connection_is_answered_then_replaced(clock, postgres_server, tmp_path):
    """A pooled connection whose server process died: the statement on it fails as
    SQLAlchemy's OperationalError (the "try again" page), the pool discards it, and the next
    statement gets a new connection."""
    postgres_url = fresh_database(postgres_server, "stepup_broken_connection")
    store = _bridge_on(postgres_url, tmp_path, clock).extensions["stepup"].store
    with store.autocommit() as tx:
        pid = tx._db.execute(sa.select(sa.func.pg_backend_pid())).scalar()
    _terminate(postgres_url, pid)
    with pytest.raises(sa.exc.OperationalError), store.autocommit() as tx:
        tx.find_user("anyone")  # the pool handed out the dead connection (not idle for long)
    with store.autocommit() as tx:
        assert tx._db.execute(sa.select(sa.func.pg_backend_pid())).scalar() != pid
        assert tx.find_user("anyone") is None
    with store.begin() as tx:
        assert tx.find_client(IDP_ID) is not None
        pid = tx._db.execute(sa.select(sa.func.pg_backend_pid())).scalar()
    _terminate(postgres_url, pid)
    with pytest.raises(sa.exc.OperationalError), store.begin() as tx:  # inside a transaction
        tx.find_user("anyone")
    with store.begin() as tx:
        assert tx.find_user("anyone") is None
    # Every connection pooled before a loss is replaced, not only the one that met it.
    before = _backends(store, 2)
    _terminate(postgres_url, before[0])
    with pytest.raises(sa.exc.OperationalError), store.autocommit() as tx:
        tx.find_user("anyone")
    assert not set(_backends(store, 2)) & set(before)
    store.engine.dispose()


def _backends(store, count: int) -> list[int]:
    """The server processes of ``count`` pooled connections, held at once, in the order the
    pool hands them out next (first in, first out: the block left first returns first)."""
    with ExitStack() as stack:
        blocks = [stack.enter_context(store.autocommit()) for _ in range(count)]
        pids = [tx._db.execute(sa.select(sa.func.pg_backend_pid())).scalar() for tx in blocks]
    return pids[::-1]


def _terminate(url: str, pid: int) -> None:
    """End one server process, as a fail-over or an idle timeout in a proxy would."""
    admin = sa.create_engine(url)
    with admin.connect() as conn:
        assert conn.execute(sa.select(sa.func.pg_terminate_backend(pid))).scalar() is True
    admin.dispose()


def test_a_server_that_never_answers_is_an_outage_not_a_hang():
    """A PostgreSQL address that accepts connections and then says nothing (a frozen server
    behind a listening socket): connecting gives up (libpq's connect_timeout, PG_TIMEOUTS)
    and is SQLAlchemy's OperationalError, the outage page, instead of a request that waits
    until gunicorn kills its worker."""
    silent = socket.create_server(("127.0.0.1", 0))  # listens, never accepts or answers
    port = silent.getsockname()[1]
    engine = create_engine(f"postgresql+psycopg://stepup@127.0.0.1:{port}/stepup")
    outcome: list[BaseException] = []

    def connect() -> None:
        try:
            engine.connect().close()
        except BaseException as e:  # what it raised is the result
            outcome.append(e)

    worker = threading.Thread(target=connect, daemon=True)
    worker.start()
    worker.join(60)  # not a speed check: without a timeout this never ends
    silent.close()
    assert not worker.is_alive(), "connecting to a silent server never gave up"
    assert len(outcome) == 1 and isinstance(outcome[0], sa.exc.OperationalError), outcome
    assert "timeout" in str(outcome[0]).lower()


def test_a_row_held_elsewhere_is_an_outage_not_a_hang(clock, postgres_server, tmp_path):
    """A user's row locked by another session (a DBA's psql, a stuck transaction): the code
    check waits half of STEPUP_TIMEOUT for it, then answers the 503 that says try again,
    where it waited until gunicorn killed the worker (a 502)."""
    url = fresh_database(postgres_server, "stepup_row_held")
    wait = 4
    act, login = _signing_in(url, tmp_path, clock, "held-user", timeout=2 * wait)
    holder = sa.create_engine(url).connect()
    holder.exec_driver_sql("SELECT 1 FROM users WHERE subject = 'held-user' FOR UPDATE")
    ends = threading.Timer(wait + 20, holder.rollback)  # were the wait unbounded
    ends.start()
    started = time.monotonic()
    page = act.post(login, "totp", otp=act.code_now(login))
    waited = time.monotonic() - started
    ends.cancel()
    holder.rollback()
    holder.close()
    assert page.status_code == 503 and "try again" in page.get_data(as_text=True)
    assert wait - 1 < waited < wait + 5
    login.last_page = ""
    assert act.post(login, "totp", otp=act.code_now(login)).status_code == 303
    act.bridge.store.engine.dispose()


def test_the_urls_options_win_over_the_waits(postgres_server):
    """Values in the URL's ``options`` (or PGOPTIONS) are the operator's: they win, and the
    others they set are kept."""
    url = fresh_database(postgres_server, "stepup_url_options")
    settings = "SELECT current_setting('lock_timeout'), current_setting('statement_timeout')"
    engine = create_engine(url, lock_wait=15)
    with engine.connect() as conn:
        assert tuple(conn.exec_driver_sql(settings).one()) == ("15s", "15s")
    engine.dispose()
    own = "?options=-c%20lock_timeout%3D1500%20-c%20application_name%3Dmine"
    engine = create_engine(url + own, lock_wait=15)
    with engine.connect() as conn:
        assert tuple(conn.exec_driver_sql(settings).one()) == ("1500ms", "15s")
        assert conn.exec_driver_sql("SHOW application_name").scalar() == "mine"
    engine.dispose()

"""Schema migrations on both engines: from empty, from the previous revision, and refusals."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import threading
import time

import pytest
import sqlalchemy as sa

from bridge import create_app
from bridge.store import Store, create_engine, migrate
from bridge.store.migrate import LOCK_TIMEOUT, SchemaError
from tests.bridge.conftest import Actions, is_callback, register_idp, returning, wrong_code
from tests.conftest import _as_admin, fresh_database

from .conftest import shared_env, stepup


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'empty.db'}"
    server = request.getfixturevalue("postgres_server")
    return fresh_database(server, f"stepup_migrate_{os.getpid()}")


def test_head_constant_is_the_newest_migration():
    """``stepup serve`` trusts migrate.HEAD to skip alembic on a current database."""
    assert migrate.head() == migrate.HEAD


def test_serving_process_does_not_load_alembic_on_a_current_database(tmp_path):
    """Start-up on a migrated database recognises it without alembic (memory per worker)."""
    url = f"sqlite:///{tmp_path / 'current.db'}"
    migrate.upgrade(create_engine(url))
    assert _loaded("from bridge.store import create_engine, migrate; "
                   f"engine = create_engine({url!r}); migrate.upgrade(engine); "
                   "migrate.check(engine)") == []


def test_a_served_app_loads_only_what_every_request_needs(app_template, tmp_path):
    """Memory per worker: the app a worker forks from carries neither alembic (the database
    is current) nor requests (only webhooks and private_key_jwt clients need it)."""
    shutil.copytree(app_template, tmp_path, dirs_exist_ok=True)
    assert _loaded("from bridge import create_app; "
                   f"create_app({{'data_dir': {str(tmp_path)!r}}}, environ={{}})") == []


def _loaded(code: str) -> list[str]:
    """Which of alembic and requests a fresh interpreter has imported after ``code``."""
    probe = f"import sys; {code}; print(sorted({{'alembic', 'requests'}} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True).stdout
    return ast.literal_eval(out.strip().splitlines()[-1])


def test_empty_database_upgrades_to_head(empty_database):
    engine = create_engine(empty_database)
    with pytest.raises(SchemaError, match="no schema yet"):
        migrate.check(engine)
    migrate.upgrade(engine)
    assert migrate.current(engine) == migrate.head()
    migrate.check(engine)
    tables = set(sa.inspect(engine).get_table_names())
    assert {"users", "flows", "codes", "pushed_requests", "signing_keys"} <= tables
    engine.dispose()


# SQLite's dialect cannot reflect an expression index (ix_events_due): PostgreSQL's run
# compares it.
@pytest.mark.filterwarnings("ignore:.*expression-based index")
def test_the_migrated_schema_is_the_one_the_code_reads(empty_database):
    """Every column's type, nullability and default as ``schema.py`` declares it (found by
    review: 32-bit ids on PostgreSQL, whose sequences run out)."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from bridge.store import schema

    engine = create_engine(empty_database)
    migrate.upgrade(engine)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True,
                                                         "compare_server_default": True})
        assert compare_metadata(context, schema.metadata) == []
    engine.dispose()


def test_nodes_that_upgrade_a_new_database_at_once_all_succeed(empty_database):
    """Each node's start script runs `stepup db upgrade`: side by side on a new PostgreSQL
    database, all but one failed on the tables the first was creating (pg_type's unique
    index). They take turns, and the later ones find the work done."""
    engines = [create_engine(empty_database) for _ in range(4)]
    start = threading.Barrier(len(engines))
    failed: list[BaseException] = []

    def upgrade(engine) -> None:
        start.wait()
        try:
            migrate.upgrade(engine)
        except BaseException as e:  # what it raised is the result
            failed.append(e)

    threads = [threading.Thread(target=upgrade, args=(e,)) for e in engines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not any(thread.is_alive() for thread in threads), "an upgrade never ended"
    assert failed == []
    assert migrate.current(engines[0]) == migrate.HEAD
    for engine in engines:
        engine.dispose()


def test_a_role_without_privileges_is_told_the_database_refused(postgres_server, tmp_path):
    """PostgreSQL 15 gives a new role no CREATE on schema public: the upgrade is refused, and
    the one line says so (not "not reachable", which would send the operator to the network),
    with nothing written."""
    url = fresh_database(postgres_server, f"stepup_nopriv_{os.getpid()}")
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql("DROP ROLE IF EXISTS stepup_nopriv")
        conn.exec_driver_sql("CREATE ROLE stepup_nopriv LOGIN")
    limited = sa.engine.make_url(url).set(username="stepup_nopriv", password=None)
    done = stepup({"STEPUP_DATABASE_URL": limited.render_as_string(False),
                   "STEPUP_DATA_DIR": str(tmp_path)}, "db", "upgrade", check=False)
    assert done.returncode == 2
    assert done.stderr.startswith("stepup: error: the database refused the upgrade: "
                                  "permission denied for schema public: run it as the "
                                  "database's owner"), done.stderr
    assert sa.inspect(admin).get_table_names() == []
    admin.dispose()
    _as_admin(postgres_server, f"DROP DATABASE IF EXISTS {limited.database} WITH (FORCE)",
              "DROP ROLE IF EXISTS stepup_nopriv")


def test_nodes_run_with_a_role_that_only_reads_and_writes_rows(postgres_server, tmp_path,
                                                              clock):
    """Least privilege (docs/operations.md): the owner migrates (`stepup db upgrade`); the
    nodes' own role has SELECT, INSERT, UPDATE, DELETE on the tables and USAGE on the
    sequences, nothing more, and every step works: first start (signing keys, the pepper's
    fingerprint), enrollment, TOTP, recovery with rotation, the per-IP window, housekeeping.
    It cannot change the schema. The grants are given once, at an older schema: the default
    privileges give the role the tables later upgrades make (found by review: granted only
    on the tables there were, a node was refused after the upgrade that added one)."""
    name = f"stepup_dml_{os.getpid()}"
    url = fresh_database(postgres_server, name)
    engine = create_engine(url)
    migrate.upgrade(engine, "0006")  # before 0007's table
    _as_admin(url, "DROP ROLE IF EXISTS stepup_dml", "CREATE ROLE stepup_dml LOGIN",
              f"GRANT CONNECT ON DATABASE {name} TO stepup_dml",
              "GRANT USAGE ON SCHEMA public TO stepup_dml",
              "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO stepup_dml",
              "GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO stepup_dml",
              "ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE "
              "ON TABLES TO stepup_dml",
              "ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO "
              "stepup_dml")
    runtime = sa.engine.make_url(url).set(username="stepup_dml", password=None)
    # The role cannot upgrade, and says whose URL can (a unit's ExecStartPre with the node's).
    refused = stepup({"STEPUP_DATABASE_URL": runtime.render_as_string(False),
                      "STEPUP_DATA_DIR": str(tmp_path)}, "db", "upgrade", check=False)
    assert refused.returncode == 2 and refused.stderr.startswith(
        "stepup: error: the database refused the upgrade: ")
    assert refused.stderr.endswith("run it as the database's owner, the role that owns it and "
                                   "its tables (docs/operations.md, Running two nodes on "
                                   "PostgreSQL)\n")
    migrate.upgrade(engine)  # as the owner, as `stepup db upgrade` does
    engine.dispose()
    shared = {k.removeprefix("STEPUP_").lower(): v for k, v in shared_env(
        runtime.render_as_string(False), ip_limit="3").items()}
    app = create_app({"data_dir": tmp_path, "issuer": "https://bridge.example", **shared},
                     environ={}, clock=clock)
    register_idp(app)
    act = Actions(app.test_client(), app.extensions["stepup"], clock)
    enrolled, _ = act.enroll("dml-user")
    clock.advance(30)
    login = returning(act, "dml-user", enrolled.secret)
    assert act.post(login, "totp", otp=wrong_code(enrolled.secret, clock())).status_code == 400
    assert is_callback(act.post(login, "totp", otp=act.code_now(login)))
    login = act.start("dml-user")
    assert act.post(login, "recovery", recovery_code=enrolled.recovery_code).status_code == 303
    assert is_callback(act.post(login, "saved", saved="yes"))
    with act.bridge.store.begin() as tx:
        act.bridge.housekeeping(tx, clock() + 10_000)
    with pytest.raises(sa.exc.ProgrammingError, match=r"must be owner"), \
            act.bridge.store.engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE users ADD COLUMN x integer")
    act.bridge.store.engine.dispose()
    _as_admin(postgres_server, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)",
              "DROP ROLE IF EXISTS stepup_dml")


def test_previous_revision_upgrades_keeping_data(empty_database):
    engine = create_engine(empty_database)
    migrate.upgrade(engine, "0001")
    with pytest.raises(SchemaError, match=f"older than {migrate.head()}"):
        migrate.check(engine)
    with engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO users (subject, totp_secret, totp_last_step, recovery_digest, "
            "recovery_version, failures, created_at) VALUES ('kept', 'k.x', 5, 'd', 1, 0, :t)"),
            {"t": time.time()})
    migrate.upgrade(engine)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT totp_last_step FROM users")).scalar_one() == 5
        assert conn.execute(sa.text("SELECT totp_drift FROM users")).scalar_one() == 0
        assert "ix_audit_events_subject" in {
            i["name"] for i in sa.inspect(conn).get_indexes("audit_events")}
    engine.dispose()


def test_ip_failures_from_before_0006_stay_in_the_code_window(empty_database):
    """0006 adds failed client authentications to the per-IP failures (with a ``client_id``);
    the rows already there were failed code attempts, and still count as such."""
    engine = create_engine(empty_database)
    migrate.upgrade(engine, "0005")
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO ip_failures (ip, at) VALUES ('192.0.2.1', :t)"),
                     {"t": time.time()})
    migrate.upgrade(engine)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT ip, client_id FROM ip_failures")).one() == (
            "192.0.2.1", None)
    engine.dispose()


def test_clients_from_before_0008_are_named_by_their_id(empty_database):
    """0008 adds ``clients.client_name``: a client registered before has none, and the
    store reads it as such (the notices then name its sign-ins by the client id)."""
    engine = create_engine(empty_database)
    migrate.upgrade(engine, "0007")
    with engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO clients (client_id, secret_digest, redirect_uris, redirect_uri_prefixes,"
            " id_token_alg, allow_enrollment, created_at) VALUES ('kc', 'd', '[]', "
            "'[\"https://kc.example/cb\"]', 'ES256', true, :t)"), {"t": time.time()})
    migrate.upgrade(engine)
    with Store(engine).begin() as tx:
        found = tx.find_client("kc")
    assert found is not None and found.client_name is None
    assert found.redirect_uri_prefixes == ["https://kc.example/cb"]
    engine.dispose()


def test_serve_refuses_unmigrated_and_newer_schemas(empty_database, tmp_path):
    env = {"STEPUP_DATABASE_URL": empty_database, "STEPUP_DATA_DIR": str(tmp_path)}
    refused = stepup(env, "serve", "--port", "1", check=False)
    assert refused.returncode == 2
    assert refused.stderr.strip() == (
        "stepup: error: the database has no schema yet: run `stepup db upgrade`")
    upgraded = stepup(env, "db", "upgrade")
    assert migrate.head() in upgraded.stdout
    engine = create_engine(empty_database)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()
    newer = stepup(env, "serve", "--port", "1", check=False)
    assert newer.returncode == 2
    assert "is newer than this bridge" in newer.stderr
    assert "Traceback" not in newer.stderr


def test_db_status_reads_the_schema_and_what_an_upgrade_applies(empty_database, tmp_path):
    """`stepup db status` on both engines: nothing made by looking, the pending revisions of an
    older schema (left as it is), nothing to do at the head."""
    env = {"STEPUP_DATABASE_URL": empty_database, "STEPUP_DATA_DIR": str(tmp_path)}
    empty = stepup(env, "db", "status", check=False)
    assert empty.returncode == 1 and "No schema yet" in empty.stdout, empty.stderr
    engine = create_engine(empty_database)
    assert migrate.current(engine) is None
    migrate.upgrade(engine, "0006")
    older = stepup(env, "db", "status", check=False)
    assert older.returncode == 1 and "\n  0007  A fingerprint of the pepper" in older.stdout
    assert "\n  0008  A name for each client" in older.stdout
    assert migrate.current(engine) == "0006"
    engine.dispose()
    stepup(env, "db", "upgrade")
    assert "Nothing to upgrade" in stepup(env, "db", "status").stdout


def test_a_newer_embedded_database_is_refused_in_one_line(empty_database, tmp_path):
    """The embedded SQLite file, and any database ``db upgrade`` is pointed at, migrated by a
    newer bridge (a rollback): one line, nothing changed, never alembic's traceback."""
    engine = create_engine(empty_database)
    migrate.upgrade(engine)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(SchemaError, match=r"newer than this bridge"):
        migrate.upgrade(engine)
    engine.dispose()  # SQLite: the WAL is checkpointed into the file the copy below takes
    env = {"STEPUP_DATABASE_URL": empty_database, "STEPUP_DATA_DIR": str(tmp_path)}
    if empty_database.startswith("sqlite"):  # the embedded default: the data folder's stepup.db
        shutil.copy(empty_database.removeprefix("sqlite:///"), tmp_path / "stepup.db")
        env = {"STEPUP_DATA_DIR": str(tmp_path)}
    for command in (["db", "upgrade"], ["client", "list"], ["serve", "--port", "1"]):
        refused = stepup(env, *command, check=False)
        assert refused.returncode == 2, (command, refused.stderr)
        assert "is newer than this bridge" in refused.stderr and "Traceback" not in refused.stderr
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar() == "9999"
    engine.dispose()


def test_a_downgrade_below_0009_with_ids_past_32_bits_says_why(postgres_server):
    """Refused in one sentence, not PostgreSQL's bare "integer out of range" halfway."""
    from alembic import command

    engine = create_engine(fresh_database(postgres_server, f"stepup_down_{os.getpid()}"))
    migrate.upgrade(engine, "0009")
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO ip_failures (id, ip, at) VALUES (3000000000, "
                             "'192.0.2.1', 0)"))
        config = migrate._config()
        config.attributes["connection"] = conn
        with pytest.raises(RuntimeError, match="ip_failures holds ids past 32 bits"):
            command.downgrade(config, "0008")
    assert migrate.current(engine) == "0009"
    engine.dispose()


def _retype_ids(url: str, sql_type: str) -> None:
    """What 0009 (BIGINT) does, or the ids as nodes on 0008 have them (INTEGER)."""
    _as_admin(url, *(f"ALTER TABLE {table} ALTER COLUMN id TYPE {sql_type}"
                     for table in ("audit_events", "ip_failures")))


def test_nodes_on_0008_keep_signing_in_while_0009_widens_the_ids(postgres_server, tmp_path,
                                                                 clock):
    """0009 is rolling: a node still serving has sign-ins (their audit and per-IP failure rows)
    prepared by psycopg after 5 uses on a pooled connection. Had they asked for the new id
    back (RETURNING id, int4), widening it would fail them ("cached plan must not change
    result type"): a 500 to the user."""
    url = fresh_database(postgres_server, f"stepup_rolling_{os.getpid()}")
    engine = create_engine(url)
    migrate.upgrade(engine)
    engine.dispose()
    _retype_ids(url, "INTEGER")
    shared = {k.removeprefix("STEPUP_").lower(): v
              for k, v in shared_env(url, STEPUP_IP_LIMIT="100").items()}
    app = create_app({"data_dir": tmp_path, "issuer": "https://bridge.example", **shared},
                     environ={}, clock=clock)
    app.config["PROPAGATE_EXCEPTIONS"] = False  # as under gunicorn: a 500 page, not a raise
    register_idp(app)
    act = Actions(app.test_client(), app.extensions["stepup"], clock)
    enrolled, _ = act.enroll("rolling-user")
    for _ in range(6):
        clock.advance(30)
        login = returning(act, "rolling-user", enrolled.secret)
        assert act.post(login, "totp", otp=wrong_code(enrolled.secret, clock())).status_code == 400
        assert is_callback(act.post(login, "totp", otp=act.code_now(login)))
    _retype_ids(url, "BIGINT")
    clock.advance(30)
    login = returning(act, "rolling-user", enrolled.secret)
    assert act.post(login, "totp", otp=wrong_code(enrolled.secret, clock())).status_code == 400
    assert is_callback(act.post(login, "totp", otp=act.code_now(login)))
    act.bridge.store.engine.dispose()


def test_a_statement_prepared_before_a_schema_change_is_an_outage_then_works(postgres_server):
    """A prepared statement whose result a migration changed fails once on the server: the
    503 that says try again (OperationalError), not a 500, and the pool's connections are
    replaced, so the next request runs it afresh."""
    url = fresh_database(postgres_server, f"stepup_stale_plan_{os.getpid()}")
    store = Store(create_engine(url))
    migrate.upgrade(store.engine)
    with store.begin() as tx:
        tx.audit("success", 1.0, subject="alice")

    def trail() -> list[dict]:
        with store.autocommit() as tx:
            return tx.audit_events(subject="alice", event=None, before=None, since=None,
                                   limit=10)

    for _ in range(6):  # prepared by psycopg from the 6th run on, on the one pooled connection
        assert len(trail()) == 1
    _as_admin(url, "ALTER TABLE audit_events ALTER COLUMN id TYPE INTEGER")
    with pytest.raises(sa.exc.OperationalError, match="cached plan"):
        trail()
    assert trail()[0]["subject"] == "alice"
    store.engine.dispose()


def test_a_migration_behind_a_held_table_gives_up_in_one_line(postgres_server, tmp_path):
    """0009's ALTER waits for a table another session reads (pg_dump holds every table for its
    whole run), and every sign-in queues behind the waiting ALTER: it gives up after
    LOCK_TIMEOUT instead, says what to do in one line, and leaves the schema as it was."""
    url = fresh_database(postgres_server, f"stepup_blocked_{os.getpid()}")
    engine = create_engine(url)
    migrate.upgrade(engine, "0008")
    reader = sa.create_engine(url).connect()
    reader.exec_driver_sql("SELECT count(*) FROM audit_events")  # ACCESS SHARE until it ends
    ends = threading.Timer(LOCK_TIMEOUT + 20, reader.rollback)  # were the wait unbounded
    ends.start()
    started = time.monotonic()
    done = stepup(shared_env(url) | {"STEPUP_DATA_DIR": str(tmp_path)}, "db", "upgrade",
                  check=False)
    waited = time.monotonic() - started
    ends.cancel()
    reader.rollback()
    reader.close()
    assert done.returncode != 0, done.stdout
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    assert "another session holds" in done.stderr and "stepup db upgrade" in done.stderr
    assert waited < LOCK_TIMEOUT + 15
    assert migrate.current(engine) == "0008"
    engine.dispose()

"""SQLAlchemy Core statements, run on the driver's own connection.

SQLAlchemy builds every statement, owns the schema, the migrations and the connection pool.
What this module skips is its per-execution machinery (Connection and Transaction objects,
execution context, events, Row objects): on the benchmark's machine that cost 60-110 µs per
statement and ~150 µs per checkout, against ~8 µs for SQLite to run a short statement; 39 %
of a step-up's in-process CPU was spent in the store (docs/operations.md, Sizing). Each
:class:`Statement` is compiled once per dialect to the driver's SQL, with the value
conversions of its columns that SQLAlchemy would apply (JSON, booleans on SQLite), and
:class:`Session` runs it on a pooled DBAPI connection. Driver errors become SQLAlchemy's
exception classes, so callers and the outage handler see what they saw before, and a broken
connection leaves the pool."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.pool import PoolProxiedConnection

Row = dict[str, Any]


class Compiled:
    """One statement as one dialect's driver runs it."""

    def __init__(self, clause: sa.Executable, dialect: Dialect, keys: Sequence[str]):
        self._columns = list(getattr(clause, "exported_columns", ()))
        if isinstance(clause, sa.Insert) and not self._columns:
            # Without PostgreSQL's implicit RETURNING of the new id, which nothing reads: a
            # statement prepared with it fails once a migration widens the id (0009).
            clause = clause.inline()
        self._compiled = compiled = clause.compile(
            dialect=dialect, column_keys=list(keys),
            compile_kwargs={"render_postcompile": True})  # IN (...) lists written out
        self.sql = compiled.string
        self._positions = compiled.positiontup if dialect.positional else None
        self._binds = {name: process for bind, name in compiled.bind_names.items()
                       if (process := bind.type.dialect_impl(dialect).bind_processor(dialect))}
        if any(bind.expanding and compiled.bind_names[bind] in self._binds
               for bind in compiled.bind_names):  # written out as name_1, name_2 …: unconverted
            raise TypeError("IN (...) of values that need a conversion (JSON, booleans)")
        #: SELECT or RETURNING.
        self.returns_rows = bool(self._columns)
        self._dialect = dialect
        self._results: list[tuple[str, Callable | None]] | None = None

    def arguments(self, params: dict[str, Any]) -> tuple | dict:
        values = self._compiled.construct_params(params)
        for name, process in self._binds.items():
            if name in values:
                values[name] = process(values[name])
        return values if self._positions is None else tuple(values[n] for n in self._positions)

    def rows(self, cursor: Any) -> list[Row]:
        if self._results is None:  # conversions depend on the driver's type codes; psycopg
            d = self._dialect      # builds its description afresh each time: read it once
            self._results = [
                (column[0], source.type.dialect_impl(d).result_processor(d, column[1]))
                for column, source in zip(cursor.description, self._columns, strict=True)]
        raw = cursor.fetchall()
        return [{name: process(value) if process else value
                 for (name, process), value in zip(self._results, row, strict=True)}
                for row in raw]


class Statement:
    """A statement built once at import: compiled on first use per dialect and parameter
    names (an INSERT's columns are the names it is given)."""

    __slots__ = ("_compiled", "clause")

    def __init__(self, clause: sa.Executable):
        self.clause = clause
        self._compiled: dict[tuple, Compiled] = {}

    def compiled(self, dialect: Dialect, keys: Sequence[str]) -> Compiled:
        key = (dialect.name, tuple(keys))
        if (found := self._compiled.get(key)) is None:
            found = self._compiled[key] = Compiled(self.clause, dialect, keys)
        return found


class Result:
    __slots__ = ("rowcount", "rows")

    def __init__(self, rows: list[Row], rowcount: int):
        self.rows, self.rowcount = rows, rowcount

    def first(self) -> Row | None:
        return self.rows[0] if self.rows else None

    def scalar(self) -> Any:
        return next(iter(self.rows[0].values())) if self.rows else None


def checkout(engine: Engine) -> PoolProxiedConnection:
    """A connection from the pool (a new one, if the database is reachable)."""
    try:
        return engine.raw_connection()
    except engine.dialect.loaded_dbapi.Error as error:
        raise sa.exc.DBAPIError.instance(
            None, None, error, engine.dialect.loaded_dbapi.Error, hide_parameters=True,
            dialect=engine.dialect) from error


class Session:
    """One pooled DBAPI connection for the length of a transaction (or of a run of
    self-committing statements)."""

    def __init__(self, engine: Engine, connection: PoolProxiedConnection,
                 trace: Callable[[str], None] | None, autocommit: bool = False):
        self.dialect = engine.dialect
        self.autocommit = autocommit
        self._pool = engine.pool
        self._dbapi_error = engine.dialect.loaded_dbapi.Error
        self._connection = connection
        self._trace = trace
        #: The error that found the connection lost; everything after it raises it again.
        self._lost: sa.exc.DBAPIError | None = None

    def execute(self, statement: Statement | sa.Executable, params: dict[str, Any] | None = None,
                many: list[dict[str, Any]] | None = None) -> Result:
        if not isinstance(statement, Statement):
            statement = Statement(statement)  # built for this call: compiled for it alone
        first = many[0] if many else (params or {})
        compiled = statement.compiled(self.dialect, list(first))
        if many:
            result = self._send(compiled.sql, many=[compiled.arguments(p) for p in many])
        else:
            result = self._send(compiled.sql, compiled.arguments(params or {}), compiled)
        if self._trace:
            self._trace("statement")
        return result

    def run(self, sql: str) -> None:
        """A statement with no parameters and no rows (BEGIN, SAVEPOINT …)."""
        self._send(sql)

    def _send(self, sql: str, arguments: tuple | dict | None = None,
              compiled: Compiled | None = None, many: list | None = None) -> Result:
        """One trip to the driver: its errors translated, the cursor closed (unless the
        connection is gone with it)."""
        if self._lost is not None:
            raise self._lost
        cursor = None
        try:
            cursor = self._connection.cursor()
            if many is not None:
                cursor.executemany(sql, many)
            elif arguments is None:
                cursor.execute(sql)
            else:
                cursor.execute(sql, arguments)
            rows = compiled.rows(cursor) if compiled and compiled.returns_rows else []
            return Result(rows, cursor.rowcount)
        except self._dbapi_error as error:
            raise self._translated(error, sql, cursor) from error
        finally:
            if cursor is not None and self._lost is None:
                cursor.close()

    def commit(self) -> None:
        if self._lost is not None:  # what was written went with the connection
            raise self._lost
        try:
            self._connection.commit()
        except self._dbapi_error as error:
            raise self._translated(error, "COMMIT", None) from error

    def rollback(self) -> None:
        if self._lost is not None:
            return  # a statement found it broken: already out of the pool, nothing to undo
        try:
            self._connection.rollback()
        except self._dbapi_error as error:  # the connection broke: the pool discards it
            self._translated(error, "ROLLBACK", None)

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """A statement that may fail (a duplicate key) without ending the transaction."""
        if self.autocommit:  # PostgreSQL refuses it there; SQLite would open a transaction
            raise RuntimeError("a savepoint needs a transaction: use Store.begin()")
        self.run("SAVEPOINT stepup")
        try:
            yield
        except BaseException:
            if self._lost is None:  # else the connection is gone, and the savepoint with it
                self.run("ROLLBACK TO SAVEPOINT stepup")
                self.run("RELEASE SAVEPOINT stepup")
            raise
        self.run("RELEASE SAVEPOINT stepup")

    def _translated(self, error: Exception, sql: str, cursor: Any) -> sa.exc.DBAPIError:
        """SQLAlchemy's class for a driver error (IntegrityError, OperationalError …); its
        message never carries the parameters (codes and secrets are parameters). A lost
        connection means the server went away: as SQLAlchemy's own Connection does, every
        pooled connection opened before now is replaced on its next checkout, not only this
        one, so a restart or fail-over costs one failed request, not one per connection.

        A statement psycopg prepared before a schema change altered its result (a migration
        beside serving nodes) is handled the same way, as an OperationalError (the 503 that
        says try again): every pooled connection may hold such statements, and
        new ones hold none."""
        if _stale_plan(error):
            translated = sa.exc.OperationalError(sql, None, error, hide_parameters=True,
                                                 connection_invalidated=True)
        else:
            translated = sa.exc.DBAPIError.instance(
                sql, None, error, self._dbapi_error, hide_parameters=True,
                connection_invalidated=self.dialect.is_disconnect(
                    error, self._connection.driver_connection, cursor),
                dialect=self.dialect)
        if translated.connection_invalidated:
            self._pool._invalidate(self._connection, error)
            self._lost = translated
        return translated


def _stale_plan(error: Exception) -> bool:
    """PostgreSQL's "cached plan must not change result type" (SQLSTATE 0A000, which other
    refusals share), told by the server function that raises it: the message is translated."""
    return getattr(error, "sqlstate", None) == "0A000" and \
        getattr(error.diag, "source_function", None) == "RevalidateCachedQuery"

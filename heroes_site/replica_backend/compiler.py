"""PostgreSQL's compilers, for replica aliases: reads fail over, writes are refused.

heroes_site.replicas.ReplicaRouter sends no write to a replica; a write that gets
here anyway (`.using("replica_1").create(...)`) is a bug, and fails loudly before
reaching the server (which, as a standby, would refuse it too).
"""

from django.db.backends.postgresql import compiler  # type: ignore[attr-defined]  # no stub

from heroes_site.replicas import ReadFailover, ReadOnly

__all__ = [
    "SQLAggregateCompiler",
    "SQLCompiler",
    "SQLDeleteCompiler",
    "SQLInsertCompiler",
    "SQLUpdateCompiler",
]


class SQLCompiler(ReadFailover, compiler.SQLCompiler):
    pass


class SQLAggregateCompiler(ReadFailover, compiler.SQLAggregateCompiler):
    pass


class SQLInsertCompiler(ReadOnly, compiler.SQLInsertCompiler):
    pass


class SQLUpdateCompiler(ReadOnly, compiler.SQLUpdateCompiler):
    pass


class SQLDeleteCompiler(ReadOnly, compiler.SQLDeleteCompiler):
    pass

"""The database backend of the read replicas (settings.replica_config): PostgreSQL's,
with reads that fail over to another database (heroes_site.replicas.ReadFailover)."""

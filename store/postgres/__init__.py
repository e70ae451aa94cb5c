"""The PostgreSQL engine (``store.protocol.Store`` on asyncpg): ``engine.PgStore``."""

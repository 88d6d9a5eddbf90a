"""What the service knows of its databases, below the models: the SQLite backend whose
writers queue on a lock (sqlite3/), the PostgreSQL backend whose health check needs no
round trip (postgresql/), and the database functions its queries use (functions.py)."""

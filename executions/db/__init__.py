"""What the service knows of its databases: the SQLite backend with queued writers, the
database functions it uses in queries, and the SQL it builds once and reuses."""

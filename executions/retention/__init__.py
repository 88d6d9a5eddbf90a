"""Retention: the purge of old finished executions and expired Idempotency-Keys, and the archive."""

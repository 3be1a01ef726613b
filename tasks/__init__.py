"""Prefect tasks: thin wrappers around the I/O steps (clients) with retry/cache policy."""

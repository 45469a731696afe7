"""Operations: metrics, health checks, logs with request ids, backup and restore."""

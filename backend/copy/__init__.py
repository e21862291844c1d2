"""Moving an install: `commune-server copy` from a SQLite data directory into PostgreSQL."""

"""Storage: SQLAlchemy models and the database handle (SQLite file or PostgreSQL)."""

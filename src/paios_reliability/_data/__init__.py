"""Data integrity: SQLite databases, atomic files, ConfigFile, credentials, signed files."""

"""Database: declarative base, models, sessions and repositories."""

"""The API's relational store: master data, stop-reason assignments and API tokens (SQLAlchemy 2)."""

from api.db.session import current_revision, make_engine, make_sessionmaker, upgrade

__all__ = ["current_revision", "make_engine", "make_sessionmaker", "upgrade"]

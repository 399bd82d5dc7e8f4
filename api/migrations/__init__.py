"""Alembic revisions of the API database (run by ``api.db.session.upgrade``)."""

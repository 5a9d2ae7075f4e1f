"""A reports app: FastAPI, its own SQLAlchemy models and Alembic history, and jobplane."""

"""Results: the runner document schema, host-side records, summaries and the store.

Submodules are imported explicitly (``from harness.results.store import ResultStore``) so that
reading a record does not pull in SQLAlchemy.
"""

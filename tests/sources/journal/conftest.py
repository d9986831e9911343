from tests.sources.journal.journald import journald

__all__ = ["journald"]

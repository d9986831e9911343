"""journalban: log-driven intrusion prevention with a ledger you can query."""

__version__ = "0.1.0"

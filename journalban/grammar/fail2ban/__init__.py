"""Importing fail2ban filters as journalban grammars.

``import_filter(path, mode)`` reads a filter the way fail2ban does (includes,
``.local``, ``[Init]``, interpolation, ``<tag>`` options) and returns the text of
a grammar whose rules are ``/regex/`` translations of its failregexes. Lines must
reach such a grammar with their date cut out, as fail2ban does: ``strip_date``.
"""

from .dates import find_date, strip_date
from .importer import ImportedGrammar, ImportError_, import_filter, main_import
from .ini import ConfigError

FilterImportError = ImportError_

__all__ = [
    "ConfigError",
    "FilterImportError",
    "ImportedGrammar",
    "find_date",
    "import_filter",
    "main_import",
    "strip_date",
]

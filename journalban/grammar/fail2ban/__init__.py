"""Importing fail2ban filters as journalban grammars.

``import_filter(path, mode)`` reads a filter the way fail2ban does (includes,
``.local``, ``[Init]``, interpolation, ``<tag>`` options) and returns the text of
a grammar whose rules are ``/regex/`` translations of its failregexes;
``import_tree(base, grammar_dir)`` does the same for every enabled jail of a whole
``/etc/fail2ban`` tree and writes the jails as journalban config. Lines must
reach such a grammar with their date cut out, as fail2ban does (``strip_date``):
its ``applies file format=fail2ban`` and ``datepattern`` make the file source do that.
"""

from .dates import find_date, strip_date
from .importer import ImportedGrammar, ImportError_, import_filter, main_import
from .ini import ConfigError
from .tree import Dropped, TreeImport, import_tree, main_import_tree

FilterImportError = ImportError_

__all__ = [
    "ConfigError",
    "Dropped",
    "FilterImportError",
    "ImportedGrammar",
    "TreeImport",
    "find_date",
    "import_filter",
    "import_tree",
    "main_import",
    "main_import_tree",
    "strip_date",
]

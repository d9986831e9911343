"""Where the files that ship with journalban are found.

In a wheel they sit in ``journalban/_data``; in a source checkout (and an editable
install) they are the top-level ``grammars/``, ``migrations/`` and ``packaging/``.
"""

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
_WHEEL_DATA = _PACKAGE / "_data"
_CHECKOUT = _PACKAGE.parent


def _shipped(wheel_name: str, checkout_name: str) -> Path:
    installed = _WHEEL_DATA / wheel_name
    return installed if installed.exists() else _CHECKOUT / checkout_name


SHIPPED_GRAMMARS = _shipped("grammars", "grammars")
MIGRATIONS = _shipped("migrations", "migrations")
DEFAULT_CONFIG = _shipped("journalban.toml", "packaging/journalban.toml")
SYSTEM_CONFIG = Path("/etc/journalban/journalban.toml")

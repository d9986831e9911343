"""A whole fail2ban configuration tree's jails, read as ``fail2ban-client`` reads them.

Files are read in fail2ban's order: ``jail.conf``, ``jail.d/*.conf``, ``jail.local``,
``jail.d/*.local`` (each sorted), every file with its ``[INCLUDES] before/after``
(``paths-*.conf``) and its own ``.local``. Later files override earlier ones option
by option (the older value stays reachable as ``%(known/NAME)s``), ``[DEFAULT]``
is inherited by every jail, and values are interpolated in the jail's section
(``%(__name__)s`` is the jail's name).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .ini import Config, ConfigError, Resolver, _parser
from .values import boolean

_SKIPPED_SECTIONS = frozenset({"INCLUDES", "Definition", "Init"})


def tree_files(base: Path) -> list[Path]:
    """The jail files of ``base`` that exist, in fail2ban's reading order."""
    jail_d = base / "jail.d"
    listed = [
        base / "jail.conf",
        *sorted(jail_d.glob("*.conf")),
        base / "jail.local",
        *sorted(jail_d.glob("*.local")),
    ]
    return [path for path in listed if path.is_file()]


def _with_local(files: list[Path]) -> list[Path]:
    """Each file followed by its ``.local`` unless that is read on its own anyway."""
    out: list[Path] = []
    for path in files:
        out.append(path)
        local = path.with_suffix(".local")
        if local != path and local not in files and local.is_file():
            out.append(local)
    return out


def _with_includes(path: Path, seen: tuple[Path, ...]) -> list[Path]:
    """``before`` includes, the file, ``after`` includes; missing includes are skipped, as in fail2ban."""
    if not path.is_file():
        return []
    parser = _parser(path)
    parts: dict[str, list[Path]] = {"before": [], "after": []}
    if parser.has_section("INCLUDES"):
        for key, found in parts.items():
            if not parser.has_option("INCLUDES", key):
                continue
            for written in parser.get("INCLUDES", key, raw=True).split("\n"):
                name = written.strip()
                if not name:
                    continue
                included = Path(name) if Path(name).is_absolute() else path.parent / name
                if included in seen:
                    continue
                for file in _with_local([included]):
                    found.extend(_with_includes(file, (*seen, path)))
    return [*parts["before"], path, *parts["after"]]


def read_order(base: Path) -> list[Path]:
    """Every file read for the jails of ``base``, includes included."""
    order: list[Path] = []
    for path in _with_local(tree_files(base)):
        order.extend(_with_includes(path, ()))
    return order


@dataclass
class JailTree:
    """The merged jail configuration of one tree, and how to read a jail's values."""

    base: Path
    config: Config
    files: list[Path]

    @property
    def jail_names(self) -> list[str]:
        """Every jail section, in the order fail2ban lists them."""
        return [name for name in self.config.sections if name not in _SKIPPED_SECTIONS
                and not name.startswith("KNOWN/")]

    def own_keys(self, jail: str) -> list[str]:
        """Keys the jail's section sets itself (not inherited from ``[DEFAULT]``)."""
        return list(self.config.sections.get(jail, {}))

    def value(self, jail: str, key: str) -> str | None:
        """``key`` as the jail sees it, interpolated; raises ConfigError naming the jail."""
        resolver = Resolver(self.config, {}, self.base / "jail.conf")
        try:
            found = resolver.get(jail, key)
        except ConfigError as error:
            raise ConfigError(str(error).replace(f"{self.base / 'jail.conf'}: ", "", 1)) from None
        return None if found is None else found.strip()

    def enabled(self, jail: str) -> bool:
        written = self.value(jail, "enabled")
        if written is None:
            return False
        try:
            return boolean(written)
        except ValueError as error:
            raise ConfigError(f"[{jail}] enabled: {error}") from None


def read_tree(base: Path) -> JailTree:
    """Read the jail files of ``base``; raises ConfigError naming file and line."""
    if not (base / "jail.conf").is_file() and not (base / "jail.local").is_file():
        raise ConfigError(f"{base}: no jail.conf or jail.local: not a fail2ban configuration directory")
    config = Config()
    files = read_order(base)
    problems: list[str] = []
    for path in files:
        try:
            config.merge(_parser(path))
        except ConfigError as error:
            problems.append(str(error))
            continue
        config.files.append(path)
    if problems:
        raise ConfigError("\n".join(problems))
    # always available to interpolation, as fail2ban-client adds them
    config.defaults.setdefault("fail2ban_version", "1.0")
    config.defaults.setdefault("fail2ban_confpath", str(base))
    return JailTree(base, config, files)

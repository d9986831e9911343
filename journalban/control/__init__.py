"""The operator's side door into a running daemon: a root-only Unix socket speaking JSON lines.

``protocol`` is the wire format, ``handlers`` what each command does against a small
``ControlContext``, ``server`` the socket, ``client`` the CLI's side of it, ``hooks``
the per-jail on_ban/on_unban commands, ``context`` the daemon's adapter.
"""

"""Address text shared by the matcher and the ledger.

Nearly every address journalban sees is a dotted quad already in canonical form.
Recognising that with one regular expression spares the hot paths an ``ipaddress``
object per failure; anything else still goes through ``ipaddress``.
"""

import re

_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
# A dotted quad in canonical form: each octet 0-255 without a leading zero.
CANONICAL_IPV4 = re.compile(rf"(?:{_OCTET}\.){{3}}{_OCTET}", re.ASCII)

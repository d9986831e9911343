"""fail2ban's own sample-log cases, run through imported filters (needs fail2ban installed)."""

import pytest

from tests.compat import fail2ban_compat as compat

MISSING = compat.available()
if MISSING:
    print(f"skipping fail2ban compat tests: {MISSING}")


@pytest.mark.skipif(MISSING is not None, reason=MISSING or "")
@pytest.mark.parametrize("name", ["sshd", "nginx-http-auth", "postfix", "dovecot", "apache-auth"])
def test_sample_cases_hold(name: str) -> None:
    result = compat.run_filter(name)
    assert result.total > 0
    assert not result.errors
    assert result.failures == []
    assert result.ok == result.total

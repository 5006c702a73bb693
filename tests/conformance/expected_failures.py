"""Tests known to fail, with the reason, so the conformance run stays green.

Keys are test ids as run.py prints them: `module.Class.test_method` (the
`test.test_asyncio.` prefix dropped), or fnmatch patterns over them. Values are
`X(reason, versions=..., hang=...)`:

- `versions`: Python versions ('3.12', ...) the entry applies to; None = all.
- `hang`: the test hangs (or takes minutes) on that loop; it is not run at
  all, and is reported as an expected failure "not run".

`EVIOLOOP` lists failures of evioloop only: each one is a bug or a missing
feature in evioloop, with a specific reason. `ENVIRONMENT` lists tests that
fail on this machine with the stock loop as well (sandbox, missing network
or IPv6, ...); they are expected to fail on both loops alike.

An entry whose test passes is reported as an unexpected success (not an
error): remove it then.
"""
import fnmatch


class X:
    __slots__ = ('reason', 'versions', 'hang')

    def __init__(self, reason, *, versions=None, hang=False):
        if not reason:
            raise ValueError('an expected failure needs a reason')
        self.reason = reason
        self.versions = tuple(versions) if versions else None
        self.hang = hang

    def applies(self, version):
        return self.versions is None or version in self.versions

    def __repr__(self):
        return f'X({self.reason!r}, versions={self.versions!r}, hang={self.hang!r})'


# Fails on evioloop, passes on the stock loop. The failures this runner found
# earlier (sendfile fallback, the error for add_reader on a transport's fd,
# swapped running-loop helpers) are fixed; what is left is by design.
EVIOLOOP = {
    'test_subprocess.GenericWatcherTests.test_create_subprocess_fails_with_inactive_watcher': X(
        "installs an inactive mock child watcher with asyncio.set_child_watcher() and "
        "expects subprocess creation to raise RuntimeError; evioloop never consults child "
        "watchers (a child's exit is its pidfd in the dispatch), as uvloop does not, and "
        "3.14 removed the watcher API", versions=('3.11', '3.12', '3.13')),
}


# Fails on both loops on this machine (the environment, not the loop).
ENVIRONMENT = {
}


def lookup(test_id, loop, version):
    """The X entry that applies to test_id on loop ('evioloop'/'asyncio') and
    Python version ('3.12'), or None."""
    tables = [ENVIRONMENT]
    if loop == 'evioloop':
        tables.insert(0, EVIOLOOP)
    for table in tables:
        entry = table.get(test_id)
        if entry is not None and entry.applies(version):
            return entry
        for pattern, entry in table.items():
            if ('*' in pattern or '?' in pattern or '[' in pattern) and \
                    fnmatch.fnmatchcase(test_id, pattern) and entry.applies(version):
                return entry
    return None

"""Shared pieces of the property-based tests (tests/test_fuzz_*.py).

`fuzz(n)` is the hypothesis settings every fuzz test uses: no example
database (nothing is written into the checkout), no per-example deadline (the
machine is shared, timings vary), randomness on (hypothesis prints the
failing example and the seed to reproduce it), and a modest example count so
that the fuzz files together stay inside their time budget.

Hypothesis also keeps caches of its own (the constants it reads from the
source, Unicode tables) under its home directory, `.hypothesis/` in the
working directory by default, whatever the database setting: it is moved to
the temporary directory so that nothing is written into the checkout.
"""
import hashlib
import os
import tempfile

from hypothesis import HealthCheck, settings
from hypothesis.configuration import set_hypothesis_home_dir

if not os.environ.get('HYPOTHESIS_STORAGE_DIRECTORY'):
    set_hypothesis_home_dir(os.path.join(tempfile.gettempdir(),
                                         f'evioloop-hypothesis-{os.getuid()}'))


def fuzz(max_examples):
    return settings(max_examples=max_examples, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow,
                                           HealthCheck.function_scoped_fixture],
                    print_blob=True)


def sha(data):
    return hashlib.sha256(data).hexdigest()


def open_fds():
    """{fd: target} of this process, to check per example (the autouse check is per test)."""
    out = {}
    for name in os.listdir('/proc/self/fd'):
        try:
            out[int(name)] = os.readlink(f'/proc/self/fd/{name}')
        except OSError:
            pass                    # the listing's own fd, closed by now
    return out


def split_at(data, cuts):
    """`data` cut at the (sorted, deduplicated) offsets `cuts`."""
    points = sorted({c % (len(data) + 1) for c in cuts}) if data else []
    pieces, last = [], 0
    for p in points:
        pieces.append(data[last:p])
        last = p
    pieces.append(data[last:])
    return [p for p in pieces if p]

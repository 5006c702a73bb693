"""Builds evioloop's compiled layers; pyproject.toml holds the metadata."""
import os

from Cython.Build import cythonize
from setuptools import Extension, setup

# Cython and the C compiler each run on every core: the build is most of the
# time a fresh test env takes (and the tests build the sdist once more).
JOBS = os.cpu_count() or 1

DIRECTIVES = {
    "language_level": 3,
    "boundscheck": False,
    "wraparound": False,
    "embedsignature": True,
}


def ext(name):
    path = name.replace(".", "/")
    return Extension(f"evioloop.{name}", [f"evioloop/{path}.pyx"], include_dirs=["evioloop"])


setup(
    ext_modules=cythonize(
        [ext("_poller"), ext("_handles"), ext("_core"), ext("_stream"),
         ext("events._server"), ext("events._conn"), ext("events._portable"), ext("events._udp")],
        compiler_directives=DIRECTIVES,
        nthreads=JOBS,
    ),
    options={"build_ext": {"parallel": JOBS}},
)

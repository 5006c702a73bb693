"""Builds evioloop's compiled layers; pyproject.toml holds the metadata."""
import glob
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


# the C headers of each layer (poller.h; transports/sockio.h, dgramio.h), which
# other layers' modules include through the .pxd files they cimport
INCLUDE_DIRS = ["evioloop", "evioloop/core", "evioloop/transports"]


def ext(path):
    name = path[:-len(".pyx")].replace("/", ".")
    return Extension(name, [path], include_dirs=INCLUDE_DIRS)


# every .pyx is one extension module, named after its path
SOURCES = sorted(glob.glob("evioloop/**/*.pyx", recursive=True))


setup(
    ext_modules=cythonize(
        [ext(path) for path in SOURCES],
        compiler_directives=DIRECTIVES,
        nthreads=JOBS,
    ),
    options={"build_ext": {"parallel": JOBS}},
)

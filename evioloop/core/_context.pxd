# Layer 2: contextvars' C API (Python.h), declared once for every module that
# runs a callback inside a Context or copies the current one.
cdef extern from "Python.h":
    int PyContext_Enter(object ctx) except -1
    int PyContext_Exit(object ctx) except -1
    object PyContext_CopyCurrent()

# Type stub for the compiled core (_core.pyx): the names the public API exposes.

class CoreLoop:
    """The compiled half of `evioloop.Loop`: run loop, ready queue, timers, fd table."""

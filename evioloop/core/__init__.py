"""Layer 2, the loop core: handles, the fd table and its dispatch, the timer heap, the run loop."""

"""Layer 3, the transports: streams and their listeners, datagrams, pipes, subprocesses, TLS."""

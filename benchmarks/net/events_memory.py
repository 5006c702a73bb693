"""Memory of an Events server whose peers never read (the output bound).

    python benchmarks/net/events_memory.py [--conns 200] [--reply 262144] [--seconds 10]

Starts a native Events server in a child process whose `data` answers every
piece of input with a `--reply`-byte message, then opens `--conns` clients
that send without ever reading. Without a bound the server's output would
grow until memory runs out; with evioloop's water marks (write_buffer_high
1 MiB by default) each connection stops being read once its output passes
the mark. Prints the server's RSS before the load and its peak during it,
and the bound the design promises: conns x (write_buffer_high + one reply).
"""
import argparse
import socket
import subprocess
import sys
import time

SERVER = r'''
import sys, evioloop
reply = b'r' * int(sys.argv[1])
def serving(server):
    print(server.addrs[0][1], flush=True)
evioloop.serve(evioloop.Events(serving=serving, data=lambda c, d: reply),
               'tcp://127.0.0.1:0')
'''


def rss_kib(pid):
    with open(f'/proc/{pid}/status') as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1])
    return 0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--conns', type=int, default=200)
    p.add_argument('--reply', type=int, default=256 * 1024)
    p.add_argument('--seconds', type=float, default=10.0)
    a = p.parse_args(argv)
    server = subprocess.Popen([sys.executable, '-c', SERVER, str(a.reply)],
                              stdout=subprocess.PIPE, text=True)
    try:
        port = int(server.stdout.readline())
        time.sleep(0.3)
        before = rss_kib(server.pid)
        clients = []
        for _ in range(a.conns):
            s = socket.create_connection(('127.0.0.1', port))
            s.setblocking(False)
            clients.append(s)
        peak = before
        sent = 0
        end = time.monotonic() + a.seconds
        chunk = b'q' * 4096
        while time.monotonic() < end:
            for s in clients:
                try:
                    sent += s.send(chunk)
                except BlockingIOError:
                    pass
            peak = max(peak, rss_kib(server.pid))
            time.sleep(0.01)
        for s in clients:
            s.close()
        high = 1024 * 1024
        bound = a.conns * (high + a.reply) // 1024
        print(f'conns={a.conns} reply={a.reply} B, client sent {sent / 1e6:.1f} MB and '
              f'read nothing in {a.seconds:.0f} s')
        print(f'server RSS: {before / 1024:.1f} MiB before, peak {peak / 1024:.1f} MiB '
              f'(+{(peak - before) / 1024:.1f} MiB); the bound conns x (1 MiB + reply) is '
              f'{bound / 1024:.0f} MiB')
        return 0
    finally:
        server.terminate()
        server.wait(10)


if __name__ == '__main__':
    sys.exit(main())

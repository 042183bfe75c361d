#!/usr/bin/env python3
"""How long an `fdatasync` of a small append takes on this disk.

A WAL sync writes a few KiB after the end of the log and waits in
`fdatasync`. This does the same from outside rdb: 3,000-byte appends to a
new file, each followed by `fdatasync`, for SECONDS, and prints the syncs
per second and their latency (mean, p50, p90, p99). Two files:

- `append`: the file grows with every write, as a WAL segment does (the
  sync writes the inode's new size too);
- `zeroed`: the writes overwrite a file written with zeros and synced
  first, so only data reaches the disk.

Run it alone to see the disk, and beside a loaded cluster (for example
`benches/cluster/ab-bench.sh BINARY 20 &`, then this after 5 s) to
see what a sync waits for under load: the difference is the disk's queue
and the wait for a core after the sync ends.

    python3 benches/fsync-latency.py [directory, /var/tmp] [seconds, 4]

It writes and removes one file of at most 64 MiB at a time.
"""
import os
import sys
import time

APPEND_BYTES = 3000
ZEROED_BYTES = 64 << 20


def measure(path, zeroed, seconds):
    """Latencies in seconds of each sync, and the seconds the syncing took."""
    fd = os.open(path, os.O_CREAT | os.O_RDWR | os.O_TRUNC, 0o644)
    try:
        if zeroed:
            os.write(fd, bytes(ZEROED_BYTES))
            os.fsync(fd)
            os.lseek(fd, 0, os.SEEK_SET)
        record, latencies, written = b"x" * APPEND_BYTES, [], 0
        began = time.monotonic()
        end = began + seconds
        while time.monotonic() < end and written + APPEND_BYTES <= ZEROED_BYTES:
            os.write(fd, record)
            written += APPEND_BYTES
            started = time.perf_counter()
            os.fdatasync(fd)
            latencies.append(time.perf_counter() - started)
        return latencies, time.monotonic() - began
    finally:
        os.close(fd)
        os.unlink(path)


def main():
    directory = sys.argv[1] if len(sys.argv) > 1 else "/var/tmp"
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 4.0
    for name in ("append", "zeroed"):
        path = os.path.join(directory, f"rdb-fsync-latency-{os.getpid()}")
        lat, took = measure(path, name == "zeroed", seconds)
        lat.sort()
        n = len(lat)
        ms = [1000 * lat[min(n - 1, n * q // 100)] for q in (50, 90, 99)]
        print(f"{name:7s} {n / took:8.0f} syncs/s  mean {1000 * sum(lat) / n:.3f} ms  "
              f"p50 {ms[0]:.3f}  p90 {ms[1]:.3f}  p99 {ms[2]:.3f} ms")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""What a random one-page write costs, by how the file got into the page cache.

The state file's writer rewrites single 4 KiB pages all over the file
(copy-on-write reuses freed pages). Since Linux 6.16 ext4 caches a file in
large folios when it is written in large pieces or read in with readahead,
and a one-page write into a large folio, and its writeback, then walk the
whole folio. This measures the CPU (user + system, this process) per random
4 KiB `pwrite`, with a writeback hint (`sync_file_range`) every 64 writes as
the B-tree gives them, in a 256 MiB file brought into the cache four ways:

- `pages`: written 4 KiB at a time (one-page folios);
- `large`: written 1 MiB at a time;
- `mapped`: written 4 KiB at a time, dropped from the cache, then read back
  through a read-only mapping (faults with readahead);
- `mapped-random`: the same with the mapping advised `MADV_RANDOM`.

    python3 benches/page-cache-folios.py [directory, /tmp]

Run it with nothing else busy; it writes and removes one 256 MiB file.
"""
import ctypes
import mmap
import os
import random
import resource
import sys

FILE_BYTES = 256 << 20
PAGE = 4096
WRITES = 20_000
HINT_EVERY = 64

libc = ctypes.CDLL(None, use_errno=True)
libc.sync_file_range.argtypes = [ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong, ctypes.c_uint]
SYNC_FILE_RANGE_WRITE = 2


def cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def fill(fd, piece):
    data = b"a" * piece
    for offset in range(0, FILE_BYTES, piece):
        os.pwrite(fd, data, offset)
    os.fdatasync(fd)


def random_writes(fd, rng):
    """CPU µs per random one-page write, the loop's own cost taken out."""
    pages = FILE_BYTES // PAGE
    started = cpu_seconds()
    for _ in range(WRITES):
        rng.randrange(pages)
    loop = cpu_seconds() - started
    page = b"y" * PAGE
    started = cpu_seconds()
    for i in range(WRITES):
        os.pwrite(fd, page, rng.randrange(pages) * PAGE)
        if i % HINT_EVERY == HINT_EVERY - 1:
            libc.sync_file_range(fd, 0, FILE_BYTES, SYNC_FILE_RANGE_WRITE)
    os.fdatasync(fd)
    return (cpu_seconds() - started - loop) / WRITES * 1e6


def measure(directory, how):
    path = os.path.join(directory, f"page-cache-folios-{os.getpid()}.dat")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.ftruncate(fd, FILE_BYTES)
        fill(fd, 1 << 20 if how == "large" else PAGE)
        mapping = None
        if how.startswith("mapped"):
            os.posix_fadvise(fd, 0, FILE_BYTES, os.POSIX_FADV_DONTNEED)
            mapping = mmap.mmap(fd, FILE_BYTES, prot=mmap.PROT_READ)
            if how == "mapped-random":
                mapping.madvise(mmap.MADV_RANDOM)
            for offset in range(0, FILE_BYTES, PAGE):
                mapping[offset]
        cost = random_writes(fd, random.Random(1))
        if mapping is not None:
            mapping.close()
        return cost
    finally:
        os.close(fd)
        os.unlink(path)


def main():
    directory = sys.argv[1] if len(sys.argv) > 1 else "/tmp"
    print(f"kernel {os.uname().release}; {WRITES} random 4 KiB writes into 256 MiB")
    for how in ["pages", "large", "mapped", "mapped-random"]:
        print(f"{how:>14}: {measure(directory, how):6.2f} µs CPU per write")


if __name__ == "__main__":
    main()

"""Peak memory of a benchmark's child process, measured in the child.

``getrusage(RUSAGE_SELF).ru_maxrss`` is inherited across fork and exec on Linux, so a child
of a large benchmark process reports at least its parent's peak. ``VmHWM`` in
``/proc/self/status`` is the high-water mark of the child's own address space (reset by exec).
Child scripts start with :data:`PEAK_MB` and call ``peak_mb()`` at the end.
"""

PEAK_MB = """
def peak_mb():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")
"""

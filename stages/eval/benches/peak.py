"""What the Python references share: their peak memory, measured the same way."""


def peak_mib():
    """This process's peak resident memory in MiB: VmHWM, which starts afresh at exec (unlike
    ru_maxrss, which Linux carries over from the parent that spawned the process)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")

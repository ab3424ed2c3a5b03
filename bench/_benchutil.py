"""Helpers shared by the bench/ scripts: machine description, record generation, timing.

Not a test module and not part of the library. Imported by the scripts as a sibling
(`python bench/bench_storage.py` puts bench/ first on sys.path).
"""
from __future__ import annotations

import gc
import os
import platform
import random
import statistics
import sys
import time

MB = 1_000_000          # rates are in MB = 10^6 bytes (and GB = 10^9 bytes)
MiB = 1 << 20


# ------------------------------------------------------------------ machine

def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _filesystem(path: str) -> dict:
    """Mount point, fs type and device of the mount that holds `path` (longest prefix)."""
    real = os.path.realpath(path)
    best = {"mount": "?", "fstype": "?", "device": "?"}
    best_len = -1
    try:
        with open("/proc/mounts") as f:
            for line in f:
                parts = line.split()
                if len(parts) < 3:
                    continue
                dev, mnt, fstype = parts[0], parts[1].replace("\\040", " "), parts[2]
                inside = real == mnt or real.startswith(mnt.rstrip("/") + "/") or mnt == "/"
                if inside and len(mnt) >= best_len:
                    best, best_len = {"mount": mnt, "fstype": fstype, "device": dev}, len(mnt)
    except OSError:
        pass
    return best


def _git_state() -> str:
    """Commit of the embedlog checkout measured, '+dirty' if embedlog/ or csrc/ differ."""
    import subprocess
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        head = subprocess.run(["git", "-C", repo, "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", repo, "status", "--porcelain", "--", "embedlog", "csrc"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"
    return (head or "?") + ("+dirty" if dirty else "")


def machine_info(data_dir: str) -> dict:
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = None
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    try:
        from embedlog import __version__
        from embedlog.storage import _hotpath
        crc_hw = _hotpath.crc32c_hardware()
    except Exception:  # pragma: no cover - reported, not fatal
        __version__, crc_hw = "?", None
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "cores_usable": affinity,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "kernel": platform.release(),
        "platform": platform.platform(),
        "data_dir": os.path.realpath(data_dir),
        "filesystem": _filesystem(data_dir),
        "embedlog": __version__,
        "embedlog_git": _git_state(),
        "crc32c_hardware": crc_hw,
        "loadavg_start": load,
    }


def machine_line(info: dict) -> str:
    fs = info["filesystem"]
    load = info.get("loadavg_start")
    load_s = f", load {load[0]:.2f}" if load else ""
    return (f"{info['cpu']}, {info['cores']} cores ({info['cores_usable']} usable), "
            f"{info['python']}, Linux {info['kernel']}, {fs['fstype']} on {fs['device']} "
            f"(dir {info['data_dir']}), embedlog {info['embedlog']} ({info['embedlog_git']}), "
            f"CRC-32C hw={info['crc32c_hardware']}{load_s}")


# ------------------------------------------------------------------ data

def gen_records(n: int, seed: int = 42, key_size: int = 16, value_size: int = 100):
    """(keys, values): n random keys then n random values from one seeded generator."""
    rng = random.Random(seed)
    rb = rng.randbytes
    keys = [rb(key_size) for _ in range(n)]
    values = [rb(value_size) for _ in range(n)]
    return keys, values


# ------------------------------------------------------------------ timing

class Runs:
    """Wall-clock seconds of repeated runs of one measurement."""

    def __init__(self, name: str, units: float = 0, nbytes: float = 0):
        self.name = name
        self.units = units          # records (or batches) per run
        self.nbytes = nbytes        # payload bytes per run
        self.times: list[float] = []

    def add(self, seconds: float):
        self.times.append(seconds)

    @property
    def best(self) -> float:
        return min(self.times)

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    def rate(self, which: str = "best") -> float:
        t = self.best if which == "best" else self.median
        return self.units / t if t > 0 else float("inf")

    def mbps(self, which: str = "best") -> float:
        t = self.best if which == "best" else self.median
        return self.nbytes / t / MB if t > 0 else float("inf")

    def as_dict(self) -> dict:
        d = {"runs_s": [round(t, 6) for t in self.times], "best_s": self.best,
             "median_s": self.median}
        if self.units:
            d["per_s_best"] = self.rate("best")
            d["per_s_median"] = self.rate("median")
        if self.nbytes:
            d["MB_per_s_best"] = self.mbps("best")
            d["MB_per_s_median"] = self.mbps("median")
        return d


def timed(fn, *args, **kwargs):
    """(seconds, result) of one call; a full collection first so that garbage of an
    earlier measurement is not charged to this one (the collector stays enabled)."""
    gc.collect()
    t0 = time.perf_counter()
    result = fn(*args, **kwargs)
    return time.perf_counter() - t0, result


def fmt_rate(x: float) -> str:
    if x >= 1e6:
        return f"{x / 1e6:.2f} M"
    if x >= 1e3:
        return f"{x / 1e3:.1f} k"
    return f"{x:.1f} "


def eprint(*a):
    print(*a, file=sys.stderr, flush=True)

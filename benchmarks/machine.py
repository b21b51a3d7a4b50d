"""What every benchmark prints about where it ran: CPU, cores, load, library versions, GPU."""

from __future__ import annotations

import os
import platform
from importlib import metadata
from pathlib import Path

# A load average above this many runnable tasks per core marks figures as provisional.
BUSY_LOAD_PER_CORE = 0.75


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def versions(packages: tuple[str, ...]) -> str:
    found = [f"Python {platform.python_version()}"]
    for package in packages:
        try:
            found.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            pass
    return ", ".join(found)


def gpu() -> str:
    try:
        import torch

        if torch.cuda.is_available():
            return ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
    except ImportError:
        pass
    return "none (CPU only)"


def load_average() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def busy() -> bool:
    return os.getloadavg()[0] > BUSY_LOAD_PER_CORE * (os.cpu_count() or 1)


def describe(packages: tuple[str, ...] = ("lungcad", "torch", "numpy")) -> str:
    return "\n".join([
        f"machine: {cpu_model()}, {os.cpu_count()} logical CPUs, {platform.system()} "
        f"{platform.release()}",
        f"versions: {versions(packages)}",
        f"GPU: {gpu()}",
        f"load average (1, 5, 15 min): {load_average()}"])


def provisional_note() -> str:
    if busy():
        return (f"PROVISIONAL: load average {load_average()} on {os.cpu_count()} CPUs: the "
                "machine was busy with other work; ratios measured side by side still hold "
                "roughly, absolute figures do not")
    return f"load average {load_average()}: the machine was quiet enough"

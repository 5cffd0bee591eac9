"""This host's CPU, memory and GPUs, and the memory of one process group, read at scrape time.

GPUs are read through NVML (nvidia-ml-py): on a machine without an NVIDIA driver there are no
GPU series at all, which is not an error. NVML is initialised once per process and kept.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable

import psutil
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)


class _Nvml:
    """NVML, opened on first use; ``None`` handles when there is no GPU or no driver."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._handles: list[object] | None = None
        self._tried = False

    def handles(self) -> list[object]:
        """Return one handle per GPU (empty without NVML)."""
        with self._lock:
            if not self._tried:
                self._tried = True
                self._handles = self._open()
            return self._handles or []

    @staticmethod
    def _open() -> list[object]:
        try:
            import pynvml

            pynvml.nvmlInit()
            count = pynvml.nvmlDeviceGetCount()
            return [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
        except Exception as exc:  # no driver, no GPU, no library: simply no GPU series
            log.debug("no GPU metrics", extra={"error": repr(exc)})
            return []


_NVML = _Nvml()


def gpu_readings() -> list[tuple[float, float, float]]:
    """Return (utilisation percent, memory used bytes, memory total bytes) per GPU."""
    handles = _NVML.handles()
    if not handles:
        return []
    import pynvml

    readings = []
    for handle in handles:
        try:
            use = pynvml.nvmlDeviceGetUtilizationRates(handle)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
        except pynvml.NVMLError as exc:  # a GPU fell off the bus: leave it out of this scrape
            log.warning("GPU not readable", extra={"error": repr(exc)})
            continue
        readings.append((float(use.gpu), float(memory.used), float(memory.total)))
    return readings


def group_rss(main_pid: int) -> float:
    """Return the resident memory of ``main_pid`` and all its descendants, in bytes."""
    try:
        main = psutil.Process(main_pid)
        processes = [main, *main.children(recursive=True)]
    except psutil.Error:
        return 0.0
    total = 0
    for process in processes:
        try:
            total += process.memory_info().rss
        except psutil.Error:  # it ended while we counted
            continue
    return float(total)


# cpu_percent(None) measures since its previous call in this process and reads 0.0 the first
# time: start its clock at import, so the first scrape reads the time since start-up and each
# later one the time since the scrape before.
psutil.cpu_percent(None)


class HostFigures(Collector):
    """Host CPU and memory, the memory of one process group (``scope``), and GPUs."""

    def __init__(self, *, scope: str, main_pid: int | None = None) -> None:
        self.scope = scope
        self.main_pid = main_pid or os.getpid()

    def collect(self) -> Iterable[Metric]:
        """Yield the gauges."""
        yield GaugeMetricFamily(
            "cpu_usage_percent", "CPU utilization of this host", value=psutil.cpu_percent(None)
        )
        memory = GaugeMetricFamily("memory_usage_bytes", "Memory in use", labels=["scope"])
        memory.add_metric(["host"], float(psutil.virtual_memory().used))
        memory.add_metric([self.scope], group_rss(self.main_pid))
        yield memory
        readings = gpu_readings()
        if not readings:
            return
        use = GaugeMetricFamily("gpu_utilization_percent", "GPU utilization", labels=["gpu"])
        used = GaugeMetricFamily("gpu_memory_used_bytes", "GPU memory in use", labels=["gpu"])
        total = GaugeMetricFamily("gpu_memory_total_bytes", "GPU memory", labels=["gpu"])
        for index, (percent, used_bytes, total_bytes) in enumerate(readings):
            use.add_metric([str(index)], percent)
            used.add_metric([str(index)], used_bytes)
            total.add_metric([str(index)], total_bytes)
        yield from (use, used, total)

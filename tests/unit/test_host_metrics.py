"""Per-host metrics: each process group's own folder, host and GPU gauges, a worker's server."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import types
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from nesydet.config import Settings
from nesydet.observability import host_metrics, metrics_dir
from nesydet.observability.host_metrics import HostFigures
from nesydet.tasks.metrics_server import start_metrics_server


def names_and_labels(collector: HostFigures) -> set[tuple[str, tuple[tuple[str, str], ...]]]:
    return {
        (sample.name, tuple(sorted(sample.labels.items())))
        for family in collector.collect()
        for sample in family.samples
    }


def test_each_process_group_keeps_its_own_folder_and_dead_runs_are_removed(
    tmp_path: Path,
) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    mine = metrics_dir.own_folder(tmp_path, "worker")
    gone = tmp_path / mine.name.replace(str(os.getpid()), str(dead.pid))
    other_role = metrics_dir.own_folder(tmp_path, "api")
    other_host = tmp_path / f"worker-elsewhere-{dead.pid}"
    for folder in (mine, gone, other_role, other_host):
        folder.mkdir()
    metrics_dir._remove_dead_runs(tmp_path, "worker")
    assert not gone.exists(), "a dead run's folder on this host goes"
    assert mine.exists(), "a live run's folder stays"
    assert other_role.exists()
    assert other_host.exists(), "another host's folder is not this host's to judge"
    assert metrics_dir.main_pid(mine) == os.getpid()


def test_host_figures_cover_cpu_memory_and_no_gpu_series_without_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(host_metrics, "_NVML", host_metrics._Nvml())
    monkeypatch.setitem(sys.modules, "pynvml", None)  # as on a machine without the library
    seen = names_and_labels(HostFigures(scope="worker"))
    assert ("cpu_usage_percent", ()) in seen
    assert ("memory_usage_bytes", (("scope", "host"),)) in seen
    assert ("memory_usage_bytes", (("scope", "worker"),)) in seen
    assert not any(name.startswith("gpu_") for name, _ in seen)


def test_gpus_are_read_through_nvml(monkeypatch: pytest.MonkeyPatch) -> None:
    class Error(Exception):
        pass

    fake = types.SimpleNamespace(
        NVMLError=Error,
        nvmlInit=lambda: None,
        nvmlDeviceGetCount=lambda: 2,
        nvmlDeviceGetHandleByIndex=lambda i: i,
        nvmlDeviceGetUtilizationRates=lambda h: types.SimpleNamespace(gpu=40 + h),
        nvmlDeviceGetMemoryInfo=lambda h: types.SimpleNamespace(used=(h + 1) * 2**30, total=2**34),
    )
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    monkeypatch.setattr(host_metrics, "_NVML", host_metrics._Nvml())
    values = {
        (sample.name, sample.labels.get("gpu")): sample.value
        for family in HostFigures(scope="api").collect()
        for sample in family.samples
        if sample.name.startswith("gpu_")
    }
    assert values == {
        ("gpu_utilization_percent", "0"): 40,
        ("gpu_utilization_percent", "1"): 41,
        ("gpu_memory_used_bytes", "0"): 2**30,
        ("gpu_memory_used_bytes", "1"): 2**31,
        ("gpu_memory_total_bytes", "0"): 2**34,
        ("gpu_memory_total_bytes", "1"): 2**34,
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_worker_serves_its_metrics_and_port_0_turns_them_off(tmp_path: Path) -> None:
    assert start_metrics_server(Settings(var_dir=tmp_path, worker_metrics_port=0)) is None
    port = free_port()
    served = start_metrics_server(Settings(var_dir=tmp_path, worker_metrics_port=port))
    assert served is not None
    try:
        response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
        assert response.status_code == 200
        families = {f.name for f in text_string_to_metric_families(response.text)}
        assert {"cpu_usage_percent", "memory_usage_bytes"} <= families
    finally:
        served.stop()


def test_a_taken_port_costs_the_metrics_not_the_worker(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with caplog.at_level(logging.ERROR):
            served = start_metrics_server(Settings(var_dir=tmp_path, worker_metrics_port=port))
    assert served is None
    [record] = [r for r in caplog.records if r.getMessage() == "worker metrics not served"]
    assert f"127.0.0.1:{port}" in record.__dict__["address"]

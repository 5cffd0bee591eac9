"""The service as several hosts on one machine, for ``test_multihost.py``.

A host is a set of processes with an address and a working directory of its own; hosts share
nothing but the network (each keeps its own metrics folder, broker-less state and logs):

- ``services`` (127.0.0.10): PostgreSQL, Redis and an S3 server (moto);
- ``api-1``, ``api-2`` (127.0.0.11, .12): ``nesydet serve``;
- ``lb`` (127.0.0.20): nginx with the checkout's ``deploy/nginx/nesydet.conf``, the TLS
  terminator and the only proxy the API hosts trust;
- ``monitoring`` (127.0.0.30): Prometheus, scraping every API and worker host, with the
  checkout's alerting rules (their ``for:`` shortened);
- worker hosts: ``nesydet worker`` on S3 storage, each serving its own ``/metrics``: on a
  loopback address (127.0.0.21, ...), or in a network namespace of its own joined to the
  machine by a veth pair, a :class:`Link` the test can cut. The services host listens on the
  machine's end of every link too.

A process on a loopback address connects from 127.0.0.1 unless it binds: nginx binds its own
address (``proxy_bind``), since that is the address the API hosts trust.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import trustme
import yaml  # type: ignore[import-untyped]
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.gates import Gate
from tests.integration.prom import (
    REPO,
    Process,
    Prometheus,
    migrate,
    nesydet_command,
    nesydet_env,
    prometheus_binary,
    spawn,
    unavailable,
    wait_until,
)
from tests.integration.test_e2e import FAST
from tests.pg_server import PostgresServer
from tests.redis_server import RedisServer

NGINX_CONF = REPO / "deploy" / "nginx" / "nesydet.conf"
ALERTS = REPO / "deploy" / "prometheus" / "alerts.yml"
SERVICES = "127.0.0.10"
API_HOSTS = 11  # 127.0.0.11, .12
WORKER_HOSTS = 21  # 127.0.0.21, .22, ... in the machine's namespace
LB = "127.0.0.20"
MONITORING = "127.0.0.30"
CLIENT = "127.0.0.40"  # where the test's requests come from
WORKER_METRICS_PORT = 9091  # in a namespace of its own, a worker has every port to itself
# Every `for:` of the alerting rules in the test's copy, and how often they are evaluated.
ALERT_FOR = "5s"
INTERVAL = "1s"
S3_KEYS = {"NESYDET_S3_ACCESS_KEY_ID": "multihost", "NESYDET_S3_SECRET_ACCESS_KEY": "multihost-s3"}
BUCKET = "nesydet"
# What Celery logs once its consumer is connected and the worker takes tasks.
READY = re.compile(r"^nesydet@\S+ ready\.$")

# moto's S3 on several addresses at once (werkzeug serves one address per server): one
# in-process backend behind a server per address, so every host sees the same bucket.
S3_SERVER = """\
import sys, threading
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication, MotoRequestHandler, create_backend_app)
from werkzeug.serving import make_server

app = DomainDispatcherApplication(create_backend_app)
port = int(sys.argv[1])
servers = [make_server(h, port, app, threaded=True, request_handler=MotoRequestHandler)
           for h in sys.argv[2:]]
for server in servers[1:]:
    threading.Thread(target=server.serve_forever, daemon=True).start()
servers[0].serve_forever()
"""


def free_port(address: str) -> int:
    """Return a TCP port that nothing listens on at ``address`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((address, 0))
        port: int = sock.getsockname()[1]
        return port


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def process_tree(pid: int) -> list[psutil.Process]:
    """Return the process ``pid`` and all its descendants that still run."""
    try:
        leader = psutil.Process(pid)
        return [p for p in (leader, *leader.children(recursive=True)) if _alive(p)]
    except psutil.NoSuchProcess:
        return []


@dataclass
class Host:
    """Processes with an address and a working directory of their own."""

    name: str
    address: str
    root: Path
    netns: str | None = None
    processes: list[Process] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)

    def spawn(self, name: str, cmd: Sequence[str], env: Mapping[str, str]) -> Process:
        """Start ``cmd`` on this host (in its namespace, if it has one), in its directory."""
        if self.netns is not None:
            cmd = ["ip", "netns", "exec", self.netns, *cmd]
        process = spawn(name, cmd, env=env, cwd=self.root)
        self.processes.append(process)
        return process

    def pids(self) -> list[int]:
        """Return the pids of every process of this host that runs."""
        return sorted(p.pid for process in self.processes for p in process_tree(process.proc.pid))

    def kill(self, timeout: float = 15) -> list[int]:
        """Kill (SIGKILL) every process of this host at once and return their pids: no clean
        shutdown, no goodbye to the database or the broker."""
        victims = [p for process in self.processes for p in process_tree(process.proc.pid)]
        for victim in victims:
            with contextlib.suppress(psutil.NoSuchProcess):
                victim.send_signal(signal.SIGKILL)
        for process in self.processes:
            process.proc.wait(timeout)
        deadline = time.monotonic() + timeout
        while any(_alive(v) for v in victims):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: still running after SIGKILL: {victims}")
            time.sleep(0.05)
        return sorted(v.pid for v in victims)

    def stop(self) -> None:
        """Stop every process of this host, the last started first."""
        for process in reversed(self.processes):
            process.stop()


@dataclass
class Link:
    """A network namespace joined to the machine's by a veth pair on a /30 of its own."""

    netns: str
    outer: str  # the machine's end
    inner: str  # the namespace's end
    network: ipaddress.IPv4Network

    @property
    def outer_address(self) -> str:
        """Return the machine's address on the link (the services host listens there)."""
        return str(self.network[1])

    @property
    def inner_address(self) -> str:
        """Return the namespace's address."""
        return str(self.network[2])

    def create(self) -> None:
        """Create the namespace and the pair, address both ends and bring them up."""
        prefix = self.network.prefixlen
        for args in (
            ["netns", "add", self.netns],
            ["link", "add", self.outer, "type", "veth", "peer", "name", self.inner],
            ["link", "set", self.inner, "netns", self.netns],
            ["addr", "add", f"{self.outer_address}/{prefix}", "dev", self.outer],
            ["link", "set", self.outer, "up"],
            ["-n", self.netns, "addr", "add", f"{self.inner_address}/{prefix}", "dev", self.inner],
            ["-n", self.netns, "link", "set", self.inner, "up"],
            ["-n", self.netns, "link", "set", "lo", "up"],
        ):
            _ip(*args)

    def cut(self) -> None:
        """Drop the link: nothing passes between the namespace and the machine."""
        _ip("link", "set", self.outer, "down")

    def restore(self) -> None:
        """Bring the link back up."""
        _ip("link", "set", self.outer, "up")

    def remove(self) -> None:
        """Delete the namespace (and with it the pair); never raises."""
        subprocess.run(["ip", "netns", "del", self.netns], capture_output=True, check=False)
        subprocess.run(["ip", "link", "del", self.outer], capture_output=True, check=False)


def _ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")


def make_links(count: int) -> tuple[list[Link], str | None]:
    """Create ``count`` links on /30s of 10.213.0.0/16 that no interface uses; return them,
    or none and why, where namespaces cannot be made (not root, no ``ip``)."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        return [], "network namespaces need root and iproute2's `ip`"
    used = subprocess.run(["ip", "-o", "-4", "addr"], capture_output=True, text=True, check=False)
    taken = {ipaddress.ip_interface(m).network for m in re.findall(r"inet (\S+)", used.stdout)}
    pool = (n for n in ipaddress.IPv4Network("10.213.0.0/16").subnets(new_prefix=30))
    tag = f"{os.getpid() % 100000}"
    links: list[Link] = []
    try:
        for index in range(count):
            network = next(n for n in pool if not any(n.overlaps(t) for t in taken))
            link = Link(f"nesydet-{tag}-{index}", f"nsd{tag}o{index}", f"nsd{tag}i{index}", network)
            links.append(link)
            link.create()
    except RuntimeError as exc:
        for link in links:
            link.remove()
        return [], f"network namespaces cannot be made here: {exc}"
    return links, None


class Services:
    """The services host: PostgreSQL, Redis and S3, on its address and every link's."""

    def __init__(self, root: Path, links: Sequence[Link]) -> None:
        self.host = Host("services", SERVICES, root)
        addresses = [SERVICES, *(link.outer_address for link in links)]
        self.pg = PostgresServer(addresses, clients=[str(link.network) for link in links])
        self.redis = RedisServer(self.host.root, addresses)
        self.s3_port = free_port(SERVICES)
        self.addresses = addresses

    def start(self) -> None:
        """Start the three servers, wait for S3 and make the bucket."""
        self.pg.start()
        self.redis.start()
        s3 = self.host.spawn(
            "s3",
            [sys.executable, "-c", S3_SERVER, str(self.s3_port), *self.addresses],
            env={**os.environ, "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x"},
        )
        wait_until(
            lambda: httpx.get(f"http://{SERVICES}:{self.s3_port}/", timeout=2).status_code < 500,
            timeout=60, what="the S3 server", process=s3,
        )  # fmt: skip
        import boto3

        boto3.client(
            "s3",
            endpoint_url=f"http://{SERVICES}:{self.s3_port}",
            region_name="us-east-1",
            aws_access_key_id=S3_KEYS["NESYDET_S3_ACCESS_KEY_ID"],
            aws_secret_access_key=S3_KEYS["NESYDET_S3_SECRET_ACCESS_KEY"],
        ).create_bucket(Bucket=BUCKET)

    def s3(self) -> Any:
        """Return a boto3 client of the S3 server."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=f"http://{SERVICES}:{self.s3_port}",
            region_name="us-east-1",
            aws_access_key_id=S3_KEYS["NESYDET_S3_ACCESS_KEY_ID"],
            aws_secret_access_key=S3_KEYS["NESYDET_S3_SECRET_ACCESS_KEY"],
        )

    def env(self, via: str) -> dict[str, str]:
        """Return the settings that point a nesydet process at the services through ``via``."""
        return {
            "NESYDET_DATABASE_URL": f"postgresql+asyncpg://postgres@{via}:{self.pg.port}/test",
            "NESYDET_BROKER_URL": f"redis://{via}:{self.redis.port}/0",
            "NESYDET_REDIS_URL": f"redis://{via}:{self.redis.port}/1",
            "NESYDET_STORAGE_BACKEND": "s3",
            "NESYDET_S3_ENDPOINT_URL": f"http://{via}:{self.s3_port}",
            "NESYDET_S3_BUCKET": BUCKET,
            **S3_KEYS,
        }

    def stop(self) -> None:
        """Stop every server and delete the database."""
        self.host.stop()
        self.redis.stop()
        self.pg.remove()


@dataclass
class ApiHost:
    """``nesydet serve`` on a host of its own."""

    host: Host
    port: int

    @property
    def url(self) -> str:
        """Return the host's base URL (straight to it, not through the load balancer)."""
        return f"http://{self.host.address}:{self.port}"

    @property
    def target(self) -> str:
        """Return the ``address:port`` Prometheus scrapes."""
        return f"{self.host.address}:{self.port}"


@dataclass
class WorkerHost:
    """``nesydet worker`` (one pool process) on a host of its own, held by a gate if it has
    one, serving its own ``/metrics``."""

    host: Host
    metrics_port: int
    link: Link | None = None
    gate: Gate | None = None
    killed: list[int] = field(default_factory=list)

    @property
    def name(self) -> str:
        """Return the host's name."""
        return self.host.name

    @property
    def target(self) -> str:
        """Return the ``address:port`` of its ``/metrics`` (the Prometheus instance label)."""
        return f"{self.host.address}:{self.metrics_port}"

    @property
    def process(self) -> Process:
        """Return the ``nesydet worker`` process."""
        return self.host.processes[0]

    def pool_pids(self) -> list[int]:
        """Return the pids of its pool processes (they run the jobs)."""
        return [p for p in self.host.pids() if p != self.process.proc.pid]

    def log_records(self) -> list[dict[str, Any]]:
        """Return the JSON log records the host's processes wrote so far."""
        return json_records(self.process.log_text())


def consuming(worker: WorkerHost) -> bool:
    """Return whether the worker has connected to the broker and said it is ready (a pool
    process beats in the database even while its consumer cannot reach the broker)."""
    return any(READY.search(str(r.get("message", ""))) for r in worker.log_records())


def served_detections(worker: WorkerHost) -> float:
    """Return the ``detection_count_total`` (all classes) the worker's ``/metrics`` serves."""
    body = httpx.get(f"http://{worker.target}/metrics", timeout=5).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
        if sample.name == "detection_count_total"
    )


def json_records(text_: str) -> list[dict[str, Any]]:
    """Return the JSON objects among ``text_``'s lines (other lines are skipped)."""
    records = []
    for line in text_.splitlines():
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                records.append(json.loads(line))
    return records


@dataclass
class Monitoring(Prometheus):
    """Prometheus on the monitoring host's address, with file-based target lists."""

    address: str = MONITORING
    root: Path = Path()

    @property
    def url(self) -> str:
        """Return the base URL."""
        return f"http://{self.address}:{self.port}"

    def set_targets(self, job: str, targets: Mapping[str, str]) -> None:
        """Make ``targets`` (instance -> host name) the scrape targets of ``job``."""
        groups = [{"targets": [t], "labels": {"host": name}} for t, name in targets.items()]
        path = self.root / f"targets-{job}.json"
        staged = path.with_suffix(".tmp")
        staged.write_text(json.dumps(groups))
        staged.replace(path)  # Prometheus never reads half a file

    def up(self, instance: str) -> float | None:
        """Return the ``up`` of ``instance`` at its latest scrape (None: never scraped)."""
        return self.value(f'up{{instance="{instance}"}}')

    def scraped(self, instance: str) -> bool:
        """Return whether the latest scrape of ``instance`` succeeded."""
        return self.up(instance) == 1

    def alerts(self) -> list[dict[str, Any]]:
        """Return the alerts that are pending or firing now."""
        body = httpx.get(f"{self.url}/api/v1/alerts", timeout=5).json()
        found: list[dict[str, Any]] = body["data"]["alerts"]
        return found


PROMETHEUS_YML = """\
global:
  scrape_interval: {interval}
  scrape_timeout: {interval}
  evaluation_interval: {interval}
rule_files: [alerts.yml]
scrape_configs:
  - job_name: inference_api
    file_sd_configs: [{{files: [targets-inference_api.json], refresh_interval: {interval}}}]
  - job_name: celery_workers
    file_sd_configs: [{{files: [targets-celery_workers.json], refresh_interval: {interval}}}]
"""


def fast_alerts(source: Path) -> str:
    """Return the alerting rules of ``source`` evaluated every ``INTERVAL``, each with a
    ``for:`` of ``ALERT_FOR``."""
    rules = yaml.safe_load(source.read_text())
    for group in rules["groups"]:
        group["interval"] = INTERVAL
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = ALERT_FOR
    dumped: str = yaml.safe_dump(rules, sort_keys=False)
    return dumped


def nginx_binary() -> str:
    """Return the path of nginx, or skip (fail under ``CI=true``) without it."""
    path = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None
    )
    if path is None:
        unavailable("nginx is not installed (Debian package `nginx`)")
    assert path is not None
    return path


NGINX_MAIN = """\
daemon off;
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log info;
{user}
events {{ worker_connections 512; }}
http {{
    access_log {root}/access.log;
    client_body_temp_path {root}/temp/body;
    proxy_temp_path {root}/temp/proxy;
    fastcgi_temp_path {root}/temp/fastcgi;
    uwsgi_temp_path {root}/temp/uwsgi;
    scgi_temp_path {root}/temp/scgi;
    include {site_conf};
}}
"""


@dataclass
class LoadBalancer:
    """nginx on the load balancer host, with the checkout's site configuration."""

    host: Host
    port: int
    ca: trustme.CA

    @property
    def url(self) -> str:
        """Return the public (HTTPS) base URL."""
        return f"https://{self.host.address}:{self.port}"

    def trust(self) -> ssl.SSLContext:
        """Return a client context that trusts the load balancer's certificate (and checks
        it, as by default)."""
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        return context

    def client(self, *, timeout: float = 60) -> httpx.Client:
        """Return an HTTPS client of the service, from the client host's address."""
        transport = httpx.HTTPTransport(local_address=CLIENT, verify=self.trust())
        return httpx.Client(base_url=self.url, transport=transport, timeout=timeout)

    def log_text(self) -> str:
        """Return nginx's error log so far."""
        return (self.host.root / "error.log").read_text(errors="replace")


def start_load_balancer(root: Path, apis: Sequence[ApiHost]) -> LoadBalancer:
    """Start nginx on ``LB`` with ``deploy/nginx/nesydet.conf`` and this site's three
    includes: the API hosts, the address (and ``proxy_bind``), a certificate for it."""
    binary = nginx_binary()
    host = Host("lb", LB, root)
    conf = host.root / "conf"
    site = conf / "nesydet"
    (site / "tls").mkdir(parents=True)
    for temp in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (host.root / "temp" / temp).mkdir(parents=True)
    ca = trustme.CA()
    cert = ca.issue_cert(LB)
    cert.private_key_pem.write_to_path(str(site / "tls" / "privkey.pem"))
    cert.cert_chain_pems[0].write_to_path(str(site / "tls" / "fullchain.pem"))
    for blob in cert.cert_chain_pems[1:]:
        blob.write_to_path(str(site / "tls" / "fullchain.pem"), append=True)
    (site / "upstreams.conf").write_text(
        "".join(f"server {api.target} max_fails=2 fail_timeout=5s;\n" for api in apis)
    )
    port = free_port(LB)
    (site / "site.conf").write_text(
        f"listen {LB}:{port} ssl;\nserver_name {LB};\n"
        # Connections to the API hosts leave from this host's address, which they trust.
        f"proxy_bind {LB};\n"
    )
    # As root, nginx's workers would run as nobody, who cannot reach the test's private temp
    # dirs (where nginx keeps bodies and responses too large for memory).
    user = "user root root;" if os.geteuid() == 0 else ""
    (conf / "nginx.conf").write_text(
        NGINX_MAIN.format(root=host.root, user=user, site_conf=NGINX_CONF)
    )
    args = ["-p", f"{host.root}/", "-e", str(host.root / "error.log")]
    args += ["-c", str(conf / "nginx.conf")]
    checked = subprocess.run([binary, "-t", *args], capture_output=True, text=True, check=False)
    if checked.returncode != 0:
        raise RuntimeError(f"nginx -t refused the configuration:\n{checked.stderr}")
    process = host.spawn("nginx", [binary, *args], env=os.environ)
    lb = LoadBalancer(host, port, ca)
    wait_until(
        lambda: httpx.get(f"{lb.url}/healthz", verify=lb.trust(), timeout=2).status_code == 200,
        timeout=30, what="nginx", process=process,
    )  # fmt: skip
    return lb


def snapshot_release(root: Path) -> Path:
    """Copy the checkout's models and rules to ``root`` and return it: the release every host
    runs. Rules are reloaded when their file changes, so hosts reading the checkout itself
    would judge the same image differently from one job to the next while it is edited."""
    for part in ("models", "rules"):
        shutil.copytree(REPO / part, root / part)
    return root


def nesydet_host_env(
    root: Path, services: Services, via: str, release: Path, **extra: str
) -> dict[str, str]:
    """Return the environment of a nesydet host's processes: its state under ``root``, the
    services reached through ``via``, the models and rules of ``release``, short heartbeat
    and sweep intervals, JSON logs."""
    return nesydet_env(
        root,
        **FAST,
        **services.env(via),
        NESYDET_MODELS_DIR=str(release / "models"),
        NESYDET_RULES_DIR=str(release / "rules"),
        NESYDET_LOG_FORMAT="json",
        NESYDET_LOST_MESSAGE_AFTER_S="3",
        NESYDET_CPU_THREADS="1",
        **extra,
    )


def start_api_host(
    root: Path, name: str, address: str, services: Services, release: Path
) -> ApiHost:
    """Start ``nesydet serve`` on ``address``, trusting the load balancer only."""
    host = Host(name, address, root)
    env = nesydet_host_env(
        host.root, services, SERVICES, release, NESYDET_TRUSTED_PROXIES=f"{LB}/32"
    )
    port = free_port(address)
    process = host.spawn(
        "api", nesydet_command("serve", "--host", address, "--port", str(port)), env=env
    )
    api = ApiHost(host, port)
    wait_until(
        lambda: httpx.get(f"{api.url}/healthz", timeout=2).status_code == 200,
        timeout=90, what=f"{name} on {api.url}", process=process,
    )  # fmt: skip
    return api


def start_prometheus(root: Path) -> Monitoring:
    """Start Prometheus on the monitoring host, with no targets yet."""
    binary = prometheus_binary()
    host = Host("monitoring", MONITORING, root)
    (host.root / "prometheus.yml").write_text(PROMETHEUS_YML.format(interval=INTERVAL))
    (host.root / "alerts.yml").write_text(fast_alerts(ALERTS))
    port = free_port(MONITORING)
    process = host.spawn(
        "prometheus",
        [
            binary,
            f"--config.file={host.root / 'prometheus.yml'}",
            f"--storage.tsdb.path={host.root / 'tsdb'}",
            f"--web.listen-address={MONITORING}:{port}",
            "--log.level=warn",
        ],
        env=os.environ,
    )
    monitoring = Monitoring(process, port, "celery_workers", address=MONITORING, root=host.root)
    for job in ("inference_api", "celery_workers"):
        monitoring.set_targets(job, {})
    wait_until(
        lambda: httpx.get(f"{monitoring.url}/-/ready", timeout=2).status_code == 200,
        timeout=60, what="Prometheus", process=process,
    )  # fmt: skip
    return monitoring


@dataclass(frozen=True)
class WorkerSpec:
    """A worker host to start: its name, its namespace's link (None: a loopback address of
    the machine's namespace), and whether a gate holds its model calls."""

    name: str
    link: Link | None = None
    gated: bool = False


@dataclass
class Cluster:
    """Every host of the service, and the means to add and remove worker hosts."""

    root: Path
    services: Services
    apis: list[ApiHost]
    lb: LoadBalancer
    prometheus: Monitoring
    links: list[Link]
    links_unavailable: str | None
    release: Path
    workers: list[WorkerHost] = field(default_factory=list)
    hosts_started: int = 0

    @property
    def database_url(self) -> str:
        """Return the database's URL, as the test process reaches it."""
        return self.services.pg.url

    def query(self, sql: str, **params: Any) -> list[tuple[Any, ...]]:
        """Return the rows of ``sql`` on the service's database."""

        async def run() -> list[tuple[Any, ...]]:
            engine = create_async_engine(self.database_url)
            try:
                async with engine.connect() as conn:
                    return [tuple(r) for r in (await conn.execute(text(sql), params)).all()]
            finally:
                await engine.dispose()

        return asyncio.run(run())

    def start_workers(self, *specs: WorkerSpec) -> list[WorkerHost]:
        """Start worker hosts side by side; return them once each one consumes from the
        broker, its pool process beats and Prometheus scrapes it."""
        workers = [self._spawn_worker(spec) for spec in specs]
        self.publish_targets()
        for worker in workers:
            wait_until(
                functools.partial(self.ready, worker),
                timeout=180, what=f"{worker.name}'s pool process and consumer",
                process=worker.process,
            )  # fmt: skip
        for worker in workers:
            wait_until(
                functools.partial(self.prometheus.scraped, worker.target),
                timeout=60, what=f"Prometheus to scrape {worker.name}", process=worker.process,
            )  # fmt: skip
        return workers

    def ready(self, worker: WorkerHost) -> bool:
        """Return whether ``worker``'s pool process beats and its consumer takes tasks."""
        return self.beating(worker) and consuming(worker)

    def _spawn_worker(self, spec: WorkerSpec) -> WorkerHost:
        name, link = spec.name, spec.link
        if link is None:
            address = f"127.0.0.{WORKER_HOSTS + self.hosts_started}"
            host = Host(name, address, self.root / name)
            via, port = SERVICES, free_port(address)
        else:
            host = Host(name, link.inner_address, self.root / name, netns=link.netns)
            via, port = link.outer_address, WORKER_METRICS_PORT
        self.hosts_started += 1
        gate = Gate(host.root / "gate") if spec.gated else None
        env = nesydet_host_env(
            host.root,
            self.services,
            via,
            self.release,
            NESYDET_WORKER_METRICS_HOST=host.address,
            NESYDET_WORKER_METRICS_PORT=str(port),
            **(gate.env() if gate is not None else {}),
        )
        host.spawn("worker", nesydet_command("worker", "--concurrency", "1"), env=env)
        worker = WorkerHost(host, port, link, gate)
        self.workers.append(worker)
        return worker

    def beating(self, worker: WorkerHost) -> bool:
        """Return whether a pool process of ``worker`` has its row in the workers table."""
        pids = worker.pool_pids()
        rows = self.query("SELECT pid FROM workers")
        return any(pid in pids for (pid,) in rows)

    def worker_ids(self, worker: WorkerHost) -> set[str]:
        """Return the ids (``host:pid``) its pool processes have in the database."""
        pids = worker.pool_pids() + worker.killed
        rows = self.query("SELECT id, pid FROM workers")
        return {wid for wid, pid in rows if pid in pids}

    def publish_targets(self) -> None:
        """Give Prometheus every API host and every worker host started so far."""
        self.prometheus.set_targets(
            "inference_api", {api.target: api.host.name for api in self.apis}
        )
        self.prometheus.set_targets("celery_workers", {w.target: w.name for w in self.workers})

    def retire(self, worker: WorkerHost) -> None:
        """Stop ``worker`` (if it runs) once Prometheus has its last counts, and take it off
        Prometheus' targets."""
        if worker.host.pids():
            with contextlib.suppress(TimeoutError, httpx.HTTPError, OSError):
                self.settle(worker)
        worker.host.stop()
        self.workers.remove(worker)
        self.publish_targets()

    def settle(self, worker: WorkerHost, timeout: float = 30) -> None:
        """Wait until Prometheus holds the detection count ``worker`` serves right now."""
        wait_until(
            lambda: self.scraped_detections(worker.target) == served_detections(worker),
            timeout=timeout, what=f"Prometheus to catch up with {worker.name}",
        )  # fmt: skip

    def scraped_detections(self, instance: str | None = None) -> float:
        """Return Prometheus' sum of ``detection_count_total``, over every target or over
        ``instance``, each series at its latest sample (also of targets gone since)."""
        where = f'{{instance="{instance}"}}' if instance is not None else ""
        expr = f"sum(last_over_time(detection_count_total{where}[1h]))"
        return self.prometheus.value(expr) or 0.0

    def scraped_detections_by_host(self) -> dict[str, float]:
        """Return Prometheus' ``detection_count_total`` per host (latest samples)."""
        found = self.prometheus.query("sum by (host) (last_over_time(detection_count_total[1h]))")
        return {item["metric"].get("host", "?"): float(item["value"][1]) for item in found}

    def stored_detections(self) -> int:
        """Return how many detections the database holds."""
        [(count,)] = self.query("SELECT count(*) FROM detections")
        return int(count)

    def hosts(self) -> list[str]:
        """Return a line per host: its name, address and what runs there."""
        lines = [
            f"services {SERVICES} (+{', '.join(self.services.addresses[1:]) or 'no links'}): "
            f"postgres :{self.services.pg.port}, redis :{self.services.redis.port}, "
            f"s3 (moto) :{self.services.s3_port}",
            *(f"{a.host.name} {a.target}: nesydet serve" for a in self.apis),
            f"lb {LB}:{self.lb.port}: nginx (TLS), deploy/nginx/nesydet.conf",
            f"monitoring {MONITORING}:{self.prometheus.port}: prometheus, every {INTERVAL}",
        ]
        for w in self.workers:
            where = f" in netns {w.host.netns}" if w.host.netns else ""
            lines.append(f"{w.name} {w.target}{where}: nesydet worker, 1 pool process")
        return lines

    def stop(self) -> None:
        """Stop every host (workers first) and remove the links."""
        for worker in list(self.workers):
            with contextlib.suppress(Exception):
                worker.host.stop()
        parts: list[Host | Monitoring] = [self.prometheus, self.lb.host]
        for part in [*parts, *(a.host for a in self.apis)]:
            with contextlib.suppress(Exception):
                part.stop()
        with contextlib.suppress(Exception):
            self.services.stop()
        for link in self.links:
            link.remove()


@contextlib.contextmanager
def running_cluster(root: Path, *, links: int) -> Iterator[Cluster]:
    """Start the services, two API hosts, the load balancer and Prometheus (no worker host
    yet), with ``links`` namespaces for worker hosts where they can be made; stop it all
    afterwards, whatever happened."""
    made, why_not = make_links(links)
    try:
        services = Services(root / "services", made)
    except BaseException:  # no server binaries: skipped, or failed under CI
        for link in made:
            link.remove()
        raise
    apis: list[ApiHost] = []
    parts: list[Any] = []
    try:
        services.start()
        release = snapshot_release(root / "release")
        migrate(
            nesydet_host_env(root / "migrate", services, SERVICES, release),
            _mkdir(root / "migrate"),
        )
        for n in range(2):
            address = f"127.0.0.{API_HOSTS + n}"
            name = f"api-{n + 1}"
            apis.append(start_api_host(root / name, name, address, services, release))
        lb = start_load_balancer(root / "lb", apis)
        parts.append(lb.host)
        prometheus = start_prometheus(root / "monitoring")
        parts.append(prometheus)
        cluster = Cluster(root, services, apis, lb, prometheus, made, why_not, release)
        cluster.publish_targets()
        for api in apis:
            wait_until(
                functools.partial(prometheus.scraped, api.target),
                timeout=60, what=f"Prometheus to scrape {api.host.name}",
            )  # fmt: skip
    except BaseException:
        for part in [*parts, *(a.host for a in apis)]:
            with contextlib.suppress(Exception):
                part.stop()
        services.stop()
        for link in made:
            link.remove()
        raise
    try:
        yield cluster
    finally:
        cluster.stop()


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path

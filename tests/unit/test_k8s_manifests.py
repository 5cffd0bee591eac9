"""The Kubernetes manifests in deploy/k8s build and validate offline, and keep their promises.

Building: ``kubectl`` and ``kustomize`` are not on the CI machines, so ``build()`` resolves the
kustomizations here, with the subset of kustomize they use: ``resources`` (files and folders),
``namespace``, ``labels`` (metadata only), ``images`` and JSON 6902 ``patches``. Any other field
fails the build, so a feature this resolver does not know cannot slip in unchecked.

Validating: every object of each build, strictly (an unknown field is an error, as kubectl's
default ``--validate=strict`` makes it), with kubernetes-validate's bundled schemas for the
oldest and the newest Kubernetes versions in ``K8S_VERSIONS``. kubernetes-validate knows only
built-in kinds (a custom resource raises ``SchemaNotFoundError``), so KEDA's ScaledObject and
TriggerAuthentication are validated against the ``openAPIV3Schema`` of KEDA's own CRDs, vendored
in deploy/k8s/schemas/keda (vendor_crd_schemas.py there says from which release and how),
made strict the same way. Not checked offline: the CRDs' CEL rules
(``x-kubernetes-validations``), and whatever needs a cluster (names resolving, KEDA reaching
Redis, admission policies).
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jsonschema
import kubernetes_validate
import pytest
import yaml

from nesydet.api.routers.system import ReadinessCheck
from nesydet.broker import QUEUE
from nesydet.cli import build_parser
from nesydet.config import Settings, refusals

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
BASE = K8S / "base"
GPU = K8S / "overlays" / "gpu"
SECRET_EXAMPLE = BASE / "secret.example.yaml"
CRD_SCHEMAS = K8S / "schemas" / "keda"
# The oldest Kubernetes the manifests are meant for (deploy/k8s/README.md) and the newest that
# kubernetes-validate bundles.
K8S_VERSIONS = ("1.30", kubernetes_validate.latest_version())

Obj = dict[str, Any]
SettingsFrom = Callable[[dict[str, str]], Settings]
SUPPORTED = {"apiVersion", "kind", "resources", "namespace", "labels", "images", "patches"}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}
POD_OWNERS = {"Deployment", "Job"}


# --- a kustomize subset -------------------------------------------------------------------


def _tokens(pointer: str) -> list[str]:
    return [part.replace("~1", "/").replace("~0", "~") for part in pointer.split("/")[1:]]


def _json_patch(target: Obj, operations: list[Obj]) -> None:
    """Apply RFC 6902 ``add``, ``replace`` and ``remove`` operations to ``target`` in place."""
    for operation in operations:
        *parents, last = _tokens(operation["path"])
        node: Any = target
        for token in parents:
            node = node[int(token)] if isinstance(node, list) else node[token]
        op = operation["op"]
        value = copy.deepcopy(operation.get("value"))
        if isinstance(node, list):
            index = len(node) if last == "-" else int(last)
            if op == "add":
                node.insert(index, value)
            elif op == "replace":
                node[index] = value
            elif op == "remove":
                del node[index]
            else:
                raise AssertionError(f"unsupported patch op {op}")
        elif op == "add" or (op == "replace" and last in node):
            node[last] = value
        elif op == "remove":
            del node[last]
        else:
            raise AssertionError(f"cannot {op} {operation['path']}")


def _matches(obj: Obj, target: Obj) -> bool:
    group, _, version = obj["apiVersion"].rpartition("/")
    wanted = {"group": group, "version": version, "kind": obj["kind"]}
    wanted["name"] = obj["metadata"]["name"]
    return all(wanted[key] == value for key, value in target.items())


def _walk_containers(node: Any) -> Iterator[Obj]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in {"containers", "initContainers"} and isinstance(value, list):
                yield from value
            else:
                yield from _walk_containers(value)
    elif isinstance(node, list):
        for item in node:
            yield from _walk_containers(item)


def _image_name(image: str) -> str:
    image = image.split("@", 1)[0]
    head, _, tail = image.rpartition(":")
    return head if head and "/" not in tail else image


def _resources(folder: Path, entries: list[str]) -> list[Obj]:
    objects: list[Obj] = []
    for entry in entries:
        path = (folder / entry).resolve()
        if path.is_dir():
            objects += build(path)
        else:
            objects += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return objects


def _patch(objects: list[Obj], folder: Path, patch: Obj) -> None:
    text = patch["patch"] if "patch" in patch else (folder / patch["path"]).read_text()
    operations = yaml.safe_load(text)
    assert isinstance(operations, list), "only JSON 6902 patches are supported"
    hits = [obj for obj in objects if _matches(obj, patch["target"])]
    assert hits, f"patch target {patch['target']} matches nothing"
    for obj in hits:
        _json_patch(obj, operations)


def _label(objects: list[Obj], label: Obj) -> None:
    # Only labels on metadata: selectors are immutable, and templates carry their own.
    assert label.get("includeSelectors") is False
    assert not label.get("includeTemplates")
    for obj in objects:
        obj["metadata"].setdefault("labels", {}).update(label["pairs"])


def _set_image(objects: list[Obj], image: Obj) -> None:
    for container in _walk_containers(objects):
        if _image_name(container["image"]) == image["name"]:
            name = str(image.get("newName", image["name"]))
            tag = f"@{image['digest']}" if "digest" in image else f":{image['newTag']}"
            container["image"] = name + tag


def build(folder: Path) -> list[Obj]:
    """Return the objects ``kubectl kustomize folder`` gives, for the supported subset."""
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    unsupported = set(kustomization) - SUPPORTED
    assert not unsupported, f"{folder}: the test's kustomize subset lacks {unsupported}"
    objects = _resources(folder, kustomization.get("resources", []))
    for patch in kustomization.get("patches", []):
        _patch(objects, folder, patch)
    if "namespace" in kustomization:
        for obj in objects:
            if obj["kind"] not in CLUSTER_SCOPED:
                obj["metadata"]["namespace"] = kustomization["namespace"]
    for label in kustomization.get("labels", []):
        _label(objects, label)
    for image in kustomization.get("images", []):
        _set_image(objects, image)
    return objects


# --- reading the objects -------------------------------------------------------------------


def one(objects: list[Obj], kind: str, name: str | None = None) -> Obj:
    """Return the single object of ``kind`` (and ``name``)."""
    found = [o for o in objects if o["kind"] == kind and name in {None, o["metadata"]["name"]}]
    assert len(found) == 1, f"{kind} {name}: {len(found)} found"
    return found[0]


def pod_spec(obj: Obj) -> Obj:
    """Return the pod spec of a workload."""
    spec: Obj = obj["spec"]["template"]["spec"]
    return spec


def workloads(objects: list[Obj]) -> list[Obj]:
    """Return the objects that run pods."""
    return [obj for obj in objects if obj["kind"] in POD_OWNERS]


def command_of(objects: list[Obj], command: str) -> Obj:
    """Return the workload whose container runs ``nesydet <command>``."""
    found = [w for w in workloads(objects) if pod_spec(w)["containers"][0]["command"][1] == command]
    assert len(found) == 1, command
    return found[0]


def secret_example() -> Obj:
    """Return the Secret template."""
    secret: Obj = yaml.safe_load(SECRET_EXAMPLE.read_text())
    return secret


def image_env() -> dict[str, str]:
    """Return the variables the Dockerfile's runtime stage sets (``NAME=value``)."""
    runtime = (REPO / "Dockerfile").read_text().split(" AS runtime", 1)[1]
    block = runtime.split("\nENV ", 1)[1].split("\n\n", 1)[0]
    return dict(re.findall(r"\b([A-Z][A-Z0-9_]*)=(\S+)", block))


def container_env(objects: list[Obj], container: Obj, secret: Obj) -> dict[str, str]:
    """Return the environment a container gets: the image's, its ConfigMaps', its own."""
    env = {key: value for key, value in image_env().items() if key.startswith("NESYDET_")}
    for source in container.get("envFrom", []):
        env.update(one(objects, "ConfigMap", source["configMapRef"]["name"])["data"])
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
        else:
            env[item["name"]] = secret["stringData"][item["valueFrom"]["secretKeyRef"]["key"]]
    return env


@pytest.fixture
def settings_from(monkeypatch: pytest.MonkeyPatch) -> SettingsFrom:
    """Return a function that reads Settings from exactly that environment, as a pod does."""

    def read(env: dict[str, str]) -> Settings:
        for name in [name for name in os.environ if name.startswith("NESYDET_")]:
            monkeypatch.delenv(name)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        return Settings(_env_file=None)

    return read


def strict(schema: Any) -> Any:
    """Return a CRD schema that rejects unknown fields, as the API server's strict validation
    does (objects that preserve unknown fields or declare additionalProperties stay open)."""
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    closed = {key: strict(value) for key, value in schema.items()}
    if (
        "properties" in schema
        and "additionalProperties" not in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        closed["additionalProperties"] = False
    return closed


def validate(obj: Obj) -> None:
    """Validate one object strictly: built-in kinds for every version checked, KEDA's against
    its CRD schema; raises on the first error."""
    group = obj["apiVersion"].rpartition("/")[0]
    if group == "keda.sh":
        version = obj["apiVersion"].rpartition("/")[2]
        path = CRD_SCHEMAS / f"{obj['kind'].lower()}-keda-{version}.json"
        jsonschema.Draft202012Validator(strict(json.loads(path.read_text()))).validate(obj)
        return
    for version in K8S_VERSIONS:
        kubernetes_validate.validate(obj, version, strict=True)


BUILDS = {"base": BASE, "gpu": GPU}


@pytest.fixture(scope="module", params=sorted(BUILDS))
def folder(request: pytest.FixtureRequest) -> Path:
    """Return one kustomization's folder: the base, then each overlay."""
    return BUILDS[request.param]


@pytest.fixture(scope="module")
def objects(folder: Path) -> list[Obj]:
    """Return the objects that kustomization builds."""
    return build(folder)


def _kustomize() -> list[str] | None:
    """Return a kustomize command line of version 5 or later on this machine, or None."""
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    if shutil.which("kubectl"):
        version = subprocess.run(
            ["kubectl", "version", "--client"], capture_output=True, text=True, timeout=60
        ).stdout
        found = re.search(r"Kustomize Version: v(\d+)", version)
        if found and int(found[1]) >= 5:
            return ["kubectl", "kustomize"]
    return None


def test_the_subset_builds_what_kustomize_builds(folder: Path, objects: list[Obj]) -> None:
    """Where kustomize is installed (not on CI), the subset above must agree with it."""
    command = _kustomize()
    if command is None:
        pytest.skip("no kustomize v5 here (kustomize, or kubectl kustomize)")
    out = subprocess.run([*command, str(folder)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    real = [doc for doc in yaml.safe_load_all(out.stdout) if doc]

    def canonical(items: list[Obj]) -> list[str]:
        return sorted(json.dumps(item, sort_keys=True) for item in items)

    assert canonical(objects) == canonical(real)


# --- schemas ---------------------------------------------------------------------------------


def test_every_object_validates_strictly(objects: list[Obj]) -> None:
    for obj in objects:
        try:
            validate(obj)
        except jsonschema.ValidationError as exc:  # kubernetes-validate's error is a subclass
            where = ".".join(str(part) for part in exc.absolute_path)
            pytest.fail(f"{obj['kind']}/{obj['metadata']['name']}: {where}: {exc.message}")
    assert {"ScaledObject", "TriggerAuthentication"} <= {obj["kind"] for obj in objects}


def test_the_secret_template_validates() -> None:
    validate(secret_example())


def test_validation_rejects_a_misspelt_field() -> None:
    objects = build(BASE)
    deployment = copy.deepcopy(one(objects, "Deployment", "nesydet-api"))
    pod_spec(deployment)["containers"][0]["readinesProbe"] = {}
    with pytest.raises(jsonschema.ValidationError):
        validate(deployment)
    scaled = copy.deepcopy(one(objects, "ScaledObject"))
    scaled["spec"]["minReplicas"] = 1
    with pytest.raises(jsonschema.ValidationError):
        validate(scaled)
    scaled = copy.deepcopy(one(objects, "ScaledObject"))
    scaled["spec"]["triggers"][0]["metadata"]["listLength"] = 3  # metadata values are strings
    with pytest.raises(jsonschema.ValidationError):
        validate(scaled)


# --- settings --------------------------------------------------------------------------------


def test_every_setting_named_in_deploy_k8s_exists() -> None:
    fields = set(Settings.model_fields)
    for path in sorted(K8S.rglob("*")):
        if path.suffix in {".yaml", ".md"}:
            for name in re.findall(r"\bNESYDET_[A-Z0-9_]+", path.read_text()):
                assert name.removeprefix("NESYDET_").lower() in fields, f"{path.name}: {name}"


def test_containers_get_only_settings_and_the_secret_has_their_keys(objects: list[Obj]) -> None:
    fields = set(Settings.model_fields)
    secret = secret_example()
    for workload in workloads(objects):
        for container in pod_spec(workload)["containers"]:
            env = container_env(objects, container, secret)
            unknown = {n for n in env if n.removeprefix("NESYDET_").lower() not in fields}
            assert not unknown, f"{workload['metadata']['name']}: {unknown}"
            for item in container.get("env", []):
                if "valueFrom" in item:
                    ref = item["valueFrom"]["secretKeyRef"]
                    assert ref["name"] == secret["metadata"]["name"]
                    assert ref["key"] in secret["stringData"]


def test_the_configmap_makes_a_production_service_with_real_secrets(
    settings_from: SettingsFrom,
) -> None:
    objects = build(BASE)
    secret = secret_example()
    for command, host in (("serve", "0.0.0.0"), ("worker", None), ("webhook-worker", None)):  # noqa: S104
        container = pod_spec(command_of(objects, command))["containers"][0]
        env = container_env(objects, container, secret)
        # As committed, the template's placeholders are refused in production ...
        as_is = settings_from(env)
        assert as_is.env == "production"
        assert as_is.auth_mode == "required"
        assert refusals(as_is, host=host)
        # ... and with real values the process may start.
        real = {key: value.replace("change-me", "Q7f2" * 12) for key, value in env.items()}
        assert refusals(settings_from(real), host=host) == []
    # The migration needs the database alone.
    migrate = pod_spec(command_of(objects, "migrate"))["containers"][0]
    env = container_env(objects, migrate, secret)
    assert settings_from(env).database_url.startswith("postgresql+asyncpg://")


def test_each_process_gets_only_the_secrets_it_uses() -> None:
    objects = build(BASE)
    needs = {
        "serve": set(secret_example()["stringData"]) - {"REDIS_PASSWORD"},
        "worker": set(secret_example()["stringData"]) - {"REDIS_PASSWORD", "NESYDET_JWT_SECRET"},
        "migrate": {"NESYDET_DATABASE_URL"},
        "webhook-worker": {"NESYDET_DATABASE_URL", "NESYDET_BROKER_URL", "NESYDET_REDIS_URL"},
    }
    for command, keys in needs.items():
        container = pod_spec(command_of(objects, command))["containers"][0]
        refs = [
            item["valueFrom"]["secretKeyRef"] for item in container["env"] if "valueFrom" in item
        ]
        assert {ref["key"] for ref in refs} == keys, command


def test_commands_parse_with_the_cli(objects: list[Obj]) -> None:
    parser = build_parser()
    for workload in workloads(objects):
        for container in pod_spec(workload)["containers"]:
            command = container["command"]
            assert command[0] == "nesydet"
            parser.parse_args(command[1:])


# --- pods ------------------------------------------------------------------------------------


def test_every_container_has_resources_and_runs_unprivileged(objects: list[Obj]) -> None:
    # The "restricted" Pod Security Standard, which the namespace enforces.
    labels = one(objects, "Namespace")["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    for workload in workloads(objects):
        spec = pod_spec(workload)
        pod_security = spec["securityContext"]
        assert pod_security["runAsNonRoot"] is True
        assert pod_security["runAsUser"] == 10001  # the image's nesydet user
        assert pod_security["seccompProfile"] == {"type": "RuntimeDefault"}
        assert spec["automountServiceAccountToken"] is False
        for container in spec["containers"]:
            for part in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][part]), container["name"]
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False
            assert security["readOnlyRootFilesystem"] is True
            assert security["capabilities"]["drop"] == ["ALL"]


def test_whatever_the_processes_write_is_a_volume(objects: list[Obj]) -> None:
    image = image_env()
    metrics_dir = one(objects, "ConfigMap", "nesydet")["data"]["NESYDET_METRICS_DIR"]
    service = ["/tmp", image["NESYDET_VAR_DIR"], metrics_dir]
    service += [image["YOLO_CONFIG_DIR"], image["MPLCONFIGDIR"]]
    writable = {
        "api": service,
        "worker": service,
        "migrate": ["/tmp"],
        "webhook-worker": ["/tmp", image["NESYDET_VAR_DIR"]],
    }
    for workload in workloads(objects):
        spec = pod_spec(workload)
        volumes = {volume["name"] for volume in spec["volumes"]}
        for container in spec["containers"]:
            mounts = [mount["mountPath"] for mount in container["volumeMounts"]]
            assert {mount["name"] for mount in container["volumeMounts"]} <= volumes
            for path in writable[container["name"]]:
                on_volume = any(Path(path).is_relative_to(mount) for mount in mounts)
                assert on_volume, f"{container['name']}: {path} is on the read-only root"


def test_the_api_is_probed_served_and_scaled(objects: list[Obj]) -> None:
    api = command_of(objects, "serve")
    container = pod_spec(api)["containers"][0]
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    for probe, path in (("startupProbe", "/healthz"), ("livenessProbe", "/healthz"),
                        ("readinessProbe", "/readyz")):  # fmt: skip
        assert urlsplit(container[probe]["httpGet"]["path"]).path == path
        assert container[probe]["httpGet"]["port"] in ports
    # Readiness asks for what serving needs: a broker outage must not empty the Service.
    query = parse_qs(urlsplit(container["readinessProbe"]["httpGet"]["path"]).query)
    assert set(query["require"]) == {ReadinessCheck.DATABASE, ReadinessCheck.STORAGE}
    assert str(ports["http"]) == container["command"][container["command"].index("--port") + 1]
    annotations = api["spec"]["template"]["metadata"]["annotations"]
    assert int(annotations["prometheus.io/port"]) == ports["http"]
    service = one(objects, "Service", "nesydet-api")
    assert service["spec"]["ports"][0]["targetPort"] in ports
    hpa = one(objects, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1", "kind": "Deployment", "name": api["metadata"]["name"]
    }  # fmt: skip
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    assert "replicas" not in api["spec"]  # the autoscaler owns the count


def test_selectors_select_existing_pods(objects: list[Obj]) -> None:
    templates = [w["spec"]["template"]["metadata"]["labels"] for w in workloads(objects)]
    for obj in objects:
        if obj["kind"] in {"PodDisruptionBudget", "Deployment"}:
            selector = obj["spec"]["selector"]["matchLabels"]
        elif obj["kind"] == "Service":
            selector = obj["spec"]["selector"]
        else:
            continue
        matched = [labels for labels in templates if selector.items() <= labels.items()]
        assert len(matched) == 1, f"{obj['kind']}/{obj['metadata']['name']} selects {matched}"
    pdbs = {o["metadata"]["name"] for o in objects if o["kind"] == "PodDisruptionBudget"}
    assert pdbs == {"nesydet-api", "nesydet-worker", "nesydet-webhook-worker"}


def test_the_workers_grace_period_outlasts_a_warm_shutdown(settings_from: SettingsFrom) -> None:
    for folder in BUILDS.values():
        objects = build(folder)
        worker = command_of(objects, "worker")
        container = pod_spec(worker)["containers"][0]
        settings = settings_from(container_env(objects, container, secret_example()))
        # Celery's warm shutdown waits for the running job, which cannot outlive its hard
        # time limit; the longest job covers a whole upload.
        warm_shutdown = settings.job_time_limit_s(settings.max_files_per_upload)
        grace = pod_spec(worker)["terminationGracePeriodSeconds"]
        assert grace >= warm_shutdown + 60, (grace, warm_shutdown)
        assert "replicas" not in worker["spec"]  # KEDA owns the count
        metrics_port = next(p for p in container["ports"] if p["name"] == "metrics")
        assert metrics_port["containerPort"] == settings.worker_metrics_port
        assert settings.worker_metrics_host == "0.0.0.0"  # noqa: S104
        annotations = worker["spec"]["template"]["metadata"]["annotations"]
        assert int(annotations["prometheus.io/port"]) == settings.worker_metrics_port


def test_the_migrate_job_runs_once_and_goes() -> None:
    job = command_of(build(BASE), "migrate")
    assert job["kind"] == "Job"
    assert job["spec"]["backoffLimit"] >= 1
    assert job["spec"]["ttlSecondsAfterFinished"] > 0
    assert pod_spec(job)["restartPolicy"] == "Never"


# --- KEDA ------------------------------------------------------------------------------------


def _list_length() -> int:
    """Return listLength as the formula in worker-autoscaling.yaml's comment computes it."""
    text = (BASE / "worker-autoscaling.yaml").read_text()
    figures: dict[str, float] = {}
    for name in ("images_per_hour_per_replica", "images_per_job", "target_wait_s"):
        found = re.search(rf"#\s+{name} = ([\d.]+)\n", text)
        assert found, f"worker-autoscaling.yaml no longer states {name}"
        figures[name] = float(found[1])
    jobs_per_second = figures["images_per_hour_per_replica"] / 3600 / figures["images_per_job"]
    return max(1, math.floor(jobs_per_second * figures["target_wait_s"]))


def test_the_scaled_object_scales_the_workers_on_the_inference_list(objects: list[Obj]) -> None:
    scaled = one(objects, "ScaledObject")
    worker = command_of(objects, "worker")
    assert scaled["spec"]["scaleTargetRef"]["name"] == worker["metadata"]["name"]
    assert scaled["spec"]["scaleTargetRef"]["kind"] == worker["kind"]
    assert scaled["spec"]["minReplicaCount"] <= scaled["spec"]["maxReplicaCount"]
    triggers = {trigger["name"]: trigger for trigger in scaled["spec"]["triggers"]}
    assert triggers["queued"]["metadata"]["listName"] == QUEUE
    assert triggers["running"]["metadata"]["listName"] == "unacked"  # kombu's held messages
    broker = urlsplit(secret_example()["stringData"]["NESYDET_BROKER_URL"])
    namespace = scaled["metadata"]["namespace"]
    auth_names = {o["metadata"]["name"] for o in objects if o["kind"] == "TriggerAuthentication"}
    for trigger in triggers.values():
        assert trigger["type"] == "redis"
        # KEDA runs in its own namespace: the broker's Service, qualified with this one.
        assert trigger["metadata"]["address"] == f"{broker.hostname}.{namespace}.svc:{broker.port}"
        assert trigger["metadata"]["databaseIndex"] == broker.path.strip("/")
        assert trigger["authenticationRef"]["name"] in auth_names


def test_the_scaling_target_follows_its_formula() -> None:
    scaled = one(build(BASE), "ScaledObject")
    length = _list_length()
    modifiers = scaled["spec"]["advanced"]["scalingModifiers"]
    assert modifiers["formula"] == f"running + queued / {length}"
    assert modifiers["target"] == "1"  # the formula gives replicas
    queued = next(t for t in scaled["spec"]["triggers"] if t["name"] == "queued")
    assert queued["metadata"]["listLength"] == str(length)


def test_the_trigger_authentication_reads_the_redis_password_of_the_secret() -> None:
    auth = one(build(BASE), "TriggerAuthentication")
    secret = secret_example()
    [ref] = auth["spec"]["secretTargetRef"]
    assert ref["parameter"] == "password"
    assert ref["name"] == secret["metadata"]["name"]
    password = secret["stringData"][ref["key"]]
    for key in ("NESYDET_BROKER_URL", "NESYDET_REDIS_URL"):
        assert urlsplit(secret["stringData"][key]).password == password


# --- the GPU overlay -------------------------------------------------------------------------


def test_the_gpu_overlay_gives_each_worker_a_gpu_and_scales_to_zero() -> None:
    objects = build(GPU)
    worker = pod_spec(command_of(objects, "worker"))
    container = worker["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert {"name": "NESYDET_DEVICE", "value": "cuda:0"} in container["env"]
    assert any(t["key"] == "nvidia.com/gpu" for t in worker["tolerations"])
    assert one(objects, "ScaledObject")["spec"]["minReplicaCount"] == 0
    api = pod_spec(command_of(objects, "serve"))["containers"][0]
    assert "nvidia.com/gpu" not in api["resources"]["limits"]

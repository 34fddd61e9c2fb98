"""The deployment files: ``conf/speaker.service`` and ``conf/kubernetes/*.yaml``.

The unit is checked by ``systemd-analyze verify`` (skipped outside CI when it is not
installed; under CI=true its absence fails).

The Kubernetes manifests get a *structural* check written here, not a schema
validation: kubeconform is not packaged in Debian bookworm and the OpenAPI schemas
are not available offline.  The check covers what Kubernetes requires of these
objects and what makes them fit together: apiVersion/kind/metadata.name, namespaces,
the DaemonSet's selector against its template labels, containers with name and
image, every volume mount naming a volume, every ConfigMap/Secret key a volume
projects existing, the ServiceAccount, the capabilities; and the embedded
``speaker.toml`` loads with the speaker's own loader, reading its password file from
the Secret where the DaemonSet mounts it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from speaker.config import build_config
from tests.helpers import IN_CI

ROOT = Path(__file__).parent.parent
UNIT = ROOT / "conf" / "speaker.service"
KUBERNETES = ROOT / "conf" / "kubernetes"
NAMESPACE = "speaker-system"

# ---- systemd --------------------------------------------------------------------------------


def _unit_directives() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            out.setdefault(key, []).append(value)
    return out


def test_systemd_unit_verifies(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        if IN_CI:
            pytest.fail("CI=true and systemd-analyze is missing (apt-get install systemd)")
        pytest.skip("systemd-analyze is not installed (apt-get install systemd)")
    # ExecStart must name an existing executable: the venv's speaker script.
    speaker = Path(sys.executable).parent / "speaker"
    assert speaker.exists(), speaker
    unit = tmp_path / "speaker.service"
    unit.write_text(UNIT.read_text().replace("/usr/local/bin/speaker", str(speaker)))
    done = subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60, check=False
    )
    output = (done.stdout + done.stderr).strip()
    assert done.returncode == 0, output
    assert not [line for line in output.splitlines() if "speaker.service" in line], output


def test_systemd_unit_directives() -> None:
    d = _unit_directives()
    assert d["Type"] == ["notify"]
    assert d["ExecStart"] == ["/usr/local/bin/speaker run -c /etc/speaker/speaker.toml"]
    assert d["ExecReload"][-1] == "/bin/kill -HUP $MAINPID"
    assert d["KillSignal"] == ["SIGTERM"] and d["TimeoutStopSec"] == ["5"]
    assert d["Restart"] == ["on-failure"]
    assert d["User"] == ["speaker"] and "DynamicUser" not in d
    assert d["StateDirectory"] == ["speaker"]
    caps = {"CAP_NET_BIND_SERVICE", "CAP_NET_RAW"}
    assert set(d["CapabilityBoundingSet"][0].split()) == caps
    assert set(d["AmbientCapabilities"][0].split()) == caps
    assert d["NoNewPrivileges"] == ["yes"]
    assert d["ProtectSystem"] == ["strict"] and d["ProtectHome"] == ["yes"]
    assert d["PrivateTmp"] == ["yes"]
    assert set(d["RestrictAddressFamilies"][0].split()) == {
        "AF_INET",
        "AF_INET6",
        "AF_UNIX",
        "AF_NETLINK",
        "AF_PACKET",
    }
    assert "ProcSubset" not in d  # /proc/net/arp must stay readable (BFD echo)
    assert d["RuntimeDirectory"] == ["speaker"]  # /run/speaker: the control socket


# ---- Kubernetes: loading ---------------------------------------------------------------------

API_VERSIONS = {
    "Namespace": "v1",
    "ServiceAccount": "v1",
    "ConfigMap": "v1",
    "Secret": "v1",
    "DaemonSet": "apps/v1",
}
DNS_1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
DNS_1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
IANA_SVC_NAME = re.compile(r"^(?=.{1,15}$)(?=.*[a-z])[a-z0-9]+(-[a-z0-9]+)*$")


def _documents() -> Iterator[tuple[Path, dict[str, Any]]]:
    for file in sorted(KUBERNETES.glob("*.yaml")):
        for document in yaml.safe_load_all(file.read_text()):
            if document is not None:
                yield file, document


@pytest.fixture(scope="module")
def objects() -> dict[tuple[str, str], dict[str, Any]]:
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for file, document in _documents():
        key = (document["kind"], document["metadata"]["name"])
        assert key not in out, f"{file}: {key} defined twice"
        out[key] = document
    return out


def _one(objects: Mapping[tuple[str, str], dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [o for (k, _), o in objects.items() if k == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def test_every_object_is_well_formed() -> None:
    seen = 0
    for file, document in _documents():
        seen += 1
        where = f"{file.name}: {document.get('kind')}"
        assert set(document) >= {"apiVersion", "kind", "metadata"}, where
        kind = document["kind"]
        assert kind in API_VERSIONS, f"{where}: unexpected kind"
        assert document["apiVersion"] == API_VERSIONS[kind], where
        metadata = document["metadata"]
        assert DNS_1123_SUBDOMAIN.match(metadata["name"]), where
        if kind == "Namespace":
            assert metadata["name"] == NAMESPACE
            assert metadata["labels"]["pod-security.kubernetes.io/enforce"] == "privileged"
        else:
            assert metadata.get("namespace") == NAMESPACE, where
        for key, value in metadata.get("labels", {}).items():
            assert isinstance(key, str) and isinstance(value, str), (where, key)
    assert seen == 5


# ---- Kubernetes: the DaemonSet --------------------------------------------------------------


def test_daemonset_structure(objects: dict[tuple[str, str], dict[str, Any]]) -> None:
    daemonset = _one(objects, "DaemonSet")
    spec = daemonset["spec"]
    template = spec["template"]
    labels = template["metadata"]["labels"]
    selector = spec["selector"]["matchLabels"]
    assert selector and all(labels.get(k) == v for k, v in selector.items())
    pod = template["spec"]
    assert pod["hostNetwork"] is True
    assert pod["dnsPolicy"] == "ClusterFirstWithHostNet"
    assert pod["terminationGracePeriodSeconds"] == 5
    assert ("ServiceAccount", pod["serviceAccountName"]) in objects

    containers = pod["containers"]
    names = [c["name"] for c in containers]
    assert len(set(names)) == len(names)
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert len(volumes) == len(pod["volumes"]), "duplicate volume names"
    for container in containers:
        assert DNS_1123_LABEL.match(container["name"])
        assert container["image"]
        mounts = container.get("volumeMounts", [])
        for mount in mounts:
            assert mount["name"] in volumes, f"mount of undefined volume {mount['name']}"
            assert mount["mountPath"].startswith("/")
        paths = [m["mountPath"] for m in mounts]
        assert len(set(paths)) == len(paths)
        for port in container.get("ports", []):
            assert IANA_SVC_NAME.match(port["name"]), port
            assert 1 <= port["containerPort"] <= 65535
            assert port["protocol"] in ("TCP", "UDP", "SCTP")
        for env in container.get("env", []):
            assert ("value" in env) != ("valueFrom" in env), env

    speaker = next(c for c in containers if c["name"] == "speaker")
    env = {e["name"]: e for e in speaker["env"]}
    assert env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    security = speaker["securityContext"]
    assert security["capabilities"]["drop"] == ["ALL"]
    assert set(security["capabilities"]["add"]) == {"NET_RAW", "NET_BIND_SERVICE"}
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    probe = speaker["readinessProbe"]["exec"]["command"]
    assert probe[:2] == ["speaker", "check"]
    liveness = speaker["livenessProbe"]["httpGet"]
    assert liveness["path"] == "/metrics"
    assert liveness["port"] in [p["name"] for p in speaker["ports"]]

    # the pod's labels, through the downward API
    downward = [v for v in volumes.values() if "downwardAPI" in v]
    assert any(
        item["fieldRef"]["fieldPath"] == "metadata.labels"
        for v in downward
        for item in v["downwardAPI"]["items"]
    )
    # every ConfigMap/Secret a volume projects exists, with the keys it asks for
    for volume in volumes.values():
        for kind, source in _sources(volume):
            ref = objects.get((kind, source["name"]))
            assert ref is not None, f"volume {volume['name']}: no {kind} {source['name']}"
            data = {**ref.get("data", {}), **ref.get("stringData", {})}
            for item in source.get("items", []):
                assert item["key"] in data, f"{kind} {source['name']} has no key {item['key']}"
                assert not PurePosixPath(item["path"]).is_absolute()
                assert ".." not in PurePosixPath(item["path"]).parts


def _sources(volume: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    if "configMap" in volume:
        yield "ConfigMap", volume["configMap"]
    if "secret" in volume:
        yield "Secret", {"name": volume["secret"]["secretName"], **volume["secret"]}
    for source in volume.get("projected", {}).get("sources", []):
        if "configMap" in source:
            yield "ConfigMap", source["configMap"]
        if "secret" in source:
            yield "Secret", source["secret"]


def _mounted_files(
    objects: Mapping[tuple[str, str], dict[str, Any]], container: str = "speaker"
) -> dict[str, str]:
    """The files the container sees from its ConfigMap and Secret volumes."""
    pod = _one(objects, "DaemonSet")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    spec = next(c for c in pod["containers"] if c["name"] == container)
    files: dict[str, str] = {}
    for mount in spec["volumeMounts"]:
        for kind, source in _sources(volumes[mount["name"]]):
            ref = objects[(kind, source["name"])]
            data = {**ref.get("data", {}), **ref.get("stringData", {})}
            items = source.get("items") or [{"key": k, "path": k} for k in data]
            for item in items:
                files[str(PurePosixPath(mount["mountPath"]) / item["path"])] = data[item["key"]]
    return files


def test_configmap_configuration_loads_with_its_mounted_secret(
    objects: dict[tuple[str, str], dict[str, Any]],
) -> None:
    files = _mounted_files(objects)
    speaker = _one(objects, "DaemonSet")["spec"]["template"]["spec"]["containers"][0]
    argv = [*speaker["command"], *speaker["args"]]
    config_path = argv[argv.index("-c") + 1]
    assert config_path in files, f"{config_path} is not mounted ({sorted(files)})"
    probe = speaker["readinessProbe"]["exec"]["command"]
    assert probe[probe.index("-c") + 1] == config_path

    read: list[str] = []

    def read_text(path: Path) -> str:
        read.append(str(path))
        try:
            return files[str(path)]
        except KeyError:
            raise FileNotFoundError(2, "No such file or directory", str(path)) from None

    config = build_config(
        tomllib.loads(files[config_path]),
        base_dir=Path(config_path).parent,
        read_text=read_text,
    )
    assert config.peers and config.pools and config.advertisements and config.services
    assert read == ["/etc/speaker/secrets/bgp-password/password"] * len(config.peers)
    secret = _one(objects, "Secret")
    assert all(p.password == secret["stringData"]["password"] for p in config.peers)
    assert config.warnings == ()
    # the state file is on the hostPath volume, so assignments survive restarts
    pod = _one(objects, "DaemonSet")["spec"]["template"]["spec"]
    state = next(m for m in speaker["volumeMounts"] if m["name"] == "state")
    assert config.speaker.state_file.parent == Path(state["mountPath"])
    assert any(v["name"] == "state" and "hostPath" in v for v in pod["volumes"])
    # node_selectors match the labels written for this node group
    assert config.local_peers == config.peers
    # the control socket's directory is writable (the root file system is not)
    run = next(m for m in speaker["volumeMounts"] if m["name"] == "run")
    assert config.control.socket.parent == Path(run["mountPath"])
    # the liveness probe reaches the metrics endpoint: the kubelet probes the node's
    # address (host network), so the endpoint must listen there, on the probed port
    port = next(p for p in speaker["ports"] if p["name"] == "metrics")["containerPort"]
    assert config.metrics.enabled
    assert config.metrics.host_port == ("0.0.0.0", port)

"""Reading manifests: YAML text -> objects -> MetalLB objects of the kinds converted."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
import yaml

from speaker.config.describe import show
from speaker.metallb.report import ImportOptions, Origin, Report, line

__all__ = ["API_VERSIONS", "SKIPPED_METALLB_KINDS", "Manifest", "read_documents", "read_manifest"]

#: The kinds converted, and the apiVersions MetalLB serves for each.
API_VERSIONS: dict[str, tuple[str, ...]] = {
    "BFDProfile": ("metallb.io/v1beta1",),
    "BGPPeer": ("metallb.io/v1beta1", "metallb.io/v1beta2"),
    "IPAddressPool": ("metallb.io/v1beta1",),
    "BGPAdvertisement": ("metallb.io/v1beta1",),
    "Community": ("metallb.io/v1beta1",),
}

#: Other MetalLB kinds: why they are skipped.
SKIPPED_METALLB_KINDS: dict[str, str] = {
    "L2Advertisement": "L2 mode (ARP/NDP) is not supported; the speaker announces over BGP only",
    "AddressPool": (
        "the legacy AddressPool was removed in MetalLB 0.14; convert it to an IPAddressPool"
        " and a BGPAdvertisement first"
    ),
    "ServiceL2Status": "status only",
    "ServiceBGPStatus": "status only",
    "ConfigurationState": "status only",
}


@attrs.frozen
class Manifest:
    """One MetalLB object, as read."""

    origin: Origin
    api_version: str
    kind: str
    name: str
    namespace: str | None
    labels: Mapping[str, str]
    spec: Mapping[str, Any]

    @property
    def version(self) -> str:
        return self.api_version.rpartition("/")[2]


def read_documents(
    text: str, file: str, report: Report
) -> list[tuple[Origin, Mapping[str, Any]]] | None:
    """Every object of a (multi-document) YAML text, ``kind: List`` flattened."""
    try:
        documents = list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        report.error(file, None, f"{where}YAML error: {problem}")
        return None
    out: list[tuple[Origin, Mapping[str, Any]]] = []
    for number, document in enumerate(documents, start=1):
        origin = Origin(file, number)
        if document is None:
            continue  # an empty document (a stray "---")
        if not isinstance(document, dict):
            report.error(origin, None, "not a Kubernetes object (expected a mapping)")
            continue
        if document.get("kind") == "List" and "items" in document:
            items = document["items"]
            if not isinstance(items, list):
                report.error(origin, "items", "expected a list of objects")
                continue
            for index, item in enumerate(items, start=1):
                item_origin = Origin(file, number, index)
                if not isinstance(item, dict):
                    report.error(item_origin, None, "not a Kubernetes object (expected a mapping)")
                    continue
                out.append((item_origin, item))
            continue
        out.append((origin, document))
    return out


def read_manifest(
    origin: Origin,
    document: Mapping[str, Any],
    options: ImportOptions,
    report: Report,
    skipped: list[str],
) -> Manifest | None:
    """A MetalLB object of a converted kind, or None: skipped (a warning, and a line in
    ``skipped``) or invalid (an error)."""
    api_version, kind = document.get("apiVersion"), document.get("kind")
    if not isinstance(api_version, str) or not isinstance(kind, str) or not kind:
        report.error(origin, None, "not a Kubernetes object (apiVersion and kind are required)")
        return None
    metadata = document.get("metadata")
    metadata = metadata if isinstance(metadata, dict) else {}
    name = metadata.get("name")
    origin = attrs.evolve(origin, kind=kind, name=name if isinstance(name, str) else "")
    group = api_version.partition("/")[0] if "/" in api_version else ""
    if kind not in API_VERSIONS:
        if group == "metallb.io":
            why = SKIPPED_METALLB_KINDS.get(kind, "not a kind import-metallb knows")
        else:
            why = "not a MetalLB object"
        report.warn(origin, None, f"skipped: {why}")
        skipped.append(line(origin, None, f"skipped: {why}"))
        return None
    if api_version not in API_VERSIONS[kind]:
        served = ", ".join(API_VERSIONS[kind])
        report.error(
            origin, "apiVersion", f'unknown apiVersion "{api_version}" for {kind} (use {served})'
        )
        return None
    if not isinstance(name, str) or not name:
        report.error(origin, "metadata.name", "required")
        return None
    namespace = _namespace(origin, kind, metadata, options, report)
    if namespace is False:
        return None
    labels = metadata.get("labels") or {}
    if not isinstance(labels, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
    ):
        report.error(origin, "metadata.labels", "expected a mapping of strings to strings")
        labels = {}
    spec = document.get("spec")
    if spec is None:
        spec = {}
    if not isinstance(spec, dict):
        report.error(origin, "spec", "expected a mapping")
        return None
    return Manifest(
        origin=origin,
        api_version=api_version,
        kind=kind,
        name=name,
        namespace=namespace if isinstance(namespace, str) else None,
        labels=labels,
        spec=spec,
    )


def _namespace(
    origin: Origin,
    kind: str,
    metadata: Mapping[str, Any],
    options: ImportOptions,
    report: Report,
) -> object:
    """``metadata.namespace`` as written, or False: not the one MetalLB reads (an error)."""
    namespace = metadata.get("namespace")
    if namespace is None:
        report.warn(
            origin,
            "metadata.namespace",
            f"not set: MetalLB only reads objects in {options.namespace}; apply it there",
        )
    elif namespace != options.namespace:
        report.error(
            origin,
            "metadata.namespace",
            f"{show(namespace)}: MetalLB only reads {kind} objects in its own namespace"
            f' "{options.namespace}", so MetalLB ignores this one'
            " (use --namespace if MetalLB runs in another one)",
        )
        return False
    return namespace

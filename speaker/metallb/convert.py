"""All of it together: objects -> each kind converted -> TOML -> the speaker's loader."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from speaker.config.load import ConfigError, build_config
from speaker.config.model import AddressRange, ConfigIssue
from speaker.metallb.advertisement import advertisement
from speaker.metallb.bfd_profile import bfd_profiles
from speaker.metallb.community import communities
from speaker.metallb.emit import Table, render
from speaker.metallb.manifests import API_VERSIONS, Manifest, read_documents, read_manifest
from speaker.metallb.peer import Peer, peer
from speaker.metallb.pool import pool
from speaker.metallb.report import Context, ImportOptions, ImportResult, Origin, Report

__all__ = ["Converter", "convert_documents", "convert_files", "own_family_only"]


class Converter:
    """The objects of one import, by kind, and their conversion."""

    def __init__(self, options: ImportOptions, report: Report) -> None:
        self.ctx = Context(options, report)
        self.manifests: dict[str, list[Manifest]] = {kind: [] for kind in API_VERSIONS}
        self.skipped: list[str] = []

    def add(self, origin: Origin, document: Mapping[str, Any]) -> None:
        manifest = read_manifest(origin, document, self.ctx.options, self.ctx.report, self.skipped)
        if manifest is None:
            return
        same = self.manifests[manifest.kind]
        for other in same:
            if other.name == manifest.name:
                self.ctx.report.error(
                    manifest.origin,
                    "metadata.name",
                    f'duplicate {manifest.kind} "{manifest.name}" (also {other.origin.file}:'
                    f" {other.origin.where()}); Kubernetes keeps only one of them",
                )
                return
        same.append(manifest)

    def convert(self, sources: Sequence[str]) -> tuple[str, dict[str, list[Origin]]]:
        """The TOML text, and the origin of each array element (for mapping errors)."""
        ctx, manifests = self.ctx, self.manifests
        bfd_tables, profiles = bfd_profiles(ctx, manifests["BFDProfile"])
        peers = [p for m in manifests["BGPPeer"] if (p := peer(ctx, m, profiles)) is not None]
        pool_manifests = {m.name: m for m in manifests["IPAddressPool"]}
        pools = [t for m in manifests["IPAddressPool"] if (t := pool(ctx, m)) is not None]
        aliases = communities(ctx, manifests["Community"])
        peer_names = [m.name for m in manifests["BGPPeer"]]
        left_out = {p.manifest.name for p in peers if p.table.commented}
        advertisements = [
            t
            for m in manifests["BGPAdvertisement"]
            if (t := advertisement(ctx, m, pool_manifests, peer_names, aliases, left_out=left_out))
            is not None
        ]
        own_family_only(peers, pools, advertisements)
        if not manifests["BGPAdvertisement"] and manifests["IPAddressPool"]:
            ctx.report.warn(
                sources[0] if sources else "input",
                None,
                "no BGPAdvertisement: nothing is announced (as in MetalLB)",
            )
        sections = [
            ("bfd_profiles", bfd_tables),
            ("peers", [p.table for p in peers]),
            ("pools", pools),
            ("advertisements", advertisements),
        ]
        return render(sources, self.skipped, ctx.options, peers, sections)


def own_family_only(peers: list[Peer], pools: list[Table], advertisements: list[Table]) -> None:
    """MetalLB gives a session the prefixes of its own address family only, unless the
    BGPPeer has ``dualStackAddressFamily`` (or is unnumbered); the speaker gives it
    every family its advertisements send. So a peer that would receive pools of the
    other family gets ``disable_mp = true``: what MetalLB did."""
    versions = {
        str(t.values["name"]): {AddressRange.parse(a).first.version for a in t.values["addresses"]}
        for t in pools
    }
    active = [p for p in peers if not p.table.commented]
    for ad in advertisements:
        if ad.commented:
            continue
        pool_names = ad.values.get("pools") or list(versions)
        sent = set().union(*(versions.get(n, set()) for n in pool_names))
        peer_names = ad.values.get("peers")
        for one in active:
            if peer_names and one.manifest.name not in peer_names:
                continue
            if (
                one.own_family_only
                and one.address is not None
                and sent - {one.address.version}
                and "disable_mp" not in one.table.values
            ):
                one.table.set(
                    "disable_mp", True,
                    f"no dualStackAddressFamily: MetalLB sends this session IPv"
                    f"{one.address.version} prefixes only",
                )  # fmt: skip


def _stub_password(path: Path) -> str:
    return "placeholder"


def _check(text: str, origins: Mapping[str, list[Origin]], report: Report, label: str) -> None:
    """Load the TOML with the speaker's loader; report what fails at its origin."""
    try:
        data = tomllib.loads(text)
        config = build_config(data, base_dir=Path("/"), read_text=_stub_password)
    except tomllib.TOMLDecodeError as exc:  # pragma: no cover - a bug of this module
        report.error(label, None, f"internal error: the generated TOML does not parse: {exc}")
        return
    except ConfigError as exc:
        for issue in exc.errors:
            report.error(_origin_of(issue, origins, label), None, f"speaker rule: {issue}")
        return
    for issue in config.warnings:
        report.warn(_origin_of(issue, origins, label), None, f"speaker: {issue}")


_PATH = re.compile(r"^([a-z_]+)\[(\d+)\]")


def _origin_of(issue: ConfigIssue, origins: Mapping[str, list[Origin]], label: str) -> str:
    match = _PATH.match(issue.path)
    if match:
        section, index = match.group(1), int(match.group(2))
        items = origins.get(section, [])
        if index < len(items):
            return str(items[index])
    return label


def convert_documents(
    documents: Iterable[tuple[Origin, Mapping[str, Any]]],
    options: ImportOptions | None = None,
    *,
    sources: Sequence[str] = (),
    report: Report | None = None,
) -> ImportResult:
    """Objects (with their origins) -> the TOML configuration, errors and warnings."""
    options = options or ImportOptions()
    report = report or Report()
    converter = Converter(options, report)
    for origin, document in documents:
        converter.add(origin, document)
    text, origins = converter.convert(sources)
    if not report.errors:
        _check(text, origins, report, ", ".join(sources) or "input")
    if report.errors:
        return ImportResult("", tuple(report.errors), tuple(report.warnings))
    return ImportResult(text, (), tuple(report.warnings))


def convert_files(
    files: Sequence[str | Path], options: ImportOptions | None = None
) -> ImportResult:
    """Read MetalLB YAML files and convert them (see :func:`convert_documents`)."""
    report = Report()
    documents: list[tuple[Origin, Mapping[str, Any]]] = []
    names = [str(f) for f in files]
    for file in names:
        try:
            text = Path(file).read_bytes().decode("utf-8")
        except OSError as exc:
            report.error(file, None, f"cannot read the file: {exc.strerror or exc}")
            continue
        except UnicodeDecodeError as exc:
            report.error(file, None, f"not UTF-8 text: {exc}")
            continue
        read = read_documents(text, file, report)
        if read is not None:
            documents += read
    return convert_documents(documents, options, sources=names, report=report)

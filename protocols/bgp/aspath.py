"""AS_PATH and AS4_PATH (RFC 4271 §4.3/§5.1.2, RFC 6793, RFC 5065 segment types).

AS numbers are held as full 4-octet values; the 2-octet wire form substitutes
AS_TRANS (RFC 6793 §4.2.2) when ``ctx.asn4`` is false.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from typing import ClassVar

import attrs

from .constants import AS_TRANS, AsPathSegmentType, AttrFlag, AttrType, UpdateSubcode
from .context import CodecContext
from .errors import MalformedAttributeError

_WELL_KNOWN = int(AttrFlag.TRANSITIVE)
_OPT_TRANS = int(AttrFlag.OPTIONAL | AttrFlag.TRANSITIVE)


def fit_asn(asn: int, ctx: CodecContext) -> int:
    return asn if ctx.asn4 or asn <= 0xFFFF else AS_TRANS


@attrs.frozen(kw_only=True)
class AsPathSegment:
    """One AS_PATH segment: type and AS numbers (RFC 4271 §4.3, RFC 5065)."""

    type: int
    asns: tuple[int, ...]


def _encode_segments(segments: Iterable[AsPathSegment], four: bool, ctx: CodecContext) -> bytes:
    out = bytearray()
    fmt = "!I" if four else "!H"
    for seg in segments:
        asns = seg.asns
        # A segment holds at most 255 ASes; split longer ones (same type).
        for start in range(0, max(len(asns), 1), 255):
            chunk = asns[start : start + 255]
            if not chunk:
                continue
            out += bytes((seg.type, len(chunk)))
            for asn in chunk:
                out += struct.pack(fmt, asn if four else fit_asn(asn, ctx))
    return bytes(out)


def _decode_segments(data: bytes, four: bool) -> tuple[AsPathSegment, ...]:
    width = 4 if four else 2
    segs: list[AsPathSegment] = []
    pos = 0
    while pos < len(data):
        if pos + 2 > len(data):
            raise MalformedAttributeError(UpdateSubcode.MALFORMED_AS_PATH, "truncated segment")
        stype, count = data[pos], data[pos + 1]
        if stype not in (1, 2, 3, 4):
            raise MalformedAttributeError(
                UpdateSubcode.MALFORMED_AS_PATH, f"bad segment type {stype}"
            )
        if count == 0:
            raise MalformedAttributeError(UpdateSubcode.MALFORMED_AS_PATH, "empty segment")
        end = pos + 2 + count * width
        if end > len(data):
            raise MalformedAttributeError(UpdateSubcode.MALFORMED_AS_PATH, "segment overrun")
        fmt = f"!{count}{'I' if four else 'H'}"
        asns = struct.unpack_from(fmt, data, pos + 2)
        segs.append(AsPathSegment(type=AsPathSegmentType(stype), asns=tuple(asns)))
        pos = end
    return tuple(segs)


@attrs.frozen(kw_only=True)
class AsPath:
    """RFC 4271 §5.1.2 AS_PATH with 4-octet AS numbers (encoded per ``ctx.asn4``)."""

    TYPE: ClassVar[int] = AttrType.AS_PATH
    FLAGS: ClassVar[int] = _WELL_KNOWN
    segments: tuple[AsPathSegment, ...] = ()

    @classmethod
    def sequence(cls, *asns: int) -> AsPath:
        """A path made of one AS_SEQUENCE (empty path when no AS is given)."""
        if not asns:
            return cls()
        return cls(segments=(AsPathSegment(type=AsPathSegmentType.AS_SEQUENCE, asns=asns),))

    @property
    def path_length(self) -> int:
        """RFC 4271 §9.1.2.2 length: AS_SET counts 1, confederation segments 0."""
        return path_length(self.segments)

    def asns(self) -> tuple[int, ...]:
        """All AS numbers in order."""
        return tuple(a for s in self.segments for a in s.asns)

    def encode_value(self, ctx: CodecContext) -> bytes:
        return _encode_segments(self.segments, ctx.asn4, ctx)

    @classmethod
    def decode_value(cls, data: bytes, ctx: CodecContext) -> AsPath:
        return cls(segments=_decode_segments(data, ctx.asn4))


def path_length(segments: Iterable[AsPathSegment]) -> int:
    n = 0
    for s in segments:
        if s.type == AsPathSegmentType.AS_SEQUENCE:
            n += len(s.asns)
        elif s.type == AsPathSegmentType.AS_SET:
            n += 1
    return n


@attrs.frozen(kw_only=True)
class As4Path:
    """RFC 6793 §3 AS4_PATH: only on the wire towards/from 2-octet-AS speakers."""

    TYPE: ClassVar[int] = AttrType.AS4_PATH
    FLAGS: ClassVar[int] = _OPT_TRANS
    segments: tuple[AsPathSegment, ...] = ()

    def encode_value(self, ctx: CodecContext) -> bytes:
        return _encode_segments(self.segments, True, ctx)

    @classmethod
    def decode_value(cls, data: bytes, ctx: CodecContext) -> As4Path:
        segs = _decode_segments(data, True)
        if any(s.type in (3, 4) for s in segs):
            # RFC 6793 §6: confederation segments in AS4_PATH make it malformed.
            raise MalformedAttributeError(
                UpdateSubcode.MALFORMED_AS_PATH, "confederation segment in AS4_PATH"
            )
        return cls(segments=segs)

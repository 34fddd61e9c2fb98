"""UPDATE messages (RFC 4271 §4.3) with RFC 7606 revised error handling.

:func:`decode_update` returns a :class:`DecodedUpdate`: the parsed
:class:`UpdateMessage` plus the RFC 7606 notes describing what was discarded or
treated as withdrawn, or raises :class:`RemoteProtocolError` when the session
must be reset.  AS4_PATH / AS4_AGGREGATOR (RFC 6793) are generated on encode
and merged on decode, so :class:`UpdateMessage` always carries 4-octet AS paths.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Iterable, Sequence
from ipaddress import IPv4Network
from typing import TypeVar

import attrs

from .aspath import As4Path, AsPath, AsPathSegment, path_length
from .attributes import (
    ATTRIBUTE_DECODERS,
    ATTRIBUTE_FLAGS,
    Aggregator,
    As4Aggregator,
    MpReachNlri,
    MpUnreachNlri,
    NextHop,
    PathAttribute,
    UnknownAttribute,
    UnsupportedFamilyError,
    encode_attribute,
)
from .constants import (
    AFI,
    AS_TRANS,
    SAFI,
    AsPathSegmentType,
    AttrFlag,
    AttrType,
    MessageType,
    NotifCode,
    UpdateSubcode,
)
from .context import CodecContext
from .errors import MalformedAttributeError, RemoteProtocolError
from .header import encode_message
from .nlri import Prefix, decode_ipv4_prefixes, encode_prefixes

_A = TypeVar("_A")
_MP_TYPES = (AttrType.MP_REACH_NLRI, AttrType.MP_UNREACH_NLRI)


class ErrorAction(enum.IntEnum):
    """RFC 7606 §2 approaches, ordered by strength (§3 g: the strongest wins)."""

    ATTRIBUTE_DISCARD = 1
    TREAT_AS_WITHDRAW = 2
    SESSION_RESET = 3


#: RFC 7606 §7 (and RFC 6793 §6, RFC 8092 §6): action for a malformed attribute.
ATTRIBUTE_ERROR_ACTIONS: dict[int, ErrorAction] = {
    AttrType.ORIGIN: ErrorAction.TREAT_AS_WITHDRAW,  # §7.1
    AttrType.AS_PATH: ErrorAction.TREAT_AS_WITHDRAW,  # §7.2
    AttrType.NEXT_HOP: ErrorAction.TREAT_AS_WITHDRAW,  # §7.3
    AttrType.MULTI_EXIT_DISC: ErrorAction.TREAT_AS_WITHDRAW,  # §7.4
    AttrType.LOCAL_PREF: ErrorAction.TREAT_AS_WITHDRAW,  # §7.5
    AttrType.ATOMIC_AGGREGATE: ErrorAction.ATTRIBUTE_DISCARD,  # §7.6
    AttrType.AGGREGATOR: ErrorAction.ATTRIBUTE_DISCARD,  # §7.7
    AttrType.COMMUNITIES: ErrorAction.TREAT_AS_WITHDRAW,  # §7.8
    AttrType.ORIGINATOR_ID: ErrorAction.TREAT_AS_WITHDRAW,  # §7.9
    AttrType.CLUSTER_LIST: ErrorAction.TREAT_AS_WITHDRAW,  # §7.10
    AttrType.MP_REACH_NLRI: ErrorAction.SESSION_RESET,  # §7.11
    AttrType.MP_UNREACH_NLRI: ErrorAction.SESSION_RESET,  # §7.11
    AttrType.AS4_PATH: ErrorAction.ATTRIBUTE_DISCARD,  # RFC 6793 §6
    AttrType.AS4_AGGREGATOR: ErrorAction.ATTRIBUTE_DISCARD,  # RFC 6793 §6
    AttrType.LARGE_COMMUNITIES: ErrorAction.TREAT_AS_WITHDRAW,  # RFC 8092 §6
}


@attrs.frozen(kw_only=True)
class Rfc7606Note:
    """One applied RFC 7606 action: what, on which attribute, and the RFC 4271 subcode."""

    action: ErrorAction
    attr_type: int | None
    subcode: int
    reason: str
    data: bytes = b""


#: Notes kept per UPDATE; the rest are only counted (:attr:`DecodedUpdate.suppressed`), so
#: an UPDATE of 4,096 octets holding 1,353 duplicate attributes costs 16 notes, not 1,353.
MAX_NOTES = 16
_EXTENDED_LENGTH = int(AttrFlag.EXTENDED_LENGTH)


class _Notes:
    """The notes of one UPDATE being decoded: the first :data:`MAX_NOTES`, then counts."""

    __slots__ = ("kept", "suppressed", "types")

    def __init__(self) -> None:
        self.kept: list[Rfc7606Note] = []
        self.suppressed: dict[ErrorAction, int] = {}
        self.types: set[int | None] = set()  # of every note, kept or not

    @property
    def full(self) -> bool:
        return len(self.kept) >= MAX_NOTES

    def add(self, note: Rfc7606Note) -> None:
        self.types.add(note.attr_type)
        if len(self.kept) < MAX_NOTES:
            self.kept.append(note)
        else:
            self.count(note.action)

    def count(self, action: ErrorAction) -> None:
        """A note not worth building (past the cap): only its action is counted."""
        self.suppressed[action] = self.suppressed.get(action, 0) + 1

    def dropped_types(self) -> set[int | None]:
        """Attribute types a note was made for (repeats past the cap: their type was
        seen, so it is present anyway)."""
        return self.types


def _attr_sort_key(attr: PathAttribute) -> tuple[int, int]:
    # RFC 7606 §5.1: MP_REACH_NLRI / MP_UNREACH_NLRI SHOULD come first.
    mp = attr.TYPE in (AttrType.MP_REACH_NLRI, AttrType.MP_UNREACH_NLRI)
    return (0 if mp else 1, attr.TYPE)


def canonical_attributes(attrs_: Iterable[PathAttribute]) -> tuple[PathAttribute, ...]:
    """Attributes in the order the encoder emits them (MP first, then by type code)."""
    return tuple(sorted(attrs_, key=_attr_sort_key))


@attrs.frozen(kw_only=True)
class UpdateMessage:
    """RFC 4271 §4.3 UPDATE: IPv4 withdrawn routes, path attributes, IPv4 NLRI.

    Other families travel in :class:`MpReachNlri` / :class:`MpUnreachNlri` attributes.
    """

    #: A received message's are :class:`.nlri.PackedPrefixes` (networks built when read).
    withdrawn: Sequence[IPv4Network] = ()
    attributes: tuple[PathAttribute, ...] = ()
    nlri: Sequence[IPv4Network] = ()

    def get(self, cls: type[_A]) -> _A | None:
        """The first attribute of class ``cls``, or None."""
        for attr in self.attributes:
            if isinstance(attr, cls):
                return attr
        return None

    @property
    def mp_reach(self) -> MpReachNlri | None:
        return self.get(MpReachNlri)

    @property
    def mp_unreach(self) -> MpUnreachNlri | None:
        return self.get(MpUnreachNlri)

    @property
    def announces(self) -> bool:
        """Whether it announces any prefix (without building them)."""
        reach = self.mp_reach
        return bool(self.nlri) or bool(reach and reach.nlri)

    @property
    def announced(self) -> tuple[Prefix, ...]:
        """All reachable prefixes: IPv4 NLRI field plus MP_REACH_NLRI."""
        reach = self.mp_reach
        return tuple(self.nlri) + tuple(reach.nlri if reach else ())

    @property
    def withdrawn_prefixes(self) -> tuple[Prefix, ...]:
        """All withdrawn prefixes: IPv4 withdrawn field plus MP_UNREACH_NLRI."""
        unreach = self.mp_unreach
        return tuple(self.withdrawn) + tuple(unreach.withdrawn if unreach else ())

    @property
    def end_of_rib(self) -> tuple[int, int] | None:
        """(AFI, SAFI) when this UPDATE is an End-of-RIB marker (RFC 4724 §2), else None."""
        if self.withdrawn or self.nlri:
            return None
        if not self.attributes:
            return (AFI.IPV4, SAFI.UNICAST)
        if len(self.attributes) == 1:
            only = self.attributes[0]
            if isinstance(only, MpUnreachNlri) and not only.withdrawn:
                return (only.afi, only.safi)
        return None

    def encode(self, ctx: CodecContext) -> bytes:
        """The complete message (header included)."""
        return encode_message(MessageType.UPDATE, encode_update_body(self, ctx), ctx)


def end_of_rib(afi: int = AFI.IPV4, safi: int = SAFI.UNICAST) -> UpdateMessage:
    """RFC 4724 §2 End-of-RIB marker for a family."""
    if (afi, safi) == (AFI.IPV4, SAFI.UNICAST):
        return UpdateMessage()
    return UpdateMessage(attributes=(MpUnreachNlri(afi=afi, safi=safi),))


@attrs.frozen(kw_only=True)
class DecodedUpdate:
    """Result of :func:`decode_update`: the message and the RFC 7606 notes applied."""

    update: UpdateMessage
    notes: tuple[Rfc7606Note, ...] = ()
    #: Notes past :data:`MAX_NOTES`, counted by action (they were applied all the same).
    suppressed: tuple[tuple[ErrorAction, int], ...] = ()

    @property
    def treat_as_withdraw(self) -> bool:
        """True when every announced prefix must be handled as withdrawn (RFC 7606 §2)."""
        return any(n.action == ErrorAction.TREAT_AS_WITHDRAW for n in self.notes) or any(
            action == ErrorAction.TREAT_AS_WITHDRAW for action, _ in self.suppressed
        )

    @property
    def note_counts(self) -> dict[ErrorAction, int]:
        """Every RFC 7606 action applied to this UPDATE, kept notes and suppressed ones."""
        out = dict(self.suppressed)
        for note in self.notes:
            out[note.action] = out.get(note.action, 0) + 1
        return out

    @property
    def announced(self) -> tuple[Prefix, ...]:
        """Prefixes to install (none when treat-as-withdraw applies)."""
        return () if self.treat_as_withdraw else self.update.announced

    @property
    def withdrawn(self) -> tuple[Prefix, ...]:
        """Prefixes to remove (including the announced ones under treat-as-withdraw)."""
        if self.treat_as_withdraw:
            return self.update.withdrawn_prefixes + self.update.announced
        return self.update.withdrawn_prefixes


def encode_path_attributes(attributes: Iterable[PathAttribute], ctx: CodecContext) -> bytes:
    """Encode a path attribute list in canonical order.

    Towards a 2-octet-AS peer (``ctx.asn4`` false) AS4_PATH / AS4_AGGREGATOR are
    added when the path or aggregator holds an AS that does not fit in 16 bits
    (RFC 6793 §4.2.2); any AS4_* attribute given by the caller is dropped.
    """
    out: list[PathAttribute] = []
    for attr in attributes:
        if isinstance(attr, As4Path | As4Aggregator):
            continue
        out.append(attr)
        if ctx.asn4:
            continue
        if isinstance(attr, AsPath) and any(a > 0xFFFF for a in attr.asns()):
            segs = tuple(
                s
                for s in attr.segments
                if s.type in (AsPathSegmentType.AS_SEQUENCE, AsPathSegmentType.AS_SET)
            )
            out.append(As4Path(segments=segs))
        elif isinstance(attr, Aggregator) and attr.asn > 0xFFFF:
            out.append(As4Aggregator(asn=attr.asn, address=attr.address))
    return b"".join(encode_attribute(a, ctx) for a in canonical_attributes(out))


def encode_update_body(update: UpdateMessage, ctx: CodecContext) -> bytes:
    """The UPDATE message body (everything after the 19-octet header)."""
    withdrawn = encode_prefixes(update.withdrawn)
    attributes = encode_path_attributes(update.attributes, ctx)
    return (
        struct.pack("!H", len(withdrawn))
        + withdrawn
        + struct.pack("!H", len(attributes))
        + attributes
        + encode_prefixes(update.nlri)
    )


def _malformed_list(reason: str) -> RemoteProtocolError:
    return RemoteProtocolError(
        NotifCode.UPDATE_MESSAGE_ERROR, UpdateSubcode.MALFORMED_ATTRIBUTE_LIST, reason=reason
    )


def decode_update(body: bytes, ctx: CodecContext) -> DecodedUpdate:
    """Decode an UPDATE body applying RFC 7606.

    Raises :class:`RemoteProtocolError` (UPDATE Message Error, with the RFC 4271
    §6.3 subcode and data) when the session must be reset:
    withdrawn/attribute lengths inconsistent with the message (3/1), unparseable
    NLRI or withdrawn field (3/10), duplicate MP_REACH/MP_UNREACH (3/1),
    unrecognized well-known attribute (3/2), malformed MP_REACH/MP_UNREACH
    (flags 3/4, next hop or length 3/9, prefixes 3/10).
    """
    if len(body) < 4:
        raise _malformed_list("UPDATE body shorter than 4 octets")
    (wlen,) = struct.unpack_from("!H", body)
    if 2 + wlen + 2 > len(body):
        raise _malformed_list("withdrawn routes length overruns message")
    withdrawn = decode_ipv4_prefixes(body[2 : 2 + wlen])
    (alen,) = struct.unpack_from("!H", body, 2 + wlen)
    attr_start = 4 + wlen
    if attr_start + alen > len(body):
        raise _malformed_list("total path attribute length overruns message")
    nlri = decode_ipv4_prefixes(body[attr_start + alen :])
    attributes, notes = _decode_attributes(body[attr_start : attr_start + alen], ctx)
    attributes = _reconcile_as4(attributes, ctx, notes)
    update = UpdateMessage(
        withdrawn=withdrawn,
        attributes=tuple(attributes),
        nlri=nlri,
    )
    _check_mandatory(update, notes)
    return DecodedUpdate(
        update=update, notes=tuple(notes.kept), suppressed=tuple(notes.suppressed.items())
    )


def _decode_attributes(data: bytes, ctx: CodecContext) -> tuple[list[PathAttribute], _Notes]:
    attributes: list[PathAttribute] = []
    notes = _Notes()
    seen: set[int] = set()
    pos, end = 0, len(data)
    # Repeats discarded past the notes' cap, counted here: a hostile UPDATE is mostly
    # repeats, and this loop is the whole cost of one (plain ints, no enum or call).
    repeats = 0
    while pos < end:
        start = pos
        flags = data[pos]
        hdr = 4 if flags & _EXTENDED_LENGTH else 3
        if pos + hdr > end:
            # RFC 7606 §4: too few octets left for an attribute header.
            notes.add(
                Rfc7606Note(
                    action=ErrorAction.TREAT_AS_WITHDRAW,
                    attr_type=None,
                    subcode=UpdateSubcode.MALFORMED_ATTRIBUTE_LIST,
                    reason="trailing octets too short for an attribute header",
                    data=data[pos:],
                )
            )
            break
        type_code = data[pos + 1]
        if hdr == 4:
            (length,) = struct.unpack_from("!H", data, pos + 2)
        else:
            length = data[pos + 2]
        pos += hdr
        if pos + length > end:
            # RFC 7606 §4: attribute overruns the Total Attribute Length.
            if type_code in (AttrType.MP_REACH_NLRI, AttrType.MP_UNREACH_NLRI):
                raise RemoteProtocolError(
                    NotifCode.UPDATE_MESSAGE_ERROR,
                    UpdateSubcode.ATTRIBUTE_LENGTH_ERROR,
                    data=data[start:],
                    reason="MP attribute overruns the attribute list",
                )
            notes.add(
                Rfc7606Note(
                    action=ErrorAction.TREAT_AS_WITHDRAW,
                    attr_type=type_code,
                    subcode=UpdateSubcode.ATTRIBUTE_LENGTH_ERROR,
                    reason="attribute overruns the attribute list",
                    data=data[start:],
                )
            )
            break
        if type_code in seen and type_code not in _MP_TYPES and len(notes.kept) >= MAX_NOTES:
            # RFC 7606 §3 g: a repeat is discarded; past the cap only counted, without
            # copying it.
            pos += length
            repeats += 1
            continue
        value = data[pos : pos + length]
        raw = data[start : pos + length]
        pos += length
        attr = _decode_one(flags, type_code, value, raw=raw, ctx=ctx, seen=seen, notes=notes)
        if attr is not None:
            attributes.append(attr)
    if repeats:
        discard = ErrorAction.ATTRIBUTE_DISCARD
        notes.suppressed[discard] = notes.suppressed.get(discard, 0) + repeats
    return attributes, notes


def _decode_one(
    flags: int,
    type_code: int,
    value: bytes,
    *,
    raw: bytes,
    ctx: CodecContext,
    seen: set[int],
    notes: _Notes,
) -> PathAttribute | None:
    if type_code in seen:
        if type_code in _MP_TYPES:
            raise RemoteProtocolError(
                NotifCode.UPDATE_MESSAGE_ERROR,
                UpdateSubcode.MALFORMED_ATTRIBUTE_LIST,
                reason="MP_REACH_NLRI/MP_UNREACH_NLRI repeated",
            )
        # RFC 7606 §3 g: keep the first occurrence only.
        notes.add(
            Rfc7606Note(
                action=ErrorAction.ATTRIBUTE_DISCARD,
                attr_type=type_code,
                subcode=UpdateSubcode.MALFORMED_ATTRIBUTE_LIST,
                reason="duplicate attribute",
                data=raw,
            )
        )
        return None
    seen.add(type_code)
    decoder = ATTRIBUTE_DECODERS.get(type_code)
    if decoder is None:
        if not flags & AttrFlag.OPTIONAL:
            raise RemoteProtocolError(
                NotifCode.UPDATE_MESSAGE_ERROR,
                UpdateSubcode.UNRECOGNIZED_WELL_KNOWN_ATTRIBUTE,
                data=raw,
                reason=f"unrecognized well-known attribute {type_code}",
            )
        if not flags & AttrFlag.TRANSITIVE:
            return None  # RFC 4271 §5: unrecognized optional non-transitive is ignored
        keep = (flags | AttrFlag.PARTIAL) & ~AttrFlag.EXTENDED_LENGTH
        return UnknownAttribute(type_code=type_code, flags=int(keep), value=value)
    action = ATTRIBUTE_ERROR_ACTIONS[type_code]
    expected = ATTRIBUTE_FLAGS[type_code]
    try:
        if flags & (AttrFlag.OPTIONAL | AttrFlag.TRANSITIVE) != expected:
            raise MalformedAttributeError(
                UpdateSubcode.ATTRIBUTE_FLAGS_ERROR, f"flags {flags:#04x} for type {type_code}"
            )
        return decoder(value, ctx)
    except UnsupportedFamilyError:
        # RFC 4760 §7: a family we cannot parse; keep the attribute opaque.
        return UnknownAttribute(type_code=type_code, flags=expected, value=value)
    except MalformedAttributeError as exc:
        if action == ErrorAction.SESSION_RESET:
            raise RemoteProtocolError(
                NotifCode.UPDATE_MESSAGE_ERROR, exc.subcode, data=raw, reason=exc.reason
            ) from None
        notes.add(
            Rfc7606Note(
                action=action, attr_type=type_code, subcode=exc.subcode, reason=exc.reason, data=raw
            )
        )
        return None


def _discard(notes: _Notes, attr_type: int, reason: str) -> None:
    notes.add(
        Rfc7606Note(
            action=ErrorAction.ATTRIBUTE_DISCARD,
            attr_type=attr_type,
            subcode=UpdateSubcode.OPTIONAL_ATTRIBUTE_ERROR,
            reason=reason,
        )
    )


def _reconcile_as4(
    attributes: list[PathAttribute], ctx: CodecContext, notes: _Notes
) -> list[PathAttribute]:
    """RFC 6793 §4.2.3: merge AS4_PATH / AS4_AGGREGATOR received from a 2-octet speaker."""
    as4_path = next((a for a in attributes if isinstance(a, As4Path)), None)
    as4_agg = next((a for a in attributes if isinstance(a, As4Aggregator)), None)
    if as4_path is None and as4_agg is None:
        return attributes
    rest: list[PathAttribute] = [
        a for a in attributes if not isinstance(a, As4Path | As4Aggregator)
    ]
    if ctx.asn4:
        # RFC 6793 §3: a NEW speaker discards AS4_* received from a NEW speaker.
        if as4_path is not None:
            _discard(notes, AttrType.AS4_PATH, "AS4_PATH from a 4-octet-AS peer")
        if as4_agg is not None:
            _discard(notes, AttrType.AS4_AGGREGATOR, "AS4_AGGREGATOR from a 4-octet-AS peer")
        return rest
    aggregator = next((a for a in rest if isinstance(a, Aggregator)), None)
    if as4_agg is not None:
        if aggregator is not None and aggregator.asn != AS_TRANS:
            _discard(notes, AttrType.AS4_AGGREGATOR, "AGGREGATOR AS is not AS_TRANS")
            if as4_path is not None:
                _discard(notes, AttrType.AS4_PATH, "ignored with AS4_AGGREGATOR")
            return rest
        if aggregator is not None:
            merged_agg = Aggregator(asn=as4_agg.asn, address=as4_agg.address)
            rest = [merged_agg if a is aggregator else a for a in rest]
    if as4_path is None:
        return rest
    as_path = next((a for a in rest if isinstance(a, AsPath)), None)
    if as_path is None or as_path.path_length < path_length(as4_path.segments):
        _discard(notes, AttrType.AS4_PATH, "AS4_PATH longer than AS_PATH")
        return rest
    keep = as_path.path_length - path_length(as4_path.segments)
    merged = _merge_paths(as_path.segments, keep, as4_path.segments)
    return [AsPath(segments=merged) if a is as_path else a for a in rest]


def _merge_paths(
    old: Sequence[AsPathSegment], keep: int, new: Sequence[AsPathSegment]
) -> tuple[AsPathSegment, ...]:
    taken: list[AsPathSegment] = []
    for seg in old:
        if seg.type in (AsPathSegmentType.AS_CONFED_SEQUENCE, AsPathSegmentType.AS_CONFED_SET):
            taken.append(seg)
            continue
        if keep <= 0:
            break
        if seg.type == AsPathSegmentType.AS_SET:
            taken.append(seg)
            keep -= 1
        else:
            part = seg.asns[:keep]
            taken.append(AsPathSegment(type=seg.type, asns=part))
            keep -= len(part)
    out = list(taken)
    rest = list(new)
    if (
        out
        and rest
        and out[-1].type == rest[0].type == AsPathSegmentType.AS_SEQUENCE
        and len(out[-1].asns) + len(rest[0].asns) <= 255
    ):
        out[-1] = AsPathSegment(type=out[-1].type, asns=out[-1].asns + rest.pop(0).asns)
    return tuple(out + rest)


def _check_mandatory(update: UpdateMessage, notes: _Notes) -> None:
    """RFC 7606 §3 d: missing well-known mandatory attributes -> treat-as-withdraw."""
    if not update.announces:
        return
    present = {a.TYPE for a in update.attributes}
    dropped = notes.dropped_types()
    required = [AttrType.ORIGIN, AttrType.AS_PATH]
    if update.nlri:
        required.append(AttrType.NEXT_HOP)
    for attr_type in required:
        if attr_type not in present and attr_type not in dropped:
            notes.add(
                Rfc7606Note(
                    action=ErrorAction.TREAT_AS_WITHDRAW,
                    attr_type=attr_type,
                    subcode=UpdateSubcode.MISSING_WELL_KNOWN_ATTRIBUTE,
                    reason=f"missing well-known attribute {attr_type.name}",
                    data=bytes((attr_type,)),
                )
            )
    next_hop = update.get(NextHop)
    if update.nlri and next_hop is not None:
        addr = next_hop.address
        if addr.is_unspecified or addr.is_multicast or addr == addr.__class__("255.255.255.255"):
            # RFC 7606 §7.3: semantically invalid NEXT_HOP -> ignore the routes.
            notes.add(
                Rfc7606Note(
                    action=ErrorAction.TREAT_AS_WITHDRAW,
                    attr_type=AttrType.NEXT_HOP,
                    subcode=UpdateSubcode.INVALID_NEXT_HOP_ATTRIBUTE,
                    reason=f"invalid NEXT_HOP {addr}",
                )
            )

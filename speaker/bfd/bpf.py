"""Classic BPF socket filters (``SO_ATTACH_FILTER``), the little this package needs.

A filter runs in the kernel on every packet before it is queued on the socket, so
what it rejects costs neither receive-buffer space nor a wake-up of the process. Two
users: the echo link's packet socket (:mod:`speaker.bfd.echo_link`, offsets from the
Ethernet header) and the single-hop receive socket's GTSM filter
(:func:`speaker.bfd.net.gtsm_filter`: on a UDP socket offset 0 is the UDP header, and
the IP header is reached through :data:`SKF_NET_OFF`).
"""

from __future__ import annotations

import ctypes
import socket
import struct
from typing import NamedTuple, Protocol

__all__ = [
    "ACCEPT_ALL",
    "JEQ_K",
    "JSET_K",
    "LDX_B_MSH",
    "LD_B_ABS",
    "LD_H_ABS",
    "LD_H_IND",
    "LD_W_ABS",
    "RET_K",
    "SKF_AD_OFF",
    "SKF_AD_PKTTYPE",
    "SKF_NET_OFF",
    "SO_ATTACH_FILTER",
    "BpfInsn",
    "attach_filter",
    "stmt",
]

SO_ATTACH_FILTER = 26

# Negative load offsets (linux/filter.h): ancillary data, and the network header.
SKF_AD_OFF = -0x1000
SKF_AD_PKTTYPE = 4
SKF_NET_OFF = -0x100000

# Opcodes (linux/bpf_common.h combinations).
LD_W_ABS = 0x20
LD_H_ABS = 0x28
LD_B_ABS = 0x30
LD_H_IND = 0x48
LDX_B_MSH = 0xB1
JEQ_K = 0x15
JSET_K = 0x45
RET_K = 0x06

#: A return value that keeps the whole packet.
ACCEPT_ALL = 0x40000


class BpfInsn(NamedTuple):
    """One classic BPF instruction (``struct sock_filter``)."""

    code: int
    jt: int
    jf: int
    k: int


def stmt(code: int, k: int) -> BpfInsn:
    """An instruction without jumps; ``k`` may be a negative offset."""
    return BpfInsn(code, 0, 0, k & 0xFFFFFFFF)


class _Socket(Protocol):
    """A stdlib or Trio socket: all attach_filter needs."""

    def setsockopt(self, level: int, optname: int, value: bytes, /) -> None: ...


def attach_filter(sock: _Socket, program: list[BpfInsn]) -> None:
    raw = b"".join(struct.pack("=HBBI", *insn) for insn in program)
    buf = ctypes.create_string_buffer(raw, len(raw))
    # struct sock_fprog { unsigned short len; struct sock_filter *filter; }, native
    # alignment; the kernel copies the program, so buf only has to outlive this call.
    fprog = struct.pack("@HP", len(program), ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)

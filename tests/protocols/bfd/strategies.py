"""Hypothesis strategies for BFD values."""

from __future__ import annotations

from hypothesis import strategies as st

from protocols.bfd import (
    AuthConfig,
    AuthSection,
    AuthType,
    ControlPacket,
    Diag,
    DigestAuth,
    SimplePasswordAuth,
    State,
)

U32 = st.integers(0, 2**32 - 1)
U8 = st.integers(0, 255)

DIGEST_TYPES = [
    AuthType.KEYED_MD5,
    AuthType.METICULOUS_KEYED_MD5,
    AuthType.KEYED_SHA1,
    AuthType.METICULOUS_KEYED_SHA1,
]
ALL_AUTH_TYPES = [AuthType.SIMPLE_PASSWORD, *DIGEST_TYPES]
SECRET_MAX = {
    AuthType.SIMPLE_PASSWORD: 16,
    AuthType.KEYED_MD5: 16,
    AuthType.METICULOUS_KEYED_MD5: 16,
    AuthType.KEYED_SHA1: 20,
    AuthType.METICULOUS_KEYED_SHA1: 20,
}


def diags() -> st.SearchStrategy[int]:
    return st.one_of(st.sampled_from(list(Diag)), st.integers(9, 31))


@st.composite
def digest_sections(draw: st.DrawFn) -> DigestAuth:
    auth_type = draw(st.sampled_from(DIGEST_TYPES))
    size = 16 if auth_type in (AuthType.KEYED_MD5, AuthType.METICULOUS_KEYED_MD5) else 20
    return DigestAuth(
        auth_type=auth_type,
        key_id=draw(U8),
        sequence=draw(U32),
        digest=draw(st.binary(min_size=size, max_size=size)),
        reserved=draw(U8),
    )


def auth_sections() -> st.SearchStrategy[AuthSection | None]:
    simple = st.builds(SimplePasswordAuth, key_id=U8, password=st.binary(min_size=1, max_size=16))
    return st.one_of(st.none(), simple, digest_sections())


@st.composite
def control_packets(
    draw: st.DrawFn, auth: st.SearchStrategy[AuthSection | None] | None = None
) -> ControlPacket:
    return ControlPacket(
        state=draw(st.sampled_from(list(State))),
        diag=draw(diags()),
        poll=draw(st.booleans()),
        final=draw(st.booleans()),
        control_plane_independent=draw(st.booleans()),
        demand=draw(st.booleans()),
        multipoint=draw(st.booleans()),
        detect_mult=draw(U8),
        my_discriminator=draw(U32),
        your_discriminator=draw(U32),
        desired_min_tx_us=draw(U32),
        required_min_rx_us=draw(U32),
        required_min_echo_rx_us=draw(U32),
        auth=draw(auth if auth is not None else auth_sections()),
    )


@st.composite
def auth_configs(draw: st.DrawFn, auth_type: AuthType | None = None) -> AuthConfig:
    chosen = auth_type if auth_type is not None else draw(st.sampled_from(ALL_AUTH_TYPES))
    secret = st.binary(min_size=1, max_size=SECRET_MAX[chosen])
    keys = draw(st.dictionaries(U8, secret, min_size=1, max_size=4))
    return AuthConfig(type=chosen, keys=keys, send_key_id=draw(st.sampled_from(sorted(keys))))

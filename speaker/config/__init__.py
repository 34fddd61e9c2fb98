"""Configuration: one TOML file -> tomllib -> cattrs -> frozen attrs, loaded once.

The tables follow MetalLB's objects (``[speaker]``, ``[[bfd_profiles]]``,
``[[peers]]``, ``[[pools]]``, ``[[advertisements]]``, ``[[services]]``) with
snake_case keys; ``docs/configuration.md`` documents every key and rule.

Use :func:`load_config`; it returns the effective :class:`Config` or raises
:class:`ConfigError` listing every problem, each a :class:`ConfigIssue` with a TOML
path (``peers[1].bfd_profile: no BFD profile named ...``).
"""

from __future__ import annotations

from speaker.bfd.profile import BfdAuth, BfdProfile
from speaker.config.durations import format_duration, parse_duration
from speaker.config.load import ConfigError, build_config, load_config, loads_config
from speaker.config.model import (
    AddressRange,
    Advertisement,
    Community,
    Config,
    ConfigIssue,
    HealthCheck,
    IPAddress,
    IPNetwork,
    Peer,
    PeerSpec,
    Pool,
    Service,
    SpeakerSettings,
)
from speaker.config.selectors import LabelSelector, LabelSelectorRequirement, selects

__all__ = [
    "AddressRange",
    "Advertisement",
    "BfdAuth",
    "BfdProfile",
    "Community",
    "Config",
    "ConfigError",
    "ConfigIssue",
    "HealthCheck",
    "IPAddress",
    "IPNetwork",
    "LabelSelector",
    "LabelSelectorRequirement",
    "Peer",
    "PeerSpec",
    "Pool",
    "Service",
    "SpeakerSettings",
    "build_config",
    "format_duration",
    "load_config",
    "loads_config",
    "parse_duration",
    "selects",
]

"""``speaker import-metallb``: MetalLB manifests -> a speaker TOML configuration.

Reads MetalLB's custom resources from YAML (multi-document files, and ``kind: List``
with ``items``), as MetalLB's and OKD's documentation write them:

========================  ==========================  ================================
MetalLB kind              apiVersion                  TOML
========================  ==========================  ================================
``BFDProfile``            ``metallb.io/v1beta1``      ``[[bfd_profiles]]``
``BGPPeer``               ``metallb.io/v1beta1``,     ``[[peers]]`` (+ ``[speaker]``
                          ``metallb.io/v1beta2``      ``my_asn`` / ``router_id``)
``IPAddressPool``         ``metallb.io/v1beta1``      ``[[pools]]``
``BGPAdvertisement``      ``metallb.io/v1beta1``      ``[[advertisements]]``
``Community``             ``metallb.io/v1beta1``      aliases, resolved in place
========================  ==========================  ================================

Every field that cannot be carried becomes a TOML comment saying why and a warning
naming the file, document, kind, name and field; other kinds (``L2Advertisement``,
``Service``...) are skipped with a warning and a comment. Only manifests MetalLB
itself would reject (wrong namespace, dangling ``bfdProfile``, timers out of range,
``password`` with a named ``passwordSecret``, ``myASN`` 0...) are errors, one line
each, naming the same. docs/migration-from-metallb.md has the table of every field.

Finally the TOML is loaded with the speaker's own loader (password files stubbed), so
what is printed is a configuration ``speaker check`` accepts, or the speaker rule it
breaks is reported against the document it came from.

:func:`convert_files` is the API; :func:`main` the command. The modules, in the
order a manifest goes through them:

- :mod:`~speaker.metallb.report`: where things come from (:class:`Origin`), the
  errors and warnings, the options and the result;
- :mod:`~speaker.metallb.manifests`: YAML documents -> MetalLB objects of the kinds
  converted;
- :mod:`~speaker.metallb.fields`: typed reads of a ``spec`` (label selectors become
  :class:`speaker.config.LabelSelector`);
- one module per kind: :mod:`~speaker.metallb.bfd_profile`,
  :mod:`~speaker.metallb.peer`, :mod:`~speaker.metallb.pool`,
  :mod:`~speaker.metallb.community`, :mod:`~speaker.metallb.advertisement`;
- :mod:`~speaker.metallb.emit`: TOML text (values, tables, the whole file);
- :mod:`~speaker.metallb.convert`: all of it together, then the speaker's loader;
- :mod:`~speaker.metallb.command`: ``speaker import-metallb``.
"""

from __future__ import annotations

from speaker.metallb.command import main
from speaker.metallb.convert import convert_documents, convert_files
from speaker.metallb.emit import toml_string
from speaker.metallb.report import (
    DEFAULT_NAMESPACE,
    DEFAULT_SECRETS_DIR,
    ImportOptions,
    ImportResult,
    Origin,
)

__all__ = [
    "DEFAULT_NAMESPACE",
    "DEFAULT_SECRETS_DIR",
    "ImportOptions",
    "ImportResult",
    "Origin",
    "convert_documents",
    "convert_files",
    "main",
    "toml_string",
]

"""Akash SDL v2.0/v2.1: parse, validate, build manifests and deployment group specs.

Public API: ``parse_sdl(text, *, source)`` -> ``SDL``; ``manifest_json``, ``groups_json``
and ``version_hash`` give Akash's exact JSON shapes and deployment hash. The package is
pure (no I/O): callers read files themselves. Errors are ``p2pakash.errors.SDLError``.
"""

from __future__ import annotations

from p2pakash.errors import SDLError
from p2pakash.market.sdl.document import (
    MAX_SDL_BYTES,
    SDL,
    groups_json,
    manifest_json,
    parse_sdl,
    version_hash,
)
from p2pakash.market.sdl.groups import GroupSpec, Requirements, ResourceUnit
from p2pakash.market.sdl.manifest import ManifestGroup, ManifestService, ServiceExpose
from p2pakash.market.sdl.resources import (
    GPU,
    Attribute,
    Endpoint,
    EndpointKind,
    Price,
    Resources,
    SignedBy,
    StorageVolume,
)
from p2pakash.market.sdl.units import parse_cpu, parse_size

__all__ = [
    "GPU",
    "MAX_SDL_BYTES",
    "SDL",
    "Attribute",
    "Endpoint",
    "EndpointKind",
    "GroupSpec",
    "ManifestGroup",
    "ManifestService",
    "Price",
    "Requirements",
    "ResourceUnit",
    "Resources",
    "SDLError",
    "ServiceExpose",
    "SignedBy",
    "StorageVolume",
    "groups_json",
    "manifest_json",
    "parse_cpu",
    "parse_sdl",
    "parse_size",
    "version_hash",
]

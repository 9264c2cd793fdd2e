"""``parse_sdl``: text in, a validated ``SDL`` (manifest, group specs, version hash) out.

Rules and invariants:
* Checks run in Akash's order: YAML, decode rules, cross references, group building,
  deployment-group validation, manifest validation. The first failure raises SDLError;
  with ``source`` given, its message starts with ``source: ``.
* Inputs larger than MAX_SDL_BYTES, or not text, are refused before YAML parsing.
* An ``SDL`` is immutable; its manifest and groups are built once, at parse time.
"""

from __future__ import annotations

from typing import Any

import attrs

from p2pakash.errors import SDLError
from p2pakash.market.sdl import nodes
from p2pakash.market.sdl.groups import GroupSpec, build, group_specs_json, validate_groups
from p2pakash.market.sdl.manifest import ManifestGroup, manifest_groups_json, validate_manifest
from p2pakash.market.sdl.model import SDLInput
from p2pakash.market.sdl.parse import decode
from p2pakash.market.sdl.validate import validate
from p2pakash.market.sdl.version import manifest_version

MAX_SDL_BYTES = 1024 * 1024


@attrs.frozen(kw_only=True)
class SDL:
    """A valid SDL: its input, deployment groups and manifest groups (Akash semantics)."""

    source: str
    input: SDLInput
    group_specs: tuple[GroupSpec, ...]
    manifest_groups: tuple[ManifestGroup, ...]

    @property
    def version(self) -> str:
        """The SDL rule set in use: "2.0" or "2.1"."""
        return self.input.version

    def manifest(self) -> list[ManifestGroup]:
        return list(self.manifest_groups)

    def groups(self) -> list[GroupSpec]:
        return list(self.group_specs)

    def version_hash(self) -> bytes:
        return version_hash(self)


def parse_sdl(text: str, *, source: str = "<sdl>") -> SDL:
    """Parse and validate an SDL document; SDLError (message prefixed by source) if invalid."""
    try:
        if not isinstance(text, str):
            raise SDLError(f"expected text, got {type(text).__name__}")
        if len(text) > MAX_SDL_BYTES:
            raise SDLError(f"SDL too large ({len(text)} characters > {MAX_SDL_BYTES})")
        if "\x00" in text:
            raise SDLError("not a text file (contains NUL bytes)")
        sdl_input = decode(nodes.compose(text))
        validate(sdl_input)
        specs, manifest = build(sdl_input)
        validate_groups(specs)
        validate_manifest(manifest)
    except SDLError as exc:
        raise SDLError(f"{source}: {exc}") from None
    except RecursionError:
        raise SDLError(f"{source}: document nested too deeply") from None
    return SDL(source=source, input=sdl_input, group_specs=specs, manifest_groups=manifest)


def manifest_json(sdl: SDL) -> list[dict[str, Any]]:
    """The manifest exactly as Akash's ``json.Marshal(manifest)`` gives it."""
    return manifest_groups_json(sdl.manifest_groups)


def groups_json(sdl: SDL) -> list[dict[str, Any]]:
    """The deployment group specs exactly as Akash's ``json.Marshal(groups)`` gives them."""
    return group_specs_json(sdl.group_specs)


def version_hash(sdl: SDL) -> bytes:
    """sha256 of the key-sorted manifest JSON (Akash's deployment version)."""
    return manifest_version(manifest_json(sdl))

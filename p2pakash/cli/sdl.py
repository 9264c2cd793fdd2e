"""``p2pakash sdl``: validate Akash SDL files, print their manifest or deployment groups.

Rules:
* ``validate`` checks every file and prints one ``FILE: message`` line per invalid file
  (or, with ``--json``, one JSON object per file per line); exit 0 only if all are valid.
* ``manifest`` and ``groups`` print Akash's JSON for one file.
* Bad input (missing, unreadable, binary, oversized, invalid) is one line naming the file
  and exit code 1, never a traceback.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import click

from p2pakash.errors import SDLError
from p2pakash.market.sdl import MAX_SDL_BYTES, SDL, groups_json, manifest_json, parse_sdl


def load(path: str) -> SDL:
    """Read and parse one SDL file; SDLError (``path: reason``) on any problem."""
    try:
        size = os.stat(path).st_size
        if size > MAX_SDL_BYTES:
            raise SDLError(f"{path}: file too large ({size} bytes > {MAX_SDL_BYTES})")
        with open(path, "rb") as handle:
            data = handle.read(MAX_SDL_BYTES + 1)
    except OSError as exc:
        raise SDLError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if len(data) > MAX_SDL_BYTES:
        raise SDLError(f"{path}: file too large (more than {MAX_SDL_BYTES} bytes)")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SDLError(f"{path}: not UTF-8 text (bad byte at offset {exc.start})") from None
    try:
        return parse_sdl(text, source=path)
    except SDLError:
        raise
    except Exception as exc:  # a parser bug must still not end in a traceback
        raise SDLError(f"{path}: internal error ({type(exc).__name__}: {exc}); "
                       "please report this file") from None


def _strip_source(path: str, message: str) -> str:
    return message.removeprefix(f"{path}: ")


@click.group(name="sdl")
def command() -> None:
    """Akash SDL (v2.0/v2.1) tools."""


@command.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object per file per line.")
@click.argument("files", nargs=-1, required=True)
def validate(as_json: bool, files: tuple[str, ...]) -> None:
    """Validate SDL FILES; exit 1 if any is invalid."""
    all_valid = True
    for path in files:
        record: dict[str, Any] = {"file": path, "valid": True, "errors": [],
                                  "version_hash": None}
        try:
            sdl = load(path)
            record["version_hash"] = sdl.version_hash().hex()
        except SDLError as exc:
            all_valid = False
            record["valid"] = False
            record["errors"] = [_strip_source(path, str(exc))]
            if not as_json:
                click.echo(f"{path}: {record['errors'][0]}")
        if as_json:
            click.echo(json.dumps(record, ensure_ascii=False))
    sys.exit(0 if all_valid else 1)


def _print_json(path: str, which: str) -> None:
    try:
        sdl = load(path)
    except SDLError as exc:
        click.echo(str(exc), err=True)
        sys.exit(1)
    data = manifest_json(sdl) if which == "manifest" else groups_json(sdl)
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


@command.command()
@click.argument("file")
def manifest(file: str) -> None:
    """Print FILE's manifest groups in Akash's JSON shape."""
    _print_json(file, "manifest")


@command.command()
@click.argument("file")
def groups(file: str) -> None:
    """Print FILE's deployment group specs in Akash's JSON shape."""
    _print_json(file, "groups")

"""The layout of a node's home folder.

Rules and invariants:
* A home folder holds ``config.toml``, ``node_key.json``, ``genesis.json`` and ``data/``;
  the helpers here are the only place those names are spelled.
* Key files (any file named ``*key.json``) are private: they are created 0600 and never
  overwritten. ``init_home`` writes nothing unless it can write everything new.
* ``copy_home`` copies a folder (e.g. a demo node from ``configs/local``) into a fresh
  home and gives every key file mode 0600, because git does not keep file modes.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from p2pakash import crypto
from p2pakash.errors import ConfigError

CONFIG_FILE = "config.toml"
KEY_FILE = "node_key.json"
GENESIS_FILE = "genesis.json"
DATA_DIR = "data"
KEY_FILE_SUFFIX = "key.json"


def config_path(home: Path) -> Path:
    return home / CONFIG_FILE


def key_path(home: Path) -> Path:
    return home / KEY_FILE


def genesis_path(home: Path) -> Path:
    return home / GENESIS_FILE


def data_dir(home: Path) -> Path:
    return home / DATA_DIR


def is_key_file(path: Path) -> bool:
    return path.name.endswith(KEY_FILE_SUFFIX)


def init_home(home: Path, *, config_toml: str, key: crypto.PrivateKey) -> None:
    """Create ``home`` with a config file and a node key; refuse if either already exists."""
    cfg_file, key_file = config_path(home), key_path(home)
    for existing in (cfg_file, key_file):
        if existing.exists():
            raise ConfigError(f"{existing}: already exists; refusing to overwrite it")
    home.mkdir(parents=True, exist_ok=True)
    crypto.save_key(key_file, key)
    try:
        fd = os.open(cfg_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        raise ConfigError(f"{cfg_file}: already exists; refusing to overwrite it") from None
    with os.fdopen(fd, "w") as fh:
        fh.write(config_toml)


def copy_home(src: Path, dst: Path) -> None:
    """Copy the home folder ``src`` to ``dst`` (absent or empty); key files become 0600."""
    if not src.is_dir():
        raise ConfigError(f"{src}: not a home folder")
    if dst.exists() and (not dst.is_dir() or any(dst.iterdir())):
        raise ConfigError(f"{dst}: already exists and is not an empty folder")
    shutil.copytree(src, dst, dirs_exist_ok=True)
    for path in sorted(dst.rglob("*")):
        if path.is_file() and is_key_file(path):
            path.chmod(0o600)

from __future__ import annotations

from p2pakash.cli import main

main()

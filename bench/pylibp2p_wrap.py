#!/usr/bin/env python3
"""Run the py-libp2p harness unchanged and add "copies per message per node" to its JSON.

Usage: .venv-libp2p/bin/python bench/pylibp2p_wrap.py HARNESS [harness args...]

The harness (/work/shared/bench/pylibp2p_bench.py) does not count duplicates, so this wrapper
counts calls of ``Pubsub.push_msg`` (py-libp2p 0.8.1: called once for the publisher's own
message and once per copy received from a peer, before the seen-cache check; IWANT replies
included) and divides by (messages published x nodes): the same definition as
gossip_bench.py's ``copies_per_msg_per_node`` (first copy + duplicates). It covers both phases
(latency rounds + throughput messages), where gossip_bench.py reports phase 2 only.
Needs libp2p==0.8.1 in the running interpreter. Prints the merged JSON object.
"""

from __future__ import annotations

import contextlib
import io
import json
import runpy
import sys

from libp2p.pubsub.pubsub import Pubsub

calls = 0
original = Pubsub.push_msg


async def counting_push_msg(self, msg_forwarder, msg):  # type: ignore[no-untyped-def]
    global calls
    calls += 1
    await original(self, msg_forwarder, msg)


def main() -> None:
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    harness = sys.argv[1]
    sys.argv = [harness, *sys.argv[2:]]
    Pubsub.push_msg = counting_push_msg  # type: ignore[method-assign]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        runpy.run_path(harness, run_name="__main__")
    text = out.getvalue()
    result = json.loads(text[text.index("{"):text.rindex("}") + 1])
    # phase 1 rounds + phase 2 messages (all published unless the burst deadline hit)
    published = int(_arg("--rounds", "20")) + result.get("throughput", {}).get("msgs", 0)
    result["push_msg_calls"] = calls
    result["copies_per_msg_per_node_both_phases"] = round(calls / (published * result["nodes"]), 2)
    print(json.dumps(result, indent=1))


def _arg(name: str, default: str) -> str:
    args = sys.argv[1:]
    return args[args.index(name) + 1] if name in args else default


if __name__ == "__main__":
    main()

#!/usr/bin/env bash
# Run the py-libp2p gossipsub harness (/work/shared/bench/pylibp2p_bench.py) at N=10 and N=50
# with the commands of consensus_gossip.md §C, in its own venv, through pylibp2p_wrap.py (adds
# copies per message per node; the harness itself is unchanged). Saves each JSON result.
#   bench/run_pylibp2p.sh [OUTDIR]      (default OUTDIR: /tmp/p2pakash-bench)
# Needs PyPI the first time (creates .venv-libp2p with libp2p==0.8.1; git-ignored).
set -euo pipefail
cd "$(dirname "$0")/.."
HARNESS=${HARNESS:-/work/shared/bench/pylibp2p_bench.py}
OUT=${1:-/tmp/p2pakash-bench}
mkdir -p "$OUT"
if [ ! -x .venv-libp2p/bin/python ]; then
    python3 -m venv .venv-libp2p
    .venv-libp2p/bin/pip install -q libp2p==0.8.1
fi
RUN=(.venv-libp2p/bin/python bench/pylibp2p_wrap.py "$HARNESS")
# Each run is bounded: the harness caps every phase in time; `timeout` caps the process.
# stderr gets py-libp2p's teardown tracebacks ("Nursery is closed"), printed after the results.
timeout 300 "${RUN[@]}" --nodes 10 > "$OUT/pylibp2p_n10.json" 2> "$OUT/pylibp2p_n10.log"
timeout 600 "${RUN[@]}" --nodes 50 --msgs 60 --rounds 10 --gap 0.5 --settle 15 \
    > "$OUT/pylibp2p_n50.json" 2> "$OUT/pylibp2p_n50.log"
cat "$OUT/pylibp2p_n10.json" "$OUT/pylibp2p_n50.json"

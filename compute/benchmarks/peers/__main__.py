"""`python -m compute.benchmarks.peers [NAME ...]`: create the peers' environments (what `make peers` runs)."""

from __future__ import annotations

import sys

from compute.benchmarks.peers import PEERS, peer_python

for peer in sys.argv[1:] or sorted(PEERS):
    print(peer_python(peer))

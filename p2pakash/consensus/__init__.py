"""Tendermint BFT consensus: wire types, validator sets, vote keeper and Algorithm 1 core.

The pure parts (``types``, ``proposer``, ``votes``, ``core``) do no IO; a driver feeds the
core events and carries out its actions.
"""

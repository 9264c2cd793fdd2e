"""The active set is recomputed only in blocks that wrote a validator record: after every
block the latest stored set still equals the set computed from the records."""

from __future__ import annotations

from p2pakash.ledger import Delegate, Misbehaviour, Send, Undelegate
from p2pakash.ledger.staking import active_set, latest_set
from tests.ledger.helpers import USERS, VALS, Chain, new_ledger

AKT = 1_000_000


def _in_step(c: Chain) -> None:
    store = c.ledger.store
    assert latest_set(store).validators == active_set(store, c.ledger.params())


def test_latest_set_equals_the_records_after_every_kind_of_block() -> None:
    c = Chain(new_ledger())
    quiet = c.block()
    assert quiet.validator_updates == ()
    _in_step(c)
    sent = c.run(c.tx(USERS[0], Send(to=USERS[1].address, amount=5)))
    assert sent.validator_updates == ()  # no validator record written: nothing to compute
    _in_step(c)
    bonded = c.run(c.tx(USERS[0], Delegate(validator=VALS[1].public, amount=20 * AKT)))
    assert dict(bonded.validator_updates) == {VALS[1].public: 30}
    _in_step(c)
    c.run(c.tx(USERS[0], Undelegate(validator=VALS[1].public, amount=15 * AKT)))
    _in_step(c)
    for _ in range(3):  # downtime: VALS[2] stops signing
        c.block(signers=(VALS[0].public, VALS[1].public))
        _in_step(c)
    slashed = c.block(misbehaviour=(Misbehaviour(pubkey=VALS[2].public, height=c.ledger.height(),
                                                 time_ms=c.ledger.time_ms()),))
    assert dict(slashed.validator_updates).get(VALS[2].public) == 0  # jailed: out of the set
    _in_step(c)
    assert c.block().validator_updates == ()
    _in_step(c)

"""The first stage of who reacts out of everyone: a rule that needs no model proposes the
``k`` users most connected to a thread, and the scorer decides among them only.

**Why.** The scorer reads one candidate line per user: out of the 11,460 Twitter users
active before a post, that is 318 s a post on 2 CPU cores, and most of them never met the
post's author or anyone in its thread. Recommender-based simulators (OASIS, Y-Social)
split the same way: a cheap candidate generator, then the model.

**The rule.** A user's count of earlier cascades of this post's author they reacted to,
plus earlier cascades they shared with the users present (the author and the thread):
the ``author`` and ``co-react`` baselines' counts added (``prompt.Behaviour``); ties by
the user's number of earlier acts, then by first activity. All of it strictly before the
post, as every candidate line. A build without each act's cascade ranks by acts alone.

**Who it leaves out.** Some reactors are not proposed (on Twitter at k = 300, about half).
The universe calibration counts them per depth (``WhoDecision.outside``: reactors per user
left out), and a level's expected size adds them, so the simulated size stays honest;
nobody outside the proposal is named.
"""
from __future__ import annotations

from typing import NamedTuple, Sequence


class Proposal(NamedTuple):
    users: list[str]     # the proposed candidates, best first
    outside: int         # candidates of the universe that were not proposed


def propose(table, users: Sequence[str], t: int | None, present: Sequence[str], k: int) -> Proposal:
    """The ``k`` of ``users`` (user ids of ``table``, a ``samples.UserTable``) the rule ranks
    first at time ``t``; ``present``: the post's author, then the thread's users. ``k`` = 0,
    a universe of at most ``k`` users or no time: everyone, in the given order."""
    users = list(users)
    if not k or len(users) <= k or t is None:
        return Proposal(users, 0)
    t = int(t)
    idx = [table.pos.get(u, -1) for u in users]
    known = [i for i in idx if i >= 0]
    counts = dict(zip(known, table.acts_before(known, t).tolist())) if known else {}
    pres = table.present(list(present), t)
    top = max(counts.values(), default=0) + 1

    def score(i: int) -> float:
        if i < 0:
            return 0.0
        b = table.behaviour(i, counts[i], t, pres)
        return (b.author + b.shared if b else 0) + counts[i] / top  # the second term is below 1: ties only

    scores = [score(i) for i in idx]
    order = sorted(range(len(users)), key=lambda j: (-scores[j], j))[:k]
    return Proposal([users[j] for j in order], len(users) - k)

"""Child process for the crash test: appends forever and reports each record as soon as the
outbox says it is stored, until the test SIGKILLs it at a random moment.

Lines on stdout (one write each, unbuffered, so nothing reported is lost with the process):
  OPEN            the outbox is open
  E <id> / D <id> an event / decision whose append returned (must survive the kill)
  T <id>          a telemetry append returned (buffered; durable only after the next F)
  F               flush returned: every T before it must survive
  P <id> ...      pending returned these (every T before is durable) and they are being acked:
                  a kill now may leave them either way
  A <id> ...      ack returned: these ids must be gone
"""

from __future__ import annotations

import os
import random
import sys

from edgeagent.uplink.outbox import Lane, Outbox


def say(line: str) -> None:
    os.write(1, (line + "\n").encode())


def main(path: str, seed: int) -> None:
    rng = random.Random(seed)
    outbox = Outbox(path, telemetry_batch=7, budget_bytes=10**9)
    say("OPEN")
    n = 0
    while True:
        n += 1
        roll = rng.random()
        payload = b'{"n": %d, "pad": "%s"}' % (n, b"x" * rng.randrange(0, 2000))
        if roll < 0.45:
            say(f"E {outbox.append(Lane.EVENT, 'events', payload).id}")
        elif roll < 0.55:
            say(f"D {outbox.append(Lane.DECISION, 'decisions', payload).id}")
        elif roll < 0.9:
            say(f"T {outbox.append(Lane.TELEMETRY, 'telemetry', payload).id}")
        elif roll < 0.92:
            outbox.flush()
            say("F")
        else:
            ids = [r.id for r in outbox.pending(rng.randrange(1, 6))]
            say("P " + " ".join(map(str, ids)))
            outbox.ack(ids)
            say("A " + " ".join(map(str, ids)))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))

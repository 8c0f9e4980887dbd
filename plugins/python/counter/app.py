"""counter: counts events in KV with a plain read-add-write.

Each event is delivered to the `target` config key (default "sink") with
its number in `x-count`; the test suite checks the numbers handed out are
exactly 1..N under concurrency and across crashes.
"""

import wit_world
from wit_world.imports import host
from wit_world.imports.types import Delivery, Event, Outcome, Outcome_Deliver

KEY = "count"


class WitWorld(wit_world.WitWorld):
    def handle(self, event: Event) -> Outcome:
        target = dict(host.config()).get("target", "sink")
        stored = host.kv_get(KEY)
        count = (int(stored.decode()) if stored is not None else 0) + 1
        host.kv_set(KEY, str(count).encode())
        return Outcome_Deliver(
            [Delivery(target=target, headers=[("x-count", str(count))], body=None)]
        )

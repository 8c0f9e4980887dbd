"""{{name}}: a hookyard routing plugin in Python.

hookyard calls `handle` once per received event. Return `Outcome_Drop(reason)`
to filter it out, `Outcome_Deliver([...])` to send it to targets named in
hookyard's config, or raise `Err(message)` to mark the event failed.
"""

import wit_world
from componentize_py_types import Err
from wit_world.imports import host
from wit_world.imports.types import Delivery, Event, Outcome, Outcome_Deliver, Outcome_Drop


class WitWorld(wit_world.WitWorld):
    def handle(self, event: Event) -> Outcome:
        if not event.body:
            return Outcome_Drop("empty body")
        if len(event.body) > 10_000_000:
            raise Err("body too large for this plugin")
        # `[plugins.{{name}}] config = { target = "..." }` in hookyard.toml.
        target = dict(host.config()).get("target", "default")
        # The event's version (contract 0.2.0), when the source's `version`
        # setting found one (e.g. `Stripe-Version`); None otherwise.
        version = event.version or "none"
        host.log(host.Level.INFO, f"event {event.id} (version {version}) -> {target}")
        return Outcome_Deliver(
            [Delivery(target=target, headers=[("x-routed-by", "{{name}}")], body=None)]
        )

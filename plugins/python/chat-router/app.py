"""chat-router: a hookyard routing plugin written in Python.

Reads the JSON body's `type` field. Pings and events without a type are
dropped (with a reason); every other event is reshaped into a chat message
for the `chat_target` target, and events with `"severity": "critical"` are
also sent unchanged to the `pager_target` target.

Built into a WebAssembly component by componentize-py (see
docs/plugins-python.md); `wit_world` is the module it generates from
wit/plugin.wit at build time.
"""

import json

import wit_world
from componentize_py_types import Err
from wit_world.imports import host
from wit_world.imports.types import Delivery, Event, Outcome, Outcome_Deliver, Outcome_Drop

LANGUAGE = "python"
DEFAULT_CHAT_TARGET = "chat"
DEFAULT_PAGER_TARGET = "pager"


class WitWorld(wit_world.WitWorld):
    def handle(self, event: Event) -> Outcome:
        try:
            payload = json.loads(event.body)
        except (ValueError, UnicodeDecodeError) as e:
            # componentize-py turns a raised `Err(value)` into the
            # `err(value)` of the WIT result: the event is marked failed
            # with this message.
            host.log(host.Level.INFO, f"event {event.id} failed: body is not JSON")
            raise Err(f"body is not JSON: {e}")

        kind = payload.get("type") if isinstance(payload, dict) else None
        if not isinstance(kind, str):
            return drop(event, 'no "type" field')
        if kind == "ping":
            return drop(event, "ping events are not routed")

        config = dict(host.config())
        chat_target = config.get("chat_target", DEFAULT_CHAT_TARGET)
        message = {
            "text": f"{kind} from {event.source}",
            "event_id": event.id,
            "payload": payload,
        }
        deliveries = [
            Delivery(
                target=chat_target,
                headers=[
                    ("content-type", "application/json"),
                    ("x-hookyard-plugin", LANGUAGE),
                ],
                body=json.dumps(message).encode(),
            )
        ]
        if payload.get("severity") == "critical":
            # body=None: hookyard sends the event's body unchanged.
            deliveries.append(
                Delivery(
                    target=config.get("pager_target", DEFAULT_PAGER_TARGET),
                    headers=[("x-hookyard-plugin", LANGUAGE)],
                    body=None,
                )
            )

        targets = ", ".join(d.target for d in deliveries)
        host.log(host.Level.INFO, f"event {event.id} ({kind}) -> {targets}")
        return Outcome_Deliver(deliveries)


def drop(event: Event, reason: str) -> Outcome:
    """Logs the decision and builds the drop outcome, so every drop is explained."""
    host.log(host.Level.INFO, f"event {event.id} dropped: {reason}")
    return Outcome_Drop(reason)

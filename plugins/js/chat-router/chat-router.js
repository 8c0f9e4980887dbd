// chat-router: a hookyard routing plugin written in JavaScript.
//
// Reads the JSON body's `type` field. Pings and events without a type are
// dropped (with a reason); every other event is reshaped into a chat message
// for the `chat_target` target, and events with `"severity": "critical"` are
// also sent unchanged to the `pager_target` target.
//
// Built into a WebAssembly component by ComponentizeJS (see
// docs/plugins-javascript.md and plugins/js/componentize.mjs).

import { log, config } from 'hookyard:plugin/host@0.2.0';

const LANGUAGE = 'javascript';
const DEFAULT_CHAT_TARGET = 'chat';
const DEFAULT_PAGER_TARGET = 'pager';

const decoder = new TextDecoder();
const encoder = new TextEncoder();

// `handle: func(event: event) -> result<outcome, string>`.
// Returning an outcome is `ok(outcome)`; throwing a string is `err(string)`.
export function handle(event) {
  try {
    return route(event);
  } catch (e) {
    // ComponentizeJS passes a thrown value through as the `err` payload,
    // which must be a string here: a thrown Error object would trap with
    // "expected a string", losing its message. Turn bugs into readable errs.
    throw typeof e === 'string' ? e : `${e?.name ?? 'Error'}: ${e?.message ?? e}`;
  }
}

function route(event) {
  let payload;
  try {
    payload = JSON.parse(decoder.decode(event.body));
  } catch (e) {
    log('info', `event ${event.id} failed: body is not JSON`);
    throw `body is not JSON: ${e.message}`;
  }

  const kind =
    payload !== null && typeof payload === 'object' && !Array.isArray(payload)
      ? payload.type
      : undefined;
  if (typeof kind !== 'string') {
    return drop(event, 'no "type" field');
  }
  if (kind === 'ping') {
    return drop(event, 'ping events are not routed');
  }

  const settings = new Map(config());
  const message = {
    text: `${kind} from ${event.source}`,
    event_id: event.id,
    payload,
  };
  const deliveries = [
    {
      target: settings.get('chat_target') ?? DEFAULT_CHAT_TARGET,
      headers: [
        ['content-type', 'application/json'],
        ['x-hookyard-plugin', LANGUAGE],
      ],
      body: encoder.encode(JSON.stringify(message)),
    },
  ];
  if (payload.severity === 'critical') {
    // body: undefined is `none`: hookyard sends the event's body unchanged.
    deliveries.push({
      target: settings.get('pager_target') ?? DEFAULT_PAGER_TARGET,
      headers: [['x-hookyard-plugin', LANGUAGE]],
      body: undefined,
    });
  }

  const targets = deliveries.map((d) => d.target).join(', ');
  log('info', `event ${event.id} (${kind}) -> ${targets}`);
  return { tag: 'deliver', val: deliveries };
}

// Logs the decision and builds the drop outcome, so every drop is explained.
function drop(event, reason) {
  log('info', `event ${event.id} dropped: ${reason}`);
  return { tag: 'drop', val: reason };
}

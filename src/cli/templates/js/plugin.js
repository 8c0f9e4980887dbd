// {{name}}: a hookyard routing plugin in JavaScript.
//
// hookyard calls `handle` once per received event. Return
// `{ tag: 'drop', val: reason }` to filter it out, `{ tag: 'deliver', val: [...] }`
// to send it to targets named in hookyard's config, or throw a string to
// mark the event failed. Do not call host imports at the top level: that
// code runs at build time.

import { log, config } from 'hookyard:plugin/host@0.2.0';

export function handle(event) {
  if (event.body.length === 0) {
    return { tag: 'drop', val: 'empty body' };
  }
  // `[plugins.{{name}}] config = { target = "..." }` in hookyard.toml.
  const target = new Map(config()).get('target') ?? 'default';
  // The event's version (contract 0.2.0), when the source's `version`
  // setting found one (e.g. `Stripe-Version`); undefined otherwise.
  log('info', `event ${event.id} (version ${event.version ?? 'none'}) -> ${target}`);
  return {
    tag: 'deliver',
    val: [{ target, headers: [['x-routed-by', '{{name}}']], body: undefined }],
  };
}

// counter: counts events in KV with a plain read-add-write.
//
// Each event is delivered to the `target` config key (default "sink") with
// its number in `x-count`; the test suite checks the numbers handed out are
// exactly 1..N under concurrency and across crashes.

import { config, kvGet, kvSet } from 'hookyard:plugin/host@0.2.0';

const KEY = 'count';
const decoder = new TextDecoder();
const encoder = new TextEncoder();

export function handle(event) {
  const target = new Map(config()).get('target') ?? 'sink';
  const stored = kvGet(KEY);
  const count = (stored === undefined ? 0 : Number(decoder.decode(stored))) + 1;
  kvSet(KEY, encoder.encode(String(count)));
  return {
    tag: 'deliver',
    val: [{ target, headers: [['x-count', String(count)]], body: undefined }],
  };
}

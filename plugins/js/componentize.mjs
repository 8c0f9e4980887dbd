// Builds one JavaScript plugin into a hookyard WebAssembly component.
//
// Usage: node plugins/js/componentize.mjs <plugin.js> <out.wasm>
//
// Calls ComponentizeJS's componentize() directly (the `jco componentize` CLI
// is not used: see docs/plugins-javascript.md). The WIT is the repository's
// wit/ directory, world `plugin`. The engine's HTTP features are disabled so
// the component imports no wasi:http, which hookyard does not provide; the
// script fails if any import outside what hookyard links remains.

import { componentize } from '@bytecodealliance/componentize-js';
import { componentWit } from '@bytecodealliance/jco';
import { writeFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const WIT_DIR = fileURLToPath(new URL('../../wit', import.meta.url));
const WORLD = 'plugin';

// What hookyard links: its own host interface and WASI 0.2 (clocks, random,
// io, cli, filesystem and sockets; the last two have nothing behind them).
const ALLOWED_IMPORTS = /^(hookyard:plugin\/|wasi:(io|clocks|random|cli|filesystem|sockets)\/)/;

const [source, output] = process.argv.slice(2);
if (!source || !output) {
  console.error('usage: node componentize.mjs <plugin.js> <out.wasm>');
  process.exit(2);
}

const { component } = await componentize({
  sourcePath: resolve(source),
  witPath: WIT_DIR,
  worldName: WORLD,
  // Keep stdio (uncaught errors reach hookyard's failure reason via
  // stderr), random (Math.random, crypto.getRandomValues) and clocks
  // (Date.now); drop fetch() and the fetch event, which need wasi:http.
  disableFeatures: ['http', 'fetch-event'],
});

// Every `import ns:pkg/iface@version;` line of the component's WIT.
const imports = (await componentWit(component))
  .split('\n')
  .map((line) => line.match(/^\s*import ([a-z0-9-]+:[^;]+);/)?.[1])
  .filter(Boolean);
const unexpected = imports.filter((name) => !ALLOWED_IMPORTS.test(name));
if (unexpected.length > 0) {
  console.error(`error: ${source} imports what hookyard does not provide: ${unexpected.join(', ')}`);
  process.exit(1);
}

await writeFile(output, component);
console.log(`${source}: imports ${imports.join(', ')}`);

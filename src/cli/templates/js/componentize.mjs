// Builds {{name}}.js into {{name}}.wasm with ComponentizeJS against ./wit.
// HTTP features are disabled: hookyard provides no wasi:http.
import { componentize } from '@bytecodealliance/componentize-js';
import { writeFile } from 'node:fs/promises';

const { component } = await componentize({
  sourcePath: '{{name}}.js',
  witPath: 'wit',
  worldName: 'plugin',
  disableFeatures: ['http', 'fetch-event'],
});
await writeFile('{{name}}.wasm', component);

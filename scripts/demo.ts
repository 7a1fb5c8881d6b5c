// The README's main job on a fresh, offline machine: make a small random OPT checkpoint with the
// project's fixture generator (real Hugging Face layout, GPT-2's real BPE files), then run the
// `opt` CLI on it: tokenize, convert, last-position logits, and streamed generation. Then the
// perplexity of this project's README under the trained fixture (test/fixtures/trained/opt-target).

import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { writeOptCheckpoint } from '../test/fixtures/optCheckpoint.js';

const dir = process.argv[2] ?? '.cache/demo-model';
if (!existsSync(`${dir}/config.json`)) {
  console.log(`writing a random 125m-style OPT checkpoint to ${dir}`);
  await writeOptCheckpoint(dir, { preset: '125m-style', tokenizer: true });
}

const opt = (...args: string[]) =>
  execFileSync(process.execPath, ['--import', 'tsx', 'runtime/src/cli.ts', ...args], { encoding: 'utf8', maxBuffer: 64 << 20 });
const text = 'Hello, world! The quick brown fox';

console.log(`\n$ opt tokenize --model ${dir} --text "${text}"`);
console.log(JSON.stringify(JSON.parse(opt('tokenize', '--model', dir, '--text', text)), null, 2));

for (const dtype of ['fp32', 'int8']) {
  console.log(`$ opt convert --model ${dir} --dtype ${dtype}`);
  console.log(JSON.stringify(JSON.parse(opt('convert', '--model', dir, '--dtype', dtype)), null, 2));
  console.log(`$ opt logits --model ${dir} --dtype ${dtype} --text "${text}" --top-k 5   (full logits vector omitted here)`);
  const { logits, ...rest } = JSON.parse(opt('logits', '--model', dir, '--dtype', dtype, '--text', text, '--top-k', '5')) as {
    logits: number[];
  };
  console.log(JSON.stringify({ ...rest, logits: `[${logits.length} values]` }, null, 2), '\n');
}

// Random weights generate word salad; what matters is that the whole path runs as it would on facebook/opt-125m.
for (const args of [
  ['--max-new-tokens', '16'],
  ['--do-sample', '--top-p', '0.95', '--temperature', '0.8', '--repetition-penalty', '1.2', '--seed', '42', '--max-new-tokens', '16'],
]) {
  console.log(`$ opt generate --model ${dir} "${text}" ${args.join(' ')}`);
  console.log(opt('generate', '--model', dir, text, ...args));
}

// The trained fixture (an OPT model trained here on code and prose): perplexity of this project's README.
const trained = 'test/fixtures/trained/opt-target';
console.log(`$ opt perplexity --model ${trained} README.md`);
console.log(JSON.stringify(JSON.parse(opt('perplexity', '--model', trained, 'README.md')), null, 2));

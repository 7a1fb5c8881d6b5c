// The README's main job on a fresh, offline machine: make a small random OPT checkpoint with the
// project's fixture generator (real Hugging Face layout, GPT-2's real BPE files), then run the
// `opt` CLI on it: tokenize, convert, last-position logits, and streamed generation. Then the
// trained fixture (test/fixtures/trained/opt-target): ghost text on held-out code, and the
// perplexity of this project's README.

import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
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

// The trained fixture (an OPT model trained here on code and prose): ghost text on a file it never
// saw (held out from its training: heldout.txt beside it), greedy, as the editor runs it mid-line.
const trained = 'test/fixtures/trained/opt-target';
const heldOut = '/usr/lib/python3.11/asyncio/locks.py';
if (existsSync(heldOut)) {
  const lines = readFileSync(heldOut, 'utf8').split('\n');
  const cursors: [number, number][] = [
    [90, 23], // "        return self._lo|"
    [103, 20], // "        if self._wai|"
    [78, 14], // "        self._|"
  ];
  const prompts = cursors.map(([line, column]) => [...lines.slice(0, line), lines[line]!.slice(0, column)].join('\n'));
  console.log(
    `$ opt generate --model ${trained} --max-new-tokens 8 --json <${heldOut} cut at ${cursors.length} cursors>   (held out: never trained on)`,
  );
  const rows = JSON.parse(opt('generate', '--model', trained, '--max-new-tokens', '8', '--json', '--', ...prompts)) as {
    generated_text: string;
  }[];
  for (const [i, [line, column]] of cursors.entries()) {
    const suggestion = rows[i]!.generated_text.slice(prompts[i]!.length).split('\n')[0];
    console.log(
      `  line ${line + 1}: ${JSON.stringify(lines[line]!.slice(0, column))} + ${JSON.stringify(suggestion)}   (the file goes on ${JSON.stringify(lines[line]!.slice(column))})`,
    );
  }
  console.log();
}

console.log(`$ opt perplexity --model ${trained} README.md`);
console.log(JSON.stringify(JSON.parse(opt('perplexity', '--model', trained, 'README.md')), null, 2));

// Peak memory of converting a checkpoint, against the size of its weights: the converter streams
// one tensor at a time, so peak RSS should stay near the largest tensor plus the runtime's own
// footprint, never near two copies of the model. Run:
//   node --import tsx bench/convertMemory.ts [--dir .cache/bench-opt-125m] [--dtype fp32]
// (the checkpoint comes from bench/graphOptions.ts, which writes it on first use).

import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    dir: { type: 'string', default: '.cache/bench-opt-125m' },
    dtype: { type: 'string', default: 'fp32' },
    child: { type: 'boolean', default: false },
  },
});

if (values.child) {
  const { convertCheckpoint } = await import('../runtime/src/convert.js');
  const cacheDir = mkdtempSync(join(tmpdir(), 'convert-mem-'));
  const r = await convertCheckpoint(values.dir, { dtype: values.dtype as 'fp32', cacheDir });
  console.log(JSON.stringify({ seconds: r.seconds, maxRssBytes: process.resourceUsage().maxRSS * 1024 }));
  rmSync(cacheDir, { recursive: true, force: true });
} else {
  const weightBytes = readdirSync(values.dir)
    .filter((f) => /\.(safetensors|bin)$/.test(f))
    .reduce((n, f) => n + statSync(join(values.dir, f)).size, 0);
  // A baseline child that only loads the modules: what the process costs before any weight.
  const baseline = JSON.parse(
    execFileSync(
      process.execPath,
      [
        '--import',
        'tsx',
        '-e',
        "await import('./runtime/src/convert.ts'); console.log(JSON.stringify({ maxRssBytes: process.resourceUsage().maxRSS * 1024 }))",
      ],
      { encoding: 'utf8' },
    ),
  ) as { maxRssBytes: number };
  const run = JSON.parse(
    execFileSync(process.execPath, ['--import', 'tsx', 'bench/convertMemory.ts', '--child', '--dir', values.dir, '--dtype', values.dtype], {
      encoding: 'utf8',
    }),
  ) as { seconds: number; maxRssBytes: number };
  const mb = (b: number) => (b / 2 ** 20).toFixed(0);
  console.log(`| checkpoint weights | dtype | convert s | peak RSS | baseline RSS | peak − baseline | (peak − baseline) / weights |`);
  console.log(`|---|---|---|---|---|---|---|`);
  console.log(
    `| ${mb(weightBytes)} MiB | ${values.dtype} | ${run.seconds.toFixed(2)} | ${mb(run.maxRssBytes)} MiB | ${mb(baseline.maxRssBytes)} MiB | ${mb(run.maxRssBytes - baseline.maxRssBytes)} MiB | ${((run.maxRssBytes - baseline.maxRssBytes) / weightBytes).toFixed(2)} |`,
  );
}

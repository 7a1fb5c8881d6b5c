// Runs one measurement of the benchmark suite in this (fresh) process and writes its result, so
// peak RSS and failures stay per configuration. Started by bench/lib/util.ts `runChild`:
//   node --import tsx bench/child.ts <task> '<json params>' <result file>

import { writeFileSync } from 'node:fs';

const TASKS: Record<string, (params: never) => Promise<unknown>> = {
  'ours-cold': async (p) => (await import('./sections/ours.js')).coldLoad(p),
  ours: async (p) => (await import('./sections/ours.js')).measureOurs(p),
  baseline: async () => (await import('./sections/ours.js')).baselineRss(),
  'peer-export': async (p) => (await import('./sections/peer.js')).exportForPeer(p),
  peer: async (p) => (await import('./sections/peer.js')).measurePeer(p),
  bandwidth: async (p) => (await import('./sections/bandwidth.js')).measureBandwidth(p),
  editor: async (p) => (await import('./sections/editor.js')).replayEditing(p),
  'graph-options': async (p) => (await import('./graphOptions.js')).measureGraphOptions(p),
  'decode-step': async (p) => (await import('./decodeStep.js')).measureDecodeStep(p),
  profile: async (p) => (await import('./sections/profile.js')).profileDecode(p),
  'session-settings': async (p) => (await import('./sections/profile.js')).compareSessionSettings(p),
  memory: async (p) => (await import('./sections/profile.js')).measureMemory(p),
};

const [task, paramsJson, outFile] = process.argv.slice(2);
if (!task || !outFile || !TASKS[task]) {
  console.error(`usage: node --import tsx bench/child.ts <${Object.keys(TASKS).join('|')}> '<json>' <result file>`);
  process.exit(2);
}
try {
  const result = await TASKS[task]!(JSON.parse(paramsJson ?? '{}') as never);
  writeFileSync(outFile, JSON.stringify({ ok: true, result }));
} catch (err) {
  writeFileSync(outFile, JSON.stringify({ ok: false, error: (err as Error)?.stack ?? String(err) }));
}
process.exit(0); // do not wait on handles a library left open

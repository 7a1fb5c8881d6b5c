// Turns bench/out/results.json into the markdown summary bench/RESULTS.md: the machine, the
// targets met or not, every section's tables, ours/theirs ratios, the decode profile and the
// findings it supports. Called by bench/run.ts (or `npm run bench -- --report-only`).

import type { CompletionQualityResult } from './sections/completionQuality.js';
import type { QualityResult } from './sections/quality.js';
import type { SpeculationResult } from './sections/speculation.js';
import { DEFAULT_TEMPLATES } from '../extension/src/rewrite/rewriteTemplates.js';
import { PREFILL_CHUNK } from '../runtime/src/decoder.js';
import { type DecodeStepResult, decodeStepRows } from './decodeStep.js';
import type { GraphOptionRow } from './graphOptions.js';
import type { BandwidthResult } from './sections/bandwidth.js';
import type { EditorResult } from './sections/editor.js';
import type { ColdResult, OursResult } from './sections/ours.js';
import type { ExportResult, PeerResult } from './sections/peer.js';
import type { MemoryResult, ProfileCase, SessionSettingRow } from './sections/profile.js';
import { type SizeBandwidthResult, type SizeDecodeResult, type SizePrepareResult, kvBytesAt, sizeShape } from './sections/sizes.js';
import type { OptSize } from './lib/util.js';
import type { Measured, Results, SectionName, SectionResult } from './run.js';

const f = (x: number | undefined, digits = 1): string =>
  x === undefined || !Number.isFinite(x) ? '—' : x.toLocaleString('en', { minimumFractionDigits: digits, maximumFractionDigits: digits });
const mb = (bytes: number | undefined): string => (bytes === undefined ? '—' : `${f(bytes / 2 ** 20, 0)} MiB`);
const ratio = (a: number | undefined, b: number | undefined): string => (a === undefined || b === undefined || !b ? '—' : `${f(a / b, 2)}`);

function runsOf<T>(r: Results, section: SectionName, task: string): Measured<T>[] {
  return (r.sections[section]?.runs ?? []).filter((x) => x.task === task) as Measured<T>[];
}
const okResults = <T>(r: Results, section: SectionName, task: string): T[] =>
  runsOf<T>(r, section, task)
    .filter((x) => x.ok)
    .map((x) => x.result!);

function failures(r: Results, section: SectionName): string[] {
  const s = r.sections[section];
  if (!s) return [`*Not run in this invocation.*`];
  const out: string[] = [];
  if (s.error) out.push(`**Section failed:** \`${s.error.split('\n')[0]}\``);
  for (const x of s.runs.filter((x) => !x.ok))
    out.push(`**${x.task} ${JSON.stringify(x.params)} failed:** ${x.error?.split('\n').slice(0, 2).join(' ')}`);
  const busy = s.runs.filter((x) => x.othersCores >= 0.3);
  if (busy.length > 0)
    out.push(
      `*Other processes used CPU during ${busy.length} of this section's ${s.runs.length} measurements (${busy.map((x) => `${x.task}${paramsTag(x.params)}: ${f(x.othersCores, 1)} cores`).join('; ')}${busy.some((x) => x.othersBusy.length) ? `; busiest: ${[...new Set(busy.flatMap((x) => x.othersBusy.slice(0, 2)))].slice(0, 4).join(', ')}` : ''}). On a 2-core machine those figures are low.*`,
    );
  return out;
}

function paramsTag(p: unknown): string {
  const o = p as { dtype?: string; threads?: number };
  return o && (o.dtype || o.threads) ? ` ${o.dtype ?? ''}${o.threads ? `/${o.threads}t` : ''}` : '';
}

function sectionHeader(r: Results, section: SectionName, title: string): string[] {
  const s = r.sections[section];
  const when = s
    ? ` *(measured ${s.measuredAt.slice(0, 16).replace('T', ' ')} UTC at ${s.commit ?? '?'}, ${s.quick ? 'quick' : 'full'} mode, ${f(s.seconds, 0)} s)*`
    : '';
  return [`## ${title}`, '', ...(when ? [when.trim(), ''] : []), ...failures(r, section).flatMap((l) => [l, ''])];
}

/** Everything the tables and the targets need, pulled out of the raw results once. */
function digest(r: Results) {
  const ours = okResults<OursResult>(r, 'ours', 'ours');
  const cold = okResults<ColdResult>(r, 'ours', 'ours-cold');
  const peers = okResults<PeerResult>(r, 'peer', 'peer');
  const oursAt = (dtype: string, threads: number) => ours.find((o) => o.dtype === dtype && o.threads === threads);
  const peerAt = (dtype: string, threads: number) => peers.find((o) => o.dtype === dtype && o.threads === threads);
  /** transformers.js's best precision at a thread count: the fastest greedy decode. */
  const peerBest = (threads: number) =>
    peers
      .filter((o) => o.threads === threads)
      .sort((a, b) => (b.generation.greedy?.decodeTokensPerSecond ?? 0) - (a.generation.greedy?.decodeTokensPerSecond ?? 0))[0];
  const bandwidth = okResults<BandwidthResult>(r, 'bandwidth', 'bandwidth')[0];
  const editor = okResults<EditorResult>(r, 'editor', 'editor')[0];
  const profile = okResults<{ threads: number; cases: ProfileCase[] }>(r, 'profile', 'profile')[0];
  const settings = okResults<SessionSettingRow[]>(r, 'profile', 'session-settings')[0];
  const decodeStep = okResults<DecodeStepResult>(r, 'graph', 'decode-step')[0];
  const graph = okResults<{ threads: number; promptLen: number; rows: GraphOptionRow[] }>(r, 'graph', 'graph-options')[0];
  const exported = okResults<ExportResult>(r, 'peer', 'peer-export')[0];
  const baseline = okResults<{ rssBytes: number; peakRssBytes: number }>(r, 'ours', 'baseline')[0];
  const memory = okResults<MemoryResult>(r, 'profile', 'memory');
  const int8Bytes = bandwidth?.decodeBytes.find((d) => d.dtype === 'int8')?.totalBytes;
  const ceiling = (threads: number) => {
    const bw = bandwidth?.large.find((b) => b.threads === threads)?.bestGBps; // the best repetition: the machine's limit, least disturbed
    return bw && int8Bytes ? (bw * 1e9) / int8Bytes : undefined;
  };
  return {
    ours,
    cold,
    peers,
    oursAt,
    peerAt,
    peerBest,
    bandwidth,
    editor,
    profile,
    settings,
    decodeStep,
    graph,
    exported,
    baseline,
    memory,
    int8Bytes,
    ceiling,
  };
}

type Digest = ReturnType<typeof digest>;

export function renderReport(r: Results): string {
  const d = digest(r);
  const m = r.machine;
  const out: string[] = [
    '# Benchmarks',
    '',
    'Generated by `npm run bench` (bench/run.ts) from bench/out/results.json; `npm run bench -- --quick` runs a ~3-minute subset,',
    '`--only ours,peer,bandwidth,editor,graph,profile,sizes,quality,speculation` refreshes some sections, `--report-only` rewrites this file.',
    "The model is a **random checkpoint with opt-125m's exact shapes** (vocab 50272, hidden 768, 12 layers, 12 heads, ffn 3072,",
    '2048 positions): speed and memory are those of opt-125m, the generated text is not (section 7 adds opt-350m and opt-1.3b shapes). Figures are medians.',
    '',
    '| machine | |',
    '|---|---|',
    `| CPU | ${m.cpuModel}, ${m.logicalCores} logical cores |`,
    `| RAM | ${f(m.ramBytes / 2 ** 30, 1)} GiB |`,
    `| runtime | Node ${m.node}, ${m.onnxruntime}, @huggingface/transformers ${m.transformersJs} |`,
    `| date | ${m.date} |`,
    `| code | commit ${r.code?.commit ?? '?'}${r.code?.runtimeChanged.length ? ` with uncommitted runtime changes (${r.code.runtimeChanged.length} files)` : ''} |`,
    `| run | ${r.quick ? 'quick' : 'full'}, ${f(r.seconds / 60, 1)} min; load average at start ${m.loadAverage.map((x) => f(x, 2)).join(' / ')}${sectionsFromOtherRuns(r)} |`,
    '',
    ...targets(r, d),
    ...oursSection(r, d),
    ...peerSection(r, d),
    ...bandwidthSection(r, d),
    ...editorSection(r, d),
    ...graphSection(r, d),
    ...profileSection(r, d),
    ...sizesSection(r),
    ...qualitySection(r),
    ...speculationSection(r),
    ...findings(d),
  ];
  return `${out.join('\n')}\n`;
}

function targets(r: Results, d: Digest): string[] {
  const ours = d.oursAt('int8', 2);
  const best = d.peerBest(2);
  const rows: string[] = [];
  const row = (target: string, measured: string, met: boolean | undefined) =>
    rows.push(`| ${target} | ${measured} | ${met === undefined ? 'not measured' : met ? '**met**' : '**not met**'} |`);
  const oursDecode = ours?.generation.greedy.decodeTokensPerSecond;
  const theirs = best?.generation.greedy?.decodeTokensPerSecond;
  row(
    'decode ≥ 2× transformers.js (its best precision), int8, batch 1, 2 threads',
    `ours ${f(oursDecode)} tok/s vs transformers.js ${best?.dtype ?? '—'} ${f(theirs)} tok/s = **${ratio(oursDecode, theirs)}×**`,
    oursDecode && theirs ? oursDecode >= 2 * theirs : undefined,
  );
  const ceil = d.ceiling(2);
  row(
    'decode ≥ 50% of the bandwidth ceiling (int8, 2 threads)',
    `${f(oursDecode)} of ${f(ceil, 0)} tok/s = **${f(oursDecode && ceil ? (100 * oursDecode) / ceil : undefined, 0)}%**`,
    oursDecode && ceil ? oursDecode >= 0.5 * ceil : undefined,
  );
  const lat = d.editor ? Math.max(...d.editor.sessions.map((s) => s.paused.keystrokeToResultMs.p50)) : undefined;
  const latLine = d.editor?.sessions.every((s) => s.pausedLineLength)
    ? Math.max(...d.editor.sessions.map((s) => s.pausedLineLength!.keystrokeToResultMs.p50))
    : undefined;
  const e = d.editor;
  rows.push(
    `| p50 keystroke → completion ≤ 250 ms (single line, 1,500-token context, prefix cache warm) | ${e ? e.sessions.map((s) => `${s.document}: **${f(s.paused.keystrokeToResultMs.p50, 0)} ms** when typing stops with all ${e.maxNewTokens} tokens generated (${waitText(e)} + ${f(s.paused.requestMs.p50, 0)} ms request)${s.pausedLineLength ? `, **${f(s.pausedLineLength.keystrokeToResultMs.p50, 0)} ms** with the line's own length (${f(s.pausedLineLength.completionTokensP50, 0)} tokens p50)` : ''}; ${f(s.keystrokeToResultMs.p50, 0)} ms for the ${s.shown} of ${s.requests} completions shown while typing`).join('; ') : '—'} | ${lat === undefined ? 'not measured' : `${lat <= 250 ? '**met**' : '**not met**'} at ${e!.maxNewTokens} tokens${latLine === undefined ? '' : `; ${latLine <= 250 ? '**met**' : '**not met**'} at the line's length`}`} |`,
  );
  const warm = d.ours.length ? Math.max(...d.ours.map((o) => o.warmLoadMs)) : undefined;
  row(
    'warm load ≤ 1 s',
    d.ours.map((o) => `${o.dtype}/${o.threads}t ${f(o.warmLoadMs, 0)} ms`).join(', ') || '—',
    warm === undefined ? undefined : warm <= 1000,
  );
  const rss = d.ours.filter((o) => o.threads === 2).map((o) => ({ o, x: o.peakRssBytes / o.modelBytes }));
  row(
    "peak RSS ≤ 2× the weights' size (the converted model files of that precision; 2 threads)",
    rss
      .map(
        ({ o, x }) =>
          `${o.dtype}: peak ${mb(o.peakRssBytes)} = **${f(x, 2)}×** ${mb(o.modelBytes)} (after generation only: ${f(o.rssAfterGenerationBytes / o.modelBytes, 2)}×)`,
      )
      .join('; ') || '—',
    rss.length ? rss.every(({ x }) => x <= 2) : undefined,
  );
  const sz = sizeRows(r.sections.sizes);
  if (sz.length) {
    const lat = sz.filter((x) => x.latencyRatio !== undefined);
    row(
      'sizes: keystroke → result p50 ≤ 1.5× the decode ceiling time of the completion (+ debounce), int8, 2 threads',
      lat.map((x) => `${x.size} **${f(x.latencyRatio, 2)}×**`).join(', ') || '—',
      lat.length ? lat.every((x) => x.latencyRatio! <= 1.5) : undefined,
    );
    const mem = sz.filter((x) => x.memoryRatio !== undefined);
    row(
      'sizes: runtime peak RSS ≤ weights + 2 contexts of KV + 200 MiB',
      mem.map((x) => `${x.size} **${f(x.memoryRatio, 2)}×**`).join(', ') || '—',
      mem.length ? mem.every((x) => x.memoryRatio! <= 1) : undefined,
    );
  }
  return ['## Targets', '', '| target | measured | verdict |', '|---|---|---|', ...rows, ''];
}

function oursSection(r: Results, d: Digest): string[] {
  const out = sectionHeader(r, 'ours', '1. Our runtime: load, prefill, time to first token, decode, memory');
  if (d.ours.length === 0) return out;
  const lengths = d.ours[0]!.prefill.map((p) => p.tokens);
  const g = d.ours[0]!.generation.greedy;
  out.push(
    `Each row is its own child process. Decode: ${g.promptTokens}-token prompt + ${g.newTokens} new tokens through \`generateStream\`, tokens/s over tokens 2…${g.newTokens}; TTFT = call → first token (tokenization + prefill + sampling). Top-p: p 0.95, temperature 0.8, top_k 0 (the whole vocabulary; on random weights the nucleus is most of the vocabulary, a worst case); top-k: k 50, temperature 0.8 (what transformers.js can do). Prefill: one \`OptDecoder.forward\` over the prompt (which runs prompts over ${PREFILL_CHUNK} tokens in ${PREFILL_CHUNK}-token chunks). "step ms" is the decoder alone at the same context.`,
    '',
    `| precision | threads | ${lengths.map((n) => `prefill ${n} tok/s`).join(' | ')} | TTFT ms | decode tok/s greedy | top-p | top-k | step ms |`,
    `|---|---|${lengths.map(() => '---|').join('')}---|---|---|---|---|`,
  );
  for (const o of d.ours) {
    out.push(
      `| ${o.dtype} | ${o.threads} | ${o.prefill.map((p) => f(p.tokensPerSecond, 0)).join(' | ')} | ${f(o.generation.greedy.ttftMs, 0)} | ${f(o.generation.greedy.decodeTokensPerSecond)} | ${f(o.generation.topP.decodeTokensPerSecond)} | ${f(o.generation.topK.decodeTokensPerSecond)} | ${f(o.decoderStepMs, 2)} |`,
    );
  }
  out.push(
    '',
    `Load and memory. Cold load = convert (forced) + open, as a first start; warm load = \`loadOptModel\` on the cached model (median), split into its parts timed alone. RSS: after the warm load, after the generation runs above, and the process peak (\`maxRSS\`) after the prefills of up to ${Math.max(...lengths)} tokens.`,
    '',
    '| precision | threads | cold load s (convert s) | warm load ms | lookup / tokenizer / session ms | RSS after load | after generation | peak | model files | peak / model files |',
    '|---|---|---|---|---|---|---|---|---|---|',
  );
  for (const o of d.ours) {
    const c = d.cold.find((x) => x.dtype === o.dtype && x.threads === o.threads);
    const w = o.warmLoadParts;
    out.push(
      `| ${o.dtype} | ${o.threads} | ${f(c?.coldLoadSeconds, 2)} (${f(c?.convertSeconds, 2)}) | ${f(o.warmLoadMs, 0)} | ${f(w.cacheLookupMs, 0)} / ${f(w.tokenizerMs, 0)} / ${f(w.sessionMs, 0)} | ${mb(o.rssAfterLoadBytes)} | ${mb(o.rssAfterGenerationBytes)} | ${mb(o.peakRssBytes)} | ${mb(o.modelBytes)} | ${f(o.peakRssBytes / o.modelBytes, 2)} |`,
    );
  }
  const base = d.baseline;
  out.push('');
  if (base)
    out.push(
      `A process that only loads Node, onnxruntime-node, the runtime's modules and the tokenizer holds ${mb(base.rssBytes)} (peak ${mb(base.peakRssBytes)}).`,
    );
  if (d.cold.length)
    out.push(
      `Conversion peak RSS (the cold-load processes): ${d.cold.map((c) => `${c.dtype}/${c.threads}t ${mb(c.convertPeakRssBytes)}`).join(', ')}.`,
    );
  out.push('');
  return out;
}

function peerSection(r: Results, d: Digest): string[] {
  const out = sectionHeader(r, 'peer', '2. Side by side with transformers.js');
  if (d.exported) {
    out.push(
      `Export (${d.exported.reused ? 'reused' : `written in ${f(d.exported.seconds, 1)} s`}): our plain-ONNX graph (Concat KV cache, logits for every position, no \`num_logits_to_keep\`) as \`onnx/model.onnx\` + \`model.onnx_data\` (fp32) and our int8 graph (com.microsoft MatMulNBits, block 32, accuracy_level 4) as \`onnx/model_quantized.onnx\` + \`model_quantized.onnx_data\`, loaded with \`dtype: 'fp32'\` / \`'q8'\`; tokenizer.json from the test fixtures. Loaded with \`AutoModelForCausalLM.from_pretrained(…, { local_files_only: true, dtype, device: 'cpu', session_options: { intraOpNumThreads } })\`, generation from the same token ids.`,
      '',
    );
  }
  for (const dtype of ['q8', 'fp32']) {
    const tried = runsOf<PeerResult>(r, 'peer', 'peer').filter((x) => (x.params as { dtype: string }).dtype === dtype);
    const worked = tried.filter((x) => x.ok).length;
    if (tried.length)
      out.push(
        `- \`dtype: '${dtype}'\`: ${worked === tried.length ? 'loads and generates' : worked ? `worked in ${worked} of ${tried.length} runs` : `**fails**: ${tried[0]!.error?.split('\n')[0]}`}.`,
      );
  }
  const note = d.peers[0]?.importNote;
  if (note) out.push(`- Import: ${note}.`);
  if (d.peers.length)
    out.push(`- transformers.js's tokenizer gives our ids for the prompt: ${d.peers.every((p) => p.tokenizerMatches) ? 'yes' : '**no**'}.`);
  out.push('');
  if (d.peers.length === 0) return out;

  const lengths = d.peers[0]!.prefill.map((p) => p.tokens);
  out.push(
    'transformers.js on its own (prefill = one `generate` of a single token, which also returns logits for every prompt position; TTFT includes its tokenizer):',
    '',
    `| dtype | threads | load ms | ${lengths.map((n) => `prefill ${n} tok/s`).join(' | ')} | TTFT ms | decode tok/s greedy | top-k | peak RSS |`,
    `|---|---|---|${lengths.map(() => '---|').join('')}---|---|---|---|`,
  );
  for (const p of d.peers)
    out.push(
      `| ${p.dtype} | ${p.threads} | ${f(p.loadMs, 0)} | ${p.prefill.map((x) => f(x.tokensPerSecond, 0)).join(' | ')} | ${f(p.generation.greedy?.ttftMs, 0)} | ${f(p.generation.greedy?.decodeTokensPerSecond)} | ${f(p.generation.topK?.decodeTokensPerSecond)} | ${mb(p.peakRssBytes)} |`,
    );
  out.push('');

  const threadsList = [...new Set(d.peers.map((p) => p.threads))];
  for (const threads of threadsList) {
    const pairs: [string, OursResult | undefined, PeerResult | undefined][] = [
      [`ours int8 vs transformers.js's best (${d.peerBest(threads)?.dtype})`, d.oursAt('int8', threads), d.peerBest(threads)],
      ['ours fp32 vs transformers.js fp32', d.oursAt('fp32', threads), d.peerAt('fp32', threads)],
      ['ours int8 vs transformers.js q8 (same quantized weights)', d.oursAt('int8', threads), d.peerAt('q8', threads)],
    ];
    for (const [title, o, p] of pairs) {
      if (!o || !p) continue;
      out.push(
        `**${title}, ${threads} thread${threads > 1 ? 's' : ''}** (ours/theirs > 1 is better for ours on rates, < 1 on times and memory):`,
        '',
        '| figure | ours | theirs | ours/theirs |',
        '|---|---|---|---|',
      );
      const fig = (name: string, a: number | undefined, b: number | undefined, digits = 1) =>
        out.push(`| ${name} | ${f(a, digits)} | ${f(b, digits)} | ${ratio(a, b)} |`);
      fig('warm load ms', o.warmLoadMs, p.loadMs, 0);
      for (const x of p.prefill)
        fig(`prefill ${x.tokens} tok/s`, o.prefill.find((y) => y.tokens === x.tokens)?.tokensPerSecond, x.tokensPerSecond, 0);
      fig('TTFT ms (128-token prompt)', o.generation.greedy.ttftMs, p.generation.greedy?.ttftMs, 0);
      fig('decode tok/s, greedy', o.generation.greedy.decodeTokensPerSecond, p.generation.greedy?.decodeTokensPerSecond);
      fig('decode tok/s, top-k 50 sampling', o.generation.topK.decodeTokensPerSecond, p.generation.topK?.decodeTokensPerSecond);
      fig('peak RSS MiB', o.peakRssBytes / 2 ** 20, p.peakRssBytes / 2 ** 20, 0);
      out.push('');
    }
  }

  out.push('**Same tokens?** (ours vs transformers.js from the same prompt ids)', '');
  for (const p of d.peers) {
    const o = d.oursAt(p.dtype === 'q8' ? 'int8' : 'fp32', p.threads);
    if (!o) continue;
    out.push(
      `- ${p.dtype === 'q8' ? 'int8 / q8' : 'fp32'}, ${p.threads} thread(s): greedy ${sameTokens(o.generation.greedy.tokenIds, p.generation.greedy?.tokenIds)}; greedy with repetition_penalty 1.5 (32 tokens) ${sameTokens(o.checkTokenIds, p.checkTokenIds)}` +
        (p.oursOnTheirGraphCheckIds
          ? `; our generation on their (plain) graph file vs theirs: ${sameTokens(p.oursOnTheirGraphCheckIds, p.checkTokenIds)}.`
          : '.'),
    );
  }
  out.push(
    '',
    'Random weights make plain greedy repeat one token, so the repetition-penalty run is the meaningful check; near-uniform logits also make it sensitive to rounding, so a divergence between our fused graph (GroupQueryAttention, SkipLayerNormalization) and the plain graph is expected when the same pipeline on the same file agrees. Sampled runs use different random generators and are not compared.',
    '',
  );
  return out;
}

function sameTokens(a: number[] | undefined, b: number[] | undefined): string {
  if (!a || !b) return 'not compared';
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++)
    if (a[i] !== b[i]) return `**differ from token ${i}** (ours ${a.slice(i, i + 4).join(',')}… theirs ${b.slice(i, i + 4).join(',')}…)`;
  return a.length === b.length ? `identical (${n} tokens)` : `identical for ${n} tokens, lengths differ`;
}

function bandwidthSection(r: Results, d: Digest): string[] {
  const out = sectionHeader(r, 'bandwidth', '3. The physical limit: memory bandwidth and the decode ceiling');
  const b = d.bandwidth;
  if (!b) return out;
  out.push(
    `bench/membw.c (${b.compiler}, \`-O3 -march=native\`): each thread sums its slice of one buffer with 64-bit loads. "DRAM" reads a ${mb(b.large[0]?.bufferBytes)} buffer once per repetition (the reported last-level cache is ${mb(b.llcBytes)}); "decode working set" reads a buffer the size of one int8 decode step's weights over and over, as decode does.`,
    '',
    '| threads | DRAM read GB/s (median / best) | decode-working-set read GB/s | int8 decode ceiling tok/s (DRAM) | ours int8 greedy tok/s | ours / ceiling |',
    '|---|---|---|---|---|---|',
  );
  for (const t of [1, 2]) {
    const large = b.large.find((x) => x.threads === t),
      ws = b.workingSet.find((x) => x.threads === t);
    const o = d.oursAt('int8', t)?.generation.greedy.decodeTokensPerSecond;
    const c = d.ceiling(t);
    out.push(
      `| ${t} | ${f(large?.medianGBps)} / ${f(large?.bestGBps)} | ${f(ws?.medianGBps)} | ${f(c, 0)} | ${f(o)} | ${c && o ? `${f((100 * o) / c, 0)}%` : '—'} |`,
    );
  }
  out.push(
    '',
    'Bytes one batch-1 decode step reads (initializers of the converted model; a Gather reads one row of its table):',
    '',
    '| precision | per decode step | of which | all weights held |',
    '|---|---|---|---|',
  );
  for (const x of b.decodeBytes)
    out.push(
      `| ${x.dtype} | ${f(x.totalBytes / 1e6, 1)} MB | ${Object.entries(x.parts)
        .sort((p, q) => q[1] - p[1])
        .map(([k, v]) => `${k} ${f(v / 1e6, 1)}`)
        .join(', ')} | ${f(x.initializerBytes / 1e6, 1)} MB |`,
    );
  out.push('');
  return out;
}

/** After `--only`: the sections this run did not measure keep their own date and commit (stamped on each). */
function sectionsFromOtherRuns(r: Results): string {
  const older = Object.entries(r.sections)
    .filter(([, s]) => s && s.measuredAt < r.startedAt)
    .map(([name]) => name);
  return older.length
    ? `; this run refreshed ${
        Object.keys(r.sections)
          .filter((n) => !older.includes(n))
          .join(', ') || 'no section'
      }, the others (${older.join(', ')}) are from earlier runs, each stamped with its date and commit`
    : '';
}

/** "50 ms (VS Code) + 75 ms debounce": what passes between a keystroke and the request. */
function waitText(e: { debounceMs: number; wordEndDebounceMs?: number; editorDelayMs?: number }): string {
  const ours =
    e.wordEndDebounceMs === undefined || e.wordEndDebounceMs === e.debounceMs
      ? `${e.debounceMs} ms (the extension's debounce)`
      : `${e.debounceMs} ms after a keystroke inside a word, ${e.wordEndDebounceMs} ms after one that ends a word (the extension's debounce)`;
  return e.editorDelayMs ? `${e.editorDelayMs} ms (VS Code's own delay) + ${ours}` : ours;
}

function editorSection(r: Results, d: Digest): string[] {
  const out = sectionHeader(r, 'editor', '4. Editor latency through the runtime process');
  const e = d.editor;
  if (!e) return out;
  out.push(
    `The real runtime process (\`opt rpc\`, JSON-RPC over stdio, inference worker, scheduler, prefix cache), ${e.dtype}, ${e.threads} threads (loaded in ${f(e.loadSeconds, 2)} s). A ${e.contextTokens}-token document is opened (one completion at its end warms the prefix cache), then text is typed after it one character at a time. Keystroke gaps follow a seeded model of typing (~105 ms inside words, pauses after spaces, punctuation and line ends). A \`Complete\` (stop_strings ['\\n'], max_new_tokens ${e.maxNewTokens}) is sent when no other key follows a keystroke within the wait, ${waitText(e)}; when the next keystroke arrives before the result the request is cancelled (\`$/cancelRequest\`), as the editor does. Idle time between requests is skipped. Latency = that wait + request round trip. CPU = the runtime process's user + system time over the session (/proc/<pid>/stat), divided by the completions shown.`,
    '',
    '**While typing** (the replay: shown = completions that arrived before the next keystroke):',
    '',
    '| document | typed chars (chars/s) | requests | shown | cancelled | keystroke → result p50 / p95 / max ms | request p50 / p95 ms | prefix reuse | prefilled tokens p50 (prompt p50) | completion tokens (mean) | runtime CPU s | CPU s per shown |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|',
  );
  for (const s of e.sessions) {
    out.push(
      `| ${s.document} | ${s.keystrokes} (${f(s.charsPerSecond, 1)}) | ${s.requests} | ${s.shown} | ${s.cancelled} | ${f(s.keystrokeToResultMs.p50, 0)} / ${f(s.keystrokeToResultMs.p95, 0)} / ${f(s.keystrokeToResultMs.max, 0)} | ${f(s.requestMs.p50, 0)} / ${f(s.requestMs.p95, 0)} | ${f(100 * s.prefixReuse, 1)}% | ${f(s.prefilledTokensP50, 0)} (${f(s.promptTokensP50, 0)}) | ${f(s.completionTokensMean, 1)} | ${f(s.cpuSeconds, 1)} | ${f(s.cpuSecondsPerShown, 2)} |`,
    );
  }
  out.push(
    '',
    `**When typing stops** after a keystroke (evenly spaced points of the same text, each request runs to its end). "${e.maxNewTokens} tokens": every request generates all ${e.maxNewTokens} (random weights never end a line). "line length": the same points, each request given as many tokens as the rest of the typed line has plus the newline — the length a trained model's single-line completion would have:`,
    '',
    `| document | samples | ${e.maxNewTokens} tokens: keystroke → result p50 / p95 ms | request p50 / p95 ms | prefilled tokens p50 | line length: tokens p50 | keystroke → result p50 / p95 ms | request p50 / p95 ms |`,
    '|---|---|---|---|---|---|---|---|',
  );
  for (const s of e.sessions) {
    const l = s.pausedLineLength;
    out.push(
      `| ${s.document} | ${s.paused.samples} | ${f(s.paused.keystrokeToResultMs.p50, 0)} / ${f(s.paused.keystrokeToResultMs.p95, 0)} | ${f(s.paused.requestMs.p50, 0)} / ${f(s.paused.requestMs.p95, 0)} | ${f(s.paused.prefilledTokensP50, 0)} | ${l ? f(l.completionTokensP50, 0) : '—'} | ${l ? `${f(l.keystrokeToResultMs.p50, 0)} / ${f(l.keystrokeToResultMs.p95, 0)}` : '—'} | ${l ? `${f(l.requestMs.p50, 0)} / ${f(l.requestMs.p95, 0)}` : '—'} |`,
    );
  }
  out.push(
    '',
    `Prefix cache over the run: ${e.prefixCache.hits} hits, ${e.prefixCache.misses} misses. The runtime process peaked at ${mb(e.runtimePeakRssBytes)} resident (model, worker, prefix cache). With random weights a completion rarely produces a newline, so most run all ${e.maxNewTokens} tokens; a real model's single-line completions often stop earlier.`,
    '',
  );
  return out;
}

function graphSection(r: Results, d: Digest): string[] {
  const out = sectionHeader(r, 'graph', '5. Graph options');
  if (d.decodeStep) {
    out.push(
      `KV cache layouts: Concat (plain ops, new outputs every step), in place (GroupQueryAttention over a fixed-capacity buffer bound as output, which onnxruntime-node copies back whole) and append (the buffer read as an input, only the new keys/values returned; the CPU default), ${d.decodeStep.dtype}, ${d.decodeStep.threads} threads, medians over ${d.decodeStep.steps} steps (bench/decodeStep.ts):`,
      '',
      ...decodeStepRows(d.decodeStep.rows),
    );
    out.push('');
  }
  if (d.graph) {
    out.push(
      `Precision, operators and MatMulNBits accuracy_level, ${d.graph.threads} threads, prompt ${d.graph.promptLen} tokens (bench/graphOptions.ts; each case has a time budget, so slow cases run fewer steps):`,
      '',
      '| graph | warm load ms | prefill tok/s | decode ms/token | decode tok/s | steps |',
      '|---|---|---|---|---|---|',
    );
    for (const x of d.graph.rows)
      out.push(
        `| ${x.name} | ${f(x.warmLoadMs, 0)} | ${f(x.prefillTokensPerSecond, 0)} | ${f(x.decodeMsPerToken, 2)} | ${f(x.decodeTokensPerSecond)} | ${x.decodeSteps} |`,
      );
    out.push('');
  }
  return out;
}

function profileSection(r: Results, d: Digest): string[] {
  const out = sectionHeader(r, 'profile', '6. Where a decode step goes (onnxruntime profiler)');
  const p = d.profile;
  if (p) {
    out.push(
      `A session opened on the cached model with \`enableProfiling\` (bench/sections/profile.ts), ${p.threads} threads; per step: the wall time JS sees, onnxruntime's own \`model_run\`, the sum of kernel times, and kernel ms by operator (MatMulNBits split by projection from its shapes). "outside run" = wall − model_run: the Node binding's work around \`Run\` (building input tensors, copying bound outputs back).`,
      '',
      '| case | wall ms | model_run ms | kernels ms | outside run ms | top operators, ms per step |',
      '|---|---|---|---|---|---|',
    );
    for (const c of p.cases)
      out.push(
        `| ${c.label} | ${f(c.wallMs, 2)} | ${f(c.modelRunMs, 2)} | ${f(c.kernelMs, 2)} | **${f(c.wallMs - c.modelRunMs, 2)}** | ${c.byOp
          .slice(0, 7)
          .map((o) => `${o.op} ${f(o.ms, 2)}`)
          .join(', ')} |`,
      );
    out.push('');
  }
  if (d.settings) {
    out.push(
      'Thread settings, int8 graph (append cache), one-token steps (CPU ms = process user + system time per step, thread-pool spinning included):',
      '',
      '| setting | context | ms per step | CPU ms per step |',
      '|---|---|---|---|',
    );
    for (const s of d.settings) out.push(`| ${s.label} | ${s.context} | ${f(s.msPerStep, 2)} | ${f(s.cpuMsPerStep, 2)} |`);
    out.push('');
  }
  if (d.memory.length) {
    out.push(
      `Resident memory of the int8 model (2 threads), each setting in its own process: after loading, after a 1,024-token prompt prefilled in ${PREFILL_CHUNK}-token chunks (as the engine does), after 32 more one-token steps, and after a full garbage collection (\`--expose-gc\`); "live ArrayBuffers" is what JS still holds then (the KV cache):`,
      '',
      '| setting | after load | after chunked prefill | after 32 steps | after GC | live ArrayBuffers | peak | decode ms per step (context 1,024) |',
      '|---|---|---|---|---|---|---|---|',
    );
    for (const a of d.memory)
      out.push(
        `| ${a.label} | ${mb(a.rssAfterLoadBytes)} | ${mb(a.rssAfterChunkedPrefillBytes)} | ${mb(a.rssAfterDecodeBytes)} | ${mb(a.rssAfterGcBytes)} | ${mb(a.arrayBuffersAfterGcBytes)} | ${mb(a.peakRssBytes)} | ${f(a.decodeMsPerStep, 2)} |`,
      );
    out.push('');
  }
  return out;
}

/** Findings the figures support, each with its numbers, and what they suggest for the runtime. */
function findings(d: Digest): string[] {
  const out = ['## Findings and recommendations', ''];
  const p = d.profile?.cases ?? [];
  const caseOf = (layout: 'append' | 'in-place', context: number) =>
    p.find(
      (c) => c.dtype === 'int8' && c.label.includes(layout === 'append' ? 'append cache' : 'in-place cache bound') && c.context === context,
    );
  const a128 = caseOf('append', 128),
    a1024 = caseOf('append', 1024),
    a1500 = caseOf('append', 1500);
  const i128 = caseOf('in-place', 128),
    i1500 = caseOf('in-place', 1500);
  const outside = (c: ProfileCase) => c.wallMs - c.modelRunMs;
  const pct = (a: number, b: number) => `${f((100 * a) / b, 0)}%`;
  const opMs = (c: ProfileCase | undefined, test: (op: string) => boolean) =>
    c ? c.byOp.filter((o) => test(o.op)).reduce((n, o) => n + o.ms, 0) : undefined;
  const attention = (c: ProfileCase | undefined) =>
    opMs(c, (op) => op === 'FusedMatMul' || op === 'MatMul attention matmul' || op === 'Softmax' || op === 'Where');
  const kvMB = (context: number) => (2 * 12 * context * 768 * 4) / 1e6;

  const steps = d.decodeStep?.rows ?? [];
  const stepAt = (context: number, prefix: string) => steps.find((x) => x.context === context && x.cache.startsWith(prefix));
  if (steps.length) {
    const contexts = [...new Set(steps.map((x) => x.context))];
    const line = contexts
      .map((c) => {
        const ap = stepAt(c, 'append'),
          ip = stepAt(c, 'in-place'),
          cc = stepAt(c, 'Concat');
        return `context ${c}: ${f(ap?.msPerToken, 1)} ms (append) vs ${f(ip?.msPerToken, 1)} (in place) and ${f(cc?.msPerToken, 1)} (Concat)`;
      })
      .join('; ');
    const ap128 = stepAt(128, 'append'),
      ip128 = stepAt(128, 'in-place');
    let text = `1. **The KV cache no longer crosses the Node binding.** The CPU graph reads the cache as an input (a buffer onnxruntime wraps without copying), attends over it and the new tokens side by side, and returns only the new keys and values, which the decoder writes into the buffer itself. onnxruntime-node 1.30 copied every bound \`present.*\` output back after each \`Run\` (the in-place GroupQueryAttention layout before this change), a copy the size of the whole buffer per step. Decode step, int8, 2 threads (section 5): ${line}.`;
    if (ap128 && ip128)
      text += ` ArrayBuffer memory allocated per step at context 128: ${f(ap128.arrayBufferBytesPerStep / 2 ** 20, 2)} MiB (the logits and the step's new keys/values) vs ${f(ip128.arrayBufferBytesPerStep / 2 ** 20, 1)} MiB.`;
    if (a128 && i128)
      text += ` Work outside onnxruntime's \`Run\` (section 6): ${f(outside(a128), 2)} vs ${f(outside(i128), 2)} ms at context 128${a1500 && i1500 ? `, ${f(outside(a1500), 2)} vs ${f(outside(i1500), 1)} ms at ${a1500.context}` : ''}.`;
    text += ' The in-place layout stays for GPUs that keep the cache in device memory; the Concat layout is the transformers.js export.';
    out.push(text);
  }
  if (a128 && a1024) {
    const at = (c: ProfileCase) =>
      `${f(attention(c), 2)} ms at ${c.context} (${f(kvMB(c.context), 0)} MB of keys and values read: ${f(kvMB(c.context) / 1e3 / (attention(c)! / 1e3), 1)} GB/s)`;
    out.push(
      `2. Attention now costs what reading the cache costs: the two attention matmuls plus masking and softmax take ${at(a128)}, ${at(a1024)}${a1500 ? `, ${at(a1500)}` : ''}, against the machine's ${f(d.bandwidth?.large.find((b) => b.threads === 2)?.medianGBps, 1)} GB/s (section 3). At the editor's context the float32 cache is as large as the int8 weights, so a step there is about twice a short-context step. Halving it needs an fp16 cache, and onnxruntime's CPU provider has no fp16 MatMul on x86 without AVX512-FP16: the casts it inserts would read the cache and write a float32 copy every step, costing more than they save; an int8 cache has no attention kernel to read it. Left as is.`,
    );
  }
  if (a128) {
    const mm = opMs(a128, (op) => op.startsWith('MatMulNBits'))!;
    const head = a128.byOp.find((o) => o.op.endsWith('lm_head'))?.ms ?? 0;
    const bw2 = d.bandwidth?.large.find((b) => b.threads === 2)?.bestGBps;
    const floorMs = bw2 && d.int8Bytes ? (d.int8Bytes / (bw2 * 1e9)) * 1000 : undefined;
    out.push(
      `3. At short context a step is weight-bound: MatMulNBits is ${f(mm, 2)} of ${f(a128.kernelMs, 2)} kernel ms (${pct(mm, a128.kernelMs)}), the lm_head alone ${f(head, 2)} ms. Reading the ${f((d.int8Bytes ?? NaN) / 1e6, 1)} MB an int8 step needs at the best measured 2-thread bandwidth takes ${f(floorMs, 2)} ms; the kernels take ${f(a128.kernelMs, 2)} ms (${floorMs ? pct(floorMs, a128.kernelMs) : '—'} of the limit), onnxruntime adds ${f(a128.modelRunMs - a128.kernelMs, 2)} ms between kernels and the binding ${f(outside(a128), 2)} ms. int8 weights are quantized in blocks of 128 (32 before): a quarter of the scales to read, at an int8 error of 0.026 of the largest logit on a 256-wide test model (test/runtime/decoderParity.test.ts). An int4 lm_head would save about half of its ${f(head, 2)} ms; not done, since the lm_head decides every token and its int4 error on a trained model is unmeasured here.`,
    );
  }
  const o2 = d.oursAt('int8', 2),
    o1 = d.oursAt('int8', 1);
  const settingsAt = (threads: number, spinning: boolean, context: number) =>
    d.settings?.find((s) => s.threads === threads && s.spinning === spinning && s.context === context);
  const sp = settingsAt(2, true, 128),
    ns = settingsAt(2, false, 128),
    spL = settingsAt(2, true, 1024),
    nsL = settingsAt(2, false, 1024),
    one = settingsAt(1, true, 128);
  if (o2 && o1) {
    let line = `4. Threads: int8 decode ${f(o1.generation.greedy.decodeTokensPerSecond)} tok/s on 1 thread, ${f(o2.generation.greedy.decodeTokensPerSecond)} on 2; prefill 512 ${f(o1.prefill[1]?.tokensPerSecond, 0)} → ${f(o2.prefill[1]?.tokensPerSecond, 0)} tok/s.`;
    if (sp && ns && spL && nsL)
      line += ` Spinning worker threads: ${f(sp.msPerStep, 1)} ms and ${f(sp.cpuMsPerStep, 1)} CPU ms per step at context 128, ${f(spL.msPerStep, 1)} and ${f(spL.cpuMsPerStep, 1)} at 1024; with \`allow_spinning = 0\` ${f(ns.msPerStep, 1)} and ${f(ns.cpuMsPerStep, 1)}, ${f(nsL.msPerStep, 1)} and ${f(nsL.cpuMsPerStep, 1)}${one ? ` (1 thread: ${f(one.msPerStep, 1)} ms, ${f(one.cpuMsPerStep, 1)} CPU ms)` : ''}. Spinning makes the step ${pct(ns.msPerStep - sp.msPerStep, ns.msPerStep)} shorter at context 128 for ${sp.cpuMsPerStep >= ns.cpuMsPerStep ? `${pct(sp.cpuMsPerStep - ns.cpuMsPerStep, ns.cpuMsPerStep)} more` : `${pct(ns.cpuMsPerStep - sp.cpuMsPerStep, ns.cpuMsPerStep)} less`} CPU time, so the runtime keeps onnxruntime's default (spinning on; \`spin: false\` in the load options turns it off) with one thread per physical core.`;
    out.push(line);
  }
  if (o2)
    out.push(
      `5. Sampling: int8 decode ${f(o2.generation.greedy.decodeTokensPerSecond)} tok/s greedy, ${f(o2.generation.topK.decodeTokensPerSecond)} with top-k 50, ${f(o2.generation.topP.decodeTokensPerSecond)} with top-p 0.95 over the whole vocabulary. Random weights give near-uniform logits, so the nucleus is most of the 50k vocabulary and top-p has to sort it: a worst case; a trained model's nucleus is usually small. The decoder step alone is ${f(o2.decoderStepMs, 2)} ms vs ${f(1000 / o2.generation.greedy.decodeTokensPerSecond, 2)} ms per generated token greedy.`,
    );
  const q8 = d.peerAt('q8', 2);
  if (o2) {
    const w = o2.warmLoadParts;
    out.push(
      `6. Warm load ${f(o2.warmLoadMs, 0)} ms (int8; target 1 s, met): cache lookup ${f(w.cacheLookupMs, 0)} ms (config + sampled content hash), tokenizer ${f(w.tokenizerMs, 0)} ms, session ${f(w.sessionMs, 0)} ms` +
        (q8
          ? `; transformers.js opens the same int8 weights in ${f(q8.loadMs, 0)} ms (its session only; its tokenizer loads separately)`
          : '') +
        `. fp32 pays for prepacking its Gemm weights (${f(d.oursAt('fp32', 2)?.warmLoadParts.sessionMs, 0)} ms session).`,
    );
  }
  if (o2 && d.bandwidth) {
    const def = d.memory.find((a) => a.label === 'defaults');
    const fixed = d.baseline?.rssBytes;
    const kvMiB = (2 * 12 * 1536 * 768 * 4) / 2 ** 20;
    let line = `7. Memory (int8, 2 threads): ${mb(o2.rssAfterLoadBytes)} after load, ${mb(o2.rssAfterGenerationBytes)} after generating, peak ${mb(o2.peakRssBytes)} after prefills of up to 1024 tokens (run in ${PREFILL_CHUNK}-token chunks by the decoder itself, so attention scores and onnxruntime's arena, which keeps its largest size, stay bounded), against ${mb(o2.modelBytes)} of model files: ${f(o2.peakRssBytes / o2.modelBytes, 2)}×.`;
    if (def)
      line += ` Over a 1,024-token prompt and 32 steps the process goes from ${mb(def.rssAfterLoadBytes)} to ${mb(def.rssAfterDecodeBytes)} (${mb(def.rssAfterGcBytes)} after a full collection; JS holds ${mb(def.arrayBuffersAfterGcBytes)} of ArrayBuffers, the cache): no per-step garbage any more.`;
    if (fixed)
      line += ` What stands between that and 2×: Node + onnxruntime + the tokenizer hold ${mb(fixed)} before any model (section 1) and a 1,536-position float32 cache is ${f(kvMiB, 0)} MiB, together ${f((fixed + kvMiB * 2 ** 20) / o2.modelBytes, 2)}× the ${mb(o2.modelBytes)} of weights before the weights themselves are counted. For opt-125m the target is out of reach by construction. For a larger model the fixed part shrinks against the weights: \`node --import tsx bench/modelMemory.ts\` (not part of this run: it writes a 5 GB opt-1.3b-shaped checkpoint) measured on this machine on 2026-11-27, int8, 2 threads, a 1,024-token prompt and 32 steps: 1,410 MiB of model files, RSS 1,686 MiB after load, peak 2,320 MiB = **1.65×**, 82 ms per step.`;
    out.push(line);
  }
  if (d.editor) {
    const e = d.editor;
    const worst = [...e.sessions].sort((a, b) => b.paused.requestMs.p50 - a.paused.requestMs.p50)[0]!;
    const perStep = a1500?.wallMs;
    const line = worst.pausedLineLength;
    out.push(
      `8. Editor latency: the prefix cache works (${f(100 * worst.prefixReuse, 1)}% of prompt tokens reused, ${f(worst.paused.prefilledTokensP50, 0)} token(s) prefilled per request at the median), so a completion costs its decode steps at a ${e.contextTokens}-token context${perStep ? ` (${f(perStep, 1)} ms each, section 6)` : ''}: ${f(worst.paused.requestMs.p50, 0)} ms for ${e.maxNewTokens} tokens, ${line ? `${f(line.requestMs.p50, 0)} ms for a line's own length (${f(line.completionTokensP50, 0)} tokens at the median; Copilot reports a median line of 19 characters, about 5 tokens)` : ''}, after ${waitText(e)}. While typing, ${e.sessions.map((s) => `${s.cancelled} of ${s.requests}`).join(' and ')} requests were overtaken by the next keystroke (cancelled within a step), and the runtime spent ${e.sessions.map((s) => f(s.cpuSecondsPerShown, 2)).join(' / ')} CPU s per completion shown. ${e.maxNewTokens} tokens at this context cannot fit in 250 ms on this machine: ${e.maxNewTokens} steps read ${f((e.maxNewTokens * ((d.int8Bytes ?? 0) / 1e6 + kvMB(1536))) / 1e3, 1)} GB of weights and cache, ${f((e.maxNewTokens * ((d.int8Bytes ?? 0) / 1e6 + kvMB(1536))) / (d.bandwidth?.large.find((b) => b.threads === 2)?.bestGBps ?? NaN), 0)} ms at the best measured bandwidth, plus the wait.` +
        ` The debounce trades latency for CPU while typing. Typing pauses at the end of a word far more often than inside one (and that is where a completion is wanted), so the extension waits 75 ms after a keystroke inside a word and none after one that ends a word. The same replay under three settings, one after another (\`node --import tsx bench/child.ts editor '{"debounceMs":A,"wordEndDebounceMs":B,"contextTokens":1500,"maxNewTokens":16}' out.json\`, 2026-11-27 07:25), line-length p50 service.ts / README.md and the runtime's CPU over the typing session: 75 ms everywhere (the previous default): 316 / 346 ms, 16.7 / 11.6 s; 75 ms inside a word, 0 at its end (the default): 212 / 311 ms, 25.2 / 16.2 s; 0 everywhere: 234 / 283 ms, 51.5 / 41.5 s (over ~1 core for the whole session). A user who wants the fastest ghost text and has cores to spare sets both \`optComplete.inline.debounceMs\` and \`optComplete.inline.wordEndDebounceMs\` to 0; one who wants a quiet CPU raises both.`,
    );
  }
  const best2 = d.peerBest(2);
  if (o2 && best2) {
    const g = (x: { generation: { greedy?: { decodeTokensPerSecond: number } } }) => x.generation.greedy?.decodeTokensPerSecond;
    out.push(
      `9. Against transformers.js (${best2.dtype}, 2 threads, the same weights): decode ${f(g(o2))} vs ${f(g(best2))} tok/s (${ratio(g(o2), g(best2))}×), prefill 512 ${f(o2.prefill[1]?.tokensPerSecond, 0)} vs ${f(best2.prefill[1]?.tokensPerSecond, 0)} tok/s, TTFT ${f(o2.generation.greedy.ttftMs, 0)} vs ${f(best2.generation.greedy?.ttftMs, 0)} ms, peak RSS ${mb(o2.peakRssBytes)} vs ${mb(best2.peakRssBytes)}. transformers.js runs the Optimum layout: each step Concats the whole cache into new outputs that the binding copies back, and its export computes logits for every prompt position; we read the cache in place, compute the last position's logits only, and fuse the layer norms.`,
    );
  }
  out.push('');
  return out;
}

/** One size's figures, pulled out of a sizes section's runs. */
interface SizeRow {
  size: OptSize;
  prepare?: SizePrepareResult;
  decode?: SizeDecodeResult;
  editor?: EditorResult;
  bandwidthGBps?: number;
  /** Bytes one decode step reads at a context: the int8 weights a step reads + the KV cache of that many tokens. */
  bytesPerToken?: (contextTokens: number) => number;
  /** The completion's tokens × bytes per token / bandwidth, plus the debounce before the request. */
  ceilingMs?: number;
  latencyRatio?: number;
  kvBytes?: number;
  memoryTarget?: number;
  memoryRatio?: number;
}

function sizeRows(s: SectionResult | undefined): SizeRow[] {
  if (!s) return [];
  const ok = <T>(task: string) => s.runs.filter((x) => x.task === task && x.ok).map((x) => x.result as T);
  const bw = ok<SizeBandwidthResult>('sizes-bandwidth')[0]?.bestGBps; // the best repetition: the machine's limit, least disturbed (as section 3)
  const sizes = [...new Set(s.runs.map((x) => (x.params as { size?: OptSize }).size).filter((x): x is OptSize => !!x))];
  return sizes.map((size) => {
    const prepare = ok<SizePrepareResult>('sizes-prepare').find((x) => x.size === size);
    const decode = ok<SizeDecodeResult>('sizes-decode').find((x) => x.size === size);
    const editor = s.runs.find((x) => x.task === 'sizes-editor' && x.ok && (x.params as { size?: string }).size === size)?.result as
      EditorResult | undefined;
    const row: SizeRow = { size, prepare, decode, editor, bandwidthGBps: bw };
    if (prepare && bw) row.bytesPerToken = (n) => prepare.decodeBytes + n * sizeShape(size).kvBytesPerToken;
    const paused = editor?.sessions[0]?.paused;
    if (row.bytesPerToken && paused?.completionTokensP50 !== undefined && paused.promptTokensP50 !== undefined && bw) {
      const tokens = paused.completionTokensP50;
      row.ceilingMs = ((tokens * row.bytesPerToken(paused.promptTokensP50 + tokens / 2)) / (bw * 1e9)) * 1000 + (paused.waitMsP50 ?? 0);
      row.latencyRatio = paused.keystrokeToResultMs.p50 / row.ceilingMs;
    }
    if (editor && prepare) {
      row.kvBytes = kvBytesAt(size, editor.initContextTokens ?? editor.contextTokens + editor.maxNewTokens);
      row.memoryTarget = prepare.initializerBytes + 2 * row.kvBytes + 200 * 2 ** 20;
      row.memoryRatio = editor.runtimePeakRssBytes / row.memoryTarget;
    }
    return row;
  });
}

function sizesTable(s: SectionResult): string[] {
  const rows = sizeRows(s);
  const out = [
    '| size (layers × hidden, heads) | keystrokes typed: requests / shown | reuse while typing: reused / prompt tokens p50 (share) | prefix cache hits / misses | keystroke → result p50, typing stopped (while typing) | tokens / completion | decode ceiling time + debounce (p50 / it) | decode tok/s at ~128 tokens: % of ceiling | at ~1,500 tokens: % of ceiling | peak RSS | weights (int8, held) | KV, one context | peak / (weights + 2 KV + 200 MiB) |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|---|',
  ];
  for (const x of rows) {
    const sh = sizeShape(x.size);
    const e = x.editor,
      ses = e?.sessions[0];
    const dec = (i: number) => {
      const run = x.decode?.runs[i];
      if (!run) return '—';
      const ceil =
        x.bytesPerToken && x.bandwidthGBps ? (x.bandwidthGBps * 1e9) / x.bytesPerToken(run.promptTokens + run.newTokens / 2) : undefined;
      return `${f(run.tokensPerSecond)} of ${f(ceil, 1)} (${run.promptTokens} tok): **${f(ceil ? (100 * run.tokensPerSecond) / ceil : undefined, 0)}%**`;
    };
    out.push(
      `| ${x.size} (${sh.layers} × ${sh.hidden}${sh.proj !== sh.hidden ? `, embed ${sh.proj}` : ''}, ${sh.heads}) | ${ses ? `${ses.keystrokes}: ${ses.requests} / ${ses.shown}` : '—'} | ${ses ? `${f(ses.reusedTokensP50, 0)} / ${f(ses.promptTokensP50, 0)} (${f(100 * ses.prefixReuse, 0)}%)` : '—'} | ${e ? `${e.prefixCache.hits} / ${e.prefixCache.misses}` : '—'} | ${ses ? `**${f(ses.paused.keystrokeToResultMs.p50, 0)} ms** (${f(ses.keystrokeToResultMs.p50, 0)} ms)` : '—'} | ${ses ? f(ses.completionTokensMean, 1) : '—'} | ${x.ceilingMs !== undefined ? `${f(x.ceilingMs, 0)} ms (**${f(x.latencyRatio, 2)}×**)` : '—'} | ${dec(0)} | ${dec(1)} | ${mb(e?.runtimePeakRssBytes)} | ${mb(x.prepare?.initializerBytes)} | ${mb(x.kvBytes)} | ${x.memoryRatio !== undefined ? `**${f(x.memoryRatio, 2)}**` : '—'} |`,
    );
  }
  return out;
}

function sizesSection(r: Results): string[] {
  const out = sectionHeader(r, 'sizes', '7. Three OPT sizes side by side: editor replay, decode against the bandwidth ceiling, memory');
  const s = r.sections.sizes;
  if (!s) return out;
  const rows = sizeRows(s);
  const bw = rows[0]?.bandwidthGBps;
  const e0 = rows.find((x) => x.editor)?.editor;
  out.push(
    `Random checkpoints with the exact shapes of opt-125m (12 × 768, 12 heads), opt-350m (24 × 1024, 16 heads, 512-wide embeddings with project_in/out, post-LN, bare \`decoder.*\` keys) and opt-1.3b (24 × 2048, 32 heads; written in fp16), vocab 50272, 2048 positions, converted to int8 and run on 2 threads (checkpoints in .cache/bench-opt-*, converted models in .cache/bench-onnx-cache: written once). ${runtimeText(s)}`,
    '',
    `Editor: section 4's replay (\`replayEditing\`) of service.ts after a ${e0?.contextTokens ?? 1500}-token context, Complete with max_new_tokens ${e0?.maxNewTokens ?? 16}, the extension's waits (${e0 ? waitText(e0) : '—'}); Initialize sends \`contextTokens\` = the longest prompt + completion${e0?.initContextTokens ? ` (${e0.initContextTokens})` : ''}. Fewer keystrokes for the larger sizes (the first column: characters typed; each may re-prefill the whole prompt). "Typing stopped": the p50 of ${rows.map((x) => `${x.editor?.sessions[0]?.paused.samples ?? '—'}`).join(' / ')} completions after the replay, each run to the end. Random weights never end a line, so every completion generates all its tokens. Decode: greedy through \`generateStream\` in its own process, 1000 / the median interval between tokens; the ceiling = DRAM read bandwidth (bench/membw.c, 2 threads, best of the run: ${f(bw, 1)} GB/s) / (the int8 weights a step reads, as section 3 counts them, + the float32 KV cache at the mean context of the run). The decode ceiling time of a completion = its tokens × those bytes at the editor's context / bandwidth + the median wait before the request; target: keystroke → result p50 ≤ 1.5× that. Memory: the runtime process's peak RSS (VmHWM) at the end of the replay, against the int8 initializers it holds + 2 contexts of KV (positions rounded up to 64, as the runtime allocates) + 200 MiB; target ≤ 1.`,
    '',
    ...sizesTable(s),
    '',
  );
  for (const x of rows) {
    const p = x.prepare;
    const info = x.editor?.engineInfo;
    const mem = info ? Object.entries(info).filter(([k, v]) => typeof v === 'number' && /bytes|memory|contextTokens/i.test(k)) : [];
    const pc = x.editor?.prefixCache;
    out.push(
      `- ${x.size}: ${p ? `checkpoint ${mb(p.checkpointBytes)} (${p.checkpointWritten ? `written in ${f(p.checkpointSeconds, 0)} s` : 'cached'}), int8 model files ${mb(p.modelBytes)} (${p.converted ? `converted in ${f(p.convertSeconds, 0)} s` : 'cached'}); a decode step reads ${f(p.decodeBytes / 1e6, 0)} MB of weights + ${f(sizeShape(x.size).kvBytesPerToken / 1e3, 1)} kB of KV per context token` : 'not prepared'}${x.decode ? `; model loaded in ${f(x.decode.loadSeconds, 1)} s` : ''}${x.editor ? `; runtime load ${f(x.editor.loadSeconds, 1)} s` : ''}${pc?.budgetBytes !== undefined ? `; prefix cache at the end: ${pc.entries ?? '—'} ${pc.entries === 1 ? 'entry' : 'entries'}, ${mb(pc.bytes)} of a ${mb(pc.budgetBytes)} budget` : ''}${mem.length ? `; the runtime reports ${mem.map(([k, v]) => `${k} ${/contextTokens/.test(k) ? v : (v as number) < 2 ** 20 ? `${f((v as number) / 1024, 0)} KiB` : mb(v as number)}`).join(', ')}` : ''}.`,
    );
  }
  out.push('');
  const prev = r.previous?.sizes;
  if (prev && sizeRows(prev).length) {
    out.push(
      `**The run before** *(measured ${prev.measuredAt.slice(0, 16).replace('T', ' ')} UTC at ${prev.commit}, ${prev.quick ? 'quick' : 'full'} mode, ${f(prev.seconds, 0)} s)*. ${runtimeText(prev)}`,
      '',
      ...sizesTable(prev),
      '',
    );
  }
  return out;
}

function qualitySection(r: Results): string[] {
  const out = sectionHeader(r, 'quality', '8. Quality per precision: held-out perplexity of the trained fixtures');
  const runs = runsOf<QualityResult>(r, 'quality', 'quality')
    .filter((x) => x.ok)
    .map((x) => x.result!);
  if (runs.length === 0) return out;
  const first = runs[0]!;
  out.push(
    `The trained fixtures (test/fixtures/trained: OPT models trained here on code and prose, README.md there) scored on their held-out files (never trained on) by \`opt perplexity\`'s method: windows of ${first.maxLength} tokens moved by ${first.stride}, each file on its own, summed per kind; up to ${f(first.budgetBytes / 1000, 0)} kB of each kind, the files this machine has with the recorded hash${first.missing ? ` (${first.missing} listed files absent or changed here)` : ''}. CPU, 2 threads. The increase is over the same model at fp32.`,
    '',
    '| model | parameters | precision | code perplexity | increase | prose perplexity | increase | tokens scored (code / prose) | seconds |',
    '|---|---|---|---|---|---|---|---|---|',
  );
  for (const x of runs) {
    const base = runs.find((y) => y.model === x.model && y.dtype === 'fp32');
    const inc = (kind: string) =>
      base && x.dtype !== 'fp32' ? `${f((x.kinds[kind]!.perplexity / base.kinds[kind]!.perplexity - 1) * 100, 2)} %` : '—';
    const ppl = (kind: string) => (x.kinds[kind] ? f(x.kinds[kind]!.perplexity, 2) : '—');
    out.push(
      `| ${x.model} | ${f(x.parameters / 1e6, 1)} M | ${x.dtype} | ${ppl('code')} | ${inc('code')} | ${ppl('prose')} | ${inc('prose')} | ${x.kinds.code?.tokens_scored ?? '—'} / ${x.kinds.prose?.tokens_scored ?? '—'} | ${f(x.seconds, 1)} |`,
    );
  }
  out.push('');
  const cq = runsOf<CompletionQualityResult>(r, 'quality', 'completion-quality')
    .filter((x) => x.ok)
    .map((x) => x.result!);
  if (cq.length) {
    const c0 = cq[0]!;
    const pct = (x: number) => `${f(x * 100, 1)} %`;
    out.push(
      `**Ghost text on held-out code** (bench/sections/completionQuality.ts): ${c0.positions} cursor positions in ${c0.files} held-out code files of opt-target (up to ${c0.perKind} of each kind per file, seeded: at a line's first character, right after an opening bracket, right after an identifier mid-line; the document cut at the cursor), each completed as the editor does it (the extension's context window, multi-line policy, stop strings, early stop and post-processing; max_new_tokens ${c0.maxNewTokens}, greedy) through the runtime process with the given maxContextTokens, and compared with the text that really follows. Exact line: the suggestion's first line is the rest of the line. Similarity: 1 − edit distance / length, against as many lines as the suggestion has. Tokens: requests that ran to their end (early-stopped ones excluded).`,
      '',
      '| precision | context tokens | shown | exact line (of all) | similarity (shown / all) | line start: shown, exact | after bracket: shown, exact | after identifier: shown, exact | tokens p50 | latency p50 / p90 |',
      '|---|---|---|---|---|---|---|---|---|---|',
    );
    for (const x of cq) {
      const k = (kind: string) => `${x.byKind[kind]!.shown}/${x.byKind[kind]!.positions}, ${x.byKind[kind]!.exactLine}`;
      out.push(
        `| ${x.dtype} | ${x.contextTokens} | ${pct(x.shownShare)} | ${pct(x.exactLineShare)} | ${f(x.similarityShown, 3)} / ${f(x.similarityAll, 3)} | ${k('line-start')} | ${k('after-bracket')} | ${k('after-identifier')} | ${f(x.tokensP50, 0)} | ${f(x.latencyP50, 0)} / ${f(x.latencyP90, 0)} ms |`,
      );
    }
    out.push('');
  }
  return out;
}

function speculationSection(r: Results): string[] {
  const out = sectionHeader(r, 'speculation', '9. Prompt lookup: fewer model passes, the same text');
  const runs = runsOf<SpeculationResult>(r, 'speculation', 'speculation')
    .filter((x) => x.ok)
    .map((x) => x.result!);
  if (runs.length === 0) return out;
  out.push(
    `Each input generated twice in one process, plain greedy decoding then with prompt lookup (${runs[0]!.lookupTokens} candidates per pass, bigrams), int8, CPU, 2 threads (bench/sections/speculation.ts). Rewrite: held-out paragraphs and code blocks of the trained target (one per file) in the extension's own "${DEFAULT_TEMPLATES[0]!.label}" prompt, its token budget and stop marker. Ghost text: held-out code positions (one of each kind per file), the text before the cursor cut to its last 1,500 tokens, 48 new tokens. Random: the random checkpoint with opt-125m's shapes, 64 new tokens, where nothing is worth copying. Assisted: the ghost-text inputs, with opt-draft drafting for opt-target (transformers' defaults: 20 tokens per round, constant schedule, confidence threshold 0.4) instead of prompt lookup, its KV state kept between requests as the runtime keeps it. Decode tokens/s: tokens after the first (which the prefill yields either way) over the time after it; request p50: from the call to the last token, prefill included.`,
    '',
    '| task | model | inputs | identical text | tokens | decode tokens/s plain → lookup | speed-up | request p50 plain → lookup | tokens per pass | accepted |',
    '|---|---|---|---|---|---|---|---|---|---|',
  );
  for (const x of runs) {
    const name = x.model.includes('/') ? 'random opt-125m shape' : x.assistant ? `${x.model}, drafted by ${x.assistant}` : x.model;
    out.push(
      `| ${x.task} | ${name} | ${x.inputs} | ${x.identical}/${x.inputs} | ${x.tokens} | ${f(x.plainTokensPerSecond, 1)} → ${f(x.lookupTokensPerSecond, 1)} | **${f(x.speedup, 2)}×** | ${f(x.plainTotalP50, 0)} → ${f(x.lookupTotalP50, 0)} ms | ${f(x.tokensPerPass, 2)} | ${f(x.acceptance * 100, 1)} % |`,
    );
  }
  out.push('');
  const ghost = runsOf<CompletionQualityResult>(r, 'speculation', 'completion-quality')
    .filter((x) => x.ok)
    .map((x) => x.result!);
  const plain = ghost.find((x) => !x.promptLookupTokens);
  const looked = ghost.find((x) => x.promptLookupTokens);
  if (plain && looked) {
    const same = plain.outcomes.filter((o, i) => o.text === looked.outcomes[i]?.text).length;
    out.push(
      `**Ghost text as the editor asks for it** (bench/sections/completionQuality.ts through \`opt rpc\`): the completion-quality positions (${plain.positions} in ${plain.files} held-out code files of opt-target), ${plain.contextTokens} tokens of context, int8, the extension's policy and post-processing, the file's earlier positions in the prefix cache; without prompt lookup and with it (${looked.promptLookupTokens} candidates, the editor's default).`,
      '',
      '| prompt lookup | same suggestion | shown | latency p50 / p90 | tokens p50 |',
      '|---|---|---|---|---|',
      `| off | — | ${f(plain.shownShare * 100, 1)} % | ${f(plain.latencyP50, 0)} / ${f(plain.latencyP90, 0)} ms | ${f(plain.tokensP50, 0)} |`,
      `| ${looked.promptLookupTokens} | ${same}/${plain.positions} | ${f(looked.shownShare * 100, 1)} % | ${f(looked.latencyP50, 0)} / ${f(looked.latencyP90, 0)} ms | ${f(looked.tokensP50, 0)} |`,
      '',
    );
  }
  return out;
}

function runtimeText(s: SectionResult): string {
  if (s.runtimeRoot)
    return `The runtime process ran from ${s.runtimeRoot} (a snapshot of another commit; the decode runs used this checkout's runtime modules).`;
  return s.runtimeChanged?.length
    ? `The runtime process ran from this checkout, with uncommitted changes to ${s.runtimeChanged.length} runtime/protocol files.`
    : 'The runtime process ran from this checkout.';
}

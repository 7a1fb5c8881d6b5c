// The released OPT sizes and what each needs in memory at each precision, for the model picker.
// The estimate is `estimateModelBytes` from runtime/src/memory.ts, copied rather than imported: the
// extension bundle must never reach into runtime modules (their neighbours load onnxruntime), and
// test/extensionModels.test.ts checks that the copy and the original agree for every size and dtype.
// No vscode import.

/** The fields of a facebook/opt-* config.json the estimate needs (Hugging Face spelling). */
export interface OptShape {
  num_hidden_layers: number;
  hidden_size: number;
  ffn_dim: number;
  num_attention_heads: number;
  word_embed_proj_dim: number;
  vocab_size: number;
  max_position_embeddings: number;
}

export interface OptSize {
  id: string;
  label: string;
  shape: OptShape;
}

const shape = (L: number, d: number, heads: number, proj = d): OptShape => ({
  num_hidden_layers: L,
  hidden_size: d,
  ffn_dim: 4 * d,
  num_attention_heads: heads,
  word_embed_proj_dim: proj,
  vocab_size: 50272,
  max_position_embeddings: 2048,
});

/** From the facebook/opt-* configs (arXiv 2205.01068, Table 1). */
export const OPT_SIZES: readonly OptSize[] = [
  { id: 'facebook/opt-125m', label: '125m', shape: shape(12, 768, 12) },
  { id: 'facebook/opt-350m', label: '350m', shape: shape(24, 1024, 16, 512) },
  { id: 'facebook/opt-1.3b', label: '1.3b', shape: shape(24, 2048, 32) },
  { id: 'facebook/opt-2.7b', label: '2.7b', shape: shape(32, 2560, 32) },
  { id: 'facebook/opt-6.7b', label: '6.7b', shape: shape(32, 4096, 32) },
  { id: 'facebook/opt-13b', label: '13b', shape: shape(40, 5120, 40) },
  { id: 'facebook/opt-30b', label: '30b', shape: shape(48, 7168, 56) },
  { id: 'facebook/opt-66b', label: '66b', shape: shape(64, 9216, 72) },
];

export type ModelDtype = 'fp32' | 'fp16' | 'int8' | 'int4';
export const MODEL_DTYPES: readonly ModelDtype[] = ['int4', 'int8', 'fp16', 'fp32'];

/** Parameters: attention and MLP matrices and their biases, layer norms, embeddings and projections. */
export function parameterCount(c: OptShape): number {
  const d = c.hidden_size, e = c.word_embed_proj_dim;
  const perLayer = 4 * d * d + 4 * d + 2 * d * c.ffn_dim + c.ffn_dim + d + 4 * d;
  const projections = e !== d ? 2 * d * e : 0;
  return c.num_hidden_layers * perLayer + c.vocab_size * e + (c.max_position_embeddings + 2) * d + projections + 2 * d;
}

/** Bytes per weight of a linear layer, block scales included (one float per block: int8 blocks of 128, int4 of 32, as the runtime quantizes). */
const LINEAR_BYTES: Record<ModelDtype, number> = { fp32: 4, fp16: 2, int8: 1 + 4 / 128, int4: 0.5 + 4 / 32 };

/** Resident bytes of the converted model in the runtime (copy of runtime/src/memory.ts estimateModelBytes). */
export function estimateModelBytes(c: OptShape, dtype: ModelDtype): number {
  const d = c.hidden_size, e = c.word_embed_proj_dim;
  const perLayer = 4 * d * d + 2 * d * c.ffn_dim;
  let linear = c.num_hidden_layers * perLayer + (e !== d ? 2 * d * e : 0);
  const floatBytes = dtype === 'fp16' ? 2 : 4;
  const embeddings = (c.vocab_size * e + (c.max_position_embeddings + 2) * d) * floatBytes;
  if (dtype === 'int8' || dtype === 'int4') linear += c.vocab_size * e; // lm_head, quantized separately
  const prepack = dtype === 'fp32' ? 2 : 1;
  return Math.round(linear * LINEAR_BYTES[dtype] * prepack + embeddings + 300 * 2 ** 20);
}

/** The dtype `auto` resolves to in the runtime (runtime/src/model.ts resolveDtype). */
export function resolveDtype(dtype: string, device: string): ModelDtype {
  if ((MODEL_DTYPES as readonly string[]).includes(dtype)) return dtype as ModelDtype;
  return device === 'cpu' || device === 'auto' || device === '' ? 'int8' : 'fp16';
}

export function formatBytes(bytes: number): string {
  if (bytes >= 2 ** 30) return `${(bytes / 2 ** 30).toFixed(bytes >= 10 * 2 ** 30 ? 0 : 1)} GiB`;
  return `${Math.round(bytes / 2 ** 20)} MiB`;
}

export function formatParams(n: number): string {
  return n >= 1e9 ? `${(n / 1e9).toFixed(n >= 1e10 ? 0 : 1)}B` : `${Math.round(n / 1e6)}M`;
}

/** The known size a model id or folder names (facebook/opt-1.3b, …/opt-1.3b-int8, a folder opt-125m). */
export function knownSize(model: string): OptSize | undefined {
  const m = /opt-(\d+(?:\.\d+)?[mb])(?![\w.])/i.exec(model);
  if (!m) return undefined;
  return OPT_SIZES.find((s) => s.label === m[1]!.toLowerCase());
}

/** One line per dtype for the picker: "int8 1.5 GiB · fp16 2.7 GiB …", marking what does not fit. */
export function memoryLine(c: OptShape, availableBytes: number | undefined): string {
  return MODEL_DTYPES.map((dt) => {
    const bytes = estimateModelBytes(c, dt);
    const fits = availableBytes === undefined || bytes <= availableBytes;
    return `${dt} ${formatBytes(bytes)}${fits ? '' : ' (too big)'}`;
  }).join(' · ');
}

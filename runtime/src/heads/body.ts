// The OPT body as one ONNX pass without a KV cache: token ids and an attention mask in, the hidden
// states out (transformers' OPTModel: last_hidden_state after the final LayerNorm and project_out,
// and on request every layer's, as output_hidden_states). The heads computed in JS read these.
//
// Legend: B batch, S tokens, D hidden_size, E word_embed_proj_dim (last_hidden_state's width).

import { type OptConfig, hasProjection } from '../config.js';
import { convertCheckpoint } from '../convert.js';
import { UsageError } from '../../../protocol/errors.js';
import { type LoadOptions, planLoad, resolveDtype } from '../model.js';
import type { GraphDtype } from '../onnx/optGraph.js';
import { hiddenState } from '../onnx/optGraph.js';
import { createSessionForDevice } from '../device/open.js';
import type { ExecutionDevice } from '../device/select.js';
import { type ModelSession, Tensor } from '../session.js';

export interface BodyInput {
  /** [B, S] row-major. */
  inputIds: BigInt64Array;
  /** [B, S]: 1 for tokens, 0 for padding (either side). */
  attentionMask: BigInt64Array;
  batch: number;
}

export interface BodyOutput {
  batch: number;
  length: number;
  /** [B, S, E] */
  lastHiddenState: Float32Array;
  width: number;
  /** With allHiddenStates: num_hidden_layers + 1 states, [B, S, D] each except the last ([B, S, E], the same as lastHiddenState). */
  hiddenStates?: { data: Float32Array; width: number }[];
}

export interface BodyLoadOptions extends LoadOptions {
  /** Build the graph that also returns every layer's hidden states. */
  allHiddenStates?: boolean;
}

export class OptBody {
  private constructor(
    private readonly _session: ModelSession,
    readonly config: OptConfig,
    readonly dtype: GraphDtype,
    readonly allHiddenStates: boolean,
    /** The provider it runs on (after any fallback), and why it is not the one asked for. */
    readonly device: ExecutionDevice,
    readonly deviceFallback: string | undefined,
  ) {}

  /** Converts (or finds cached) the checkpoint's body graph and opens it. Weights must be in the folder: heads are read from them. */
  static async load(dir: string, config: OptConfig, options: BodyLoadOptions = {}): Promise<OptBody> {
    // As loadOptModel: a fallback converts the graph for the device that runs.
    const { plan } = planLoad(config, options);
    const all = options.allHiddenStates ?? false;
    const opened = await createSessionForDevice(
      async (d) => {
        const r = await convertCheckpoint(dir, {
          dtype: resolveDtype(options.dtype ?? 'auto', d),
          fused: options.fused,
          cacheDir: options.cacheDir,
          output: 'hidden',
          allHiddenStates: all,
          kvCache: 'none',
        });
        return r.modelPath;
      },
      { device: plan.requested, plan, threads: options.threads ?? 0, spin: options.spin },
    );
    return new OptBody(
      opened.session,
      config,
      resolveDtype(options.dtype ?? 'auto', opened.device),
      all,
      opened.device,
      opened.fallbackReason,
    );
  }

  async forward(x: BodyInput): Promise<BodyOutput> {
    const b = x.batch;
    const s = x.inputIds.length / b;
    if (!Number.isInteger(s) || s < 1) throw new UsageError(`${x.inputIds.length} ids do not split into ${b} rows`);
    if (x.attentionMask.length !== b * s) throw new UsageError(`attention mask has ${x.attentionMask.length} values, expected ${b}×${s}`);
    const max = this.config.max_position_embeddings;
    if (s > max) throw new UsageError(`the text is ${s} tokens long, but the model has ${max} positions: shorten it`);
    const out = await this._session.run({
      input_ids: new Tensor('int64', x.inputIds, [b, s]),
      attention_mask: new Tensor('int64', x.attentionMask, [b, s]),
    });
    const e = this.config.word_embed_proj_dim;
    const last = out.last_hidden_state!.data as Float32Array;
    const result: BodyOutput = { batch: b, length: s, lastHiddenState: last, width: e };
    if (this.allHiddenStates) {
      const n = this.config.num_hidden_layers;
      const d = this.config.hidden_size;
      result.hiddenStates = [];
      for (let i = 0; i <= n; i++) {
        const data = i === n ? last : (out[hiddenState(i)]!.data as Float32Array);
        result.hiddenStates.push({ data, width: i === n && hasProjection(this.config) ? e : d });
      }
    }
    return result;
  }

  release(): Promise<void> {
    return this._session.release();
  }
}

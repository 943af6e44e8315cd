#!/usr/bin/env python3
"""Golden conformance cases for eigenformer-run, made by the reference implementations themselves.

Each case is one safetensors file in the format of docs/conformance.md: `__metadata__` names the layer
(`layer`), its mode (`mode`) and configuration (one string per config key, reference names), the
tensors are the reference module's own state_dict (no prefix) and `input.*`, and the module's output
is stored as `expected.*` (which eigenformer-run ignores). Usage, from the repository root:

    .venv/bin/python tools/make_golden.py                 # write tests/data/golden/run/*.safetensors + README.md
    .venv/bin/python tools/make_golden.py --check         # regenerate in memory, compare byte for byte (exit 1)
    .venv/bin/python tools/make_golden.py --roundtrip build/release/examples/eigenformer-run

--roundtrip RUNNER makes every case again with other seeds (new weights and inputs), writes it to a
temporary directory, runs RUNNER on it, reads the output back and compares it with the module's
output within the layer's tolerance as `RUNNER --list` states it; it also checks that a case with a
weight removed is rejected (exit code 4, "missing weight"). Exit 1 on any failure. This is what
tests/CMakeLists.txt registers as the CTest `conformance_roundtrip` when a venv exists.

Modules (CPU, float32, eval mode, attn_implementation="eager"; configs from keyword arguments, never
from_pretrained, no network): torch.nn.Linear, torch.nn.LayerNorm, torch.nn.Embedding; transformers
LlamaMLP, T5DenseGatedActDense, CLIPMLP, LlamaRMSNorm, GemmaRMSNorm, LlamaAttention, MistralAttention,
Gemma2Attention, GptOssAttention, StableLmAttention, BloomAttention, DeepseekV3Attention (MLA),
BitNet's BitLinear / AutoBitLinear (integrations/bitnet.py) and BitNetDecoderLayer with those
projections; torchscale 0.3.0 MultiScaleRetention and RetNet DecoderLayer; and, where no runnable
reference exists, a PyTorch transcription of unilm YOCO's GateRetention and YOCO (tools/yoco_reference.py,
microsoft/unilm@7402b0eefe7eee5863c7b2c164a7b13cdc6425e6; the package itself needs CUDA). Attention masks and RoPE
cos/sin are built with the same functions the models use (masking_utils, the model's rotary embedding,
Bloom's build_alibi_tensor and _prepare_4d_causal_attention_mask_with_cache_position); decode cases
run the module token by token with a transformers DynamicCache exactly as the model's forward does,
and are checked against the same module's prefill output (allclose) before they are written.
Retention cases run torchscale's parallel form (RetNetRelPos(T)), its recurrent form token by token
(incremental_state) or its chunkwise form, as RetNetDecoder.forward does; each mode's case holds that
mode's own torchscale output. TORCHDYNAMO_DISABLE=1 is set before torch is imported: transformers'
BitNet helpers (unpack_weights, activation_quant) are torch.compile'd and run eagerly (same ops).
"""

import os

os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")  # before torch: transformers' BitNet helpers are torch.compile'd

import argparse
import math
import re
import subprocess
import sys
import tempfile

import numpy as np
import safetensors
import torch
import transformers
from safetensors import safe_open
from transformers import DynamicCache, masking_utils
from transformers.integrations import bitnet as hf_bitnet
from transformers.models.bitnet import modeling_bitnet
from transformers.models.bloom import modeling_bloom
from transformers.models.clip import modeling_clip
from transformers.models.deepseek_v3 import modeling_deepseek_v3
from transformers.models.gemma import modeling_gemma
from transformers.models.gemma2 import modeling_gemma2
from transformers.models.gpt_oss import modeling_gpt_oss
from transformers.models.llama import modeling_llama
from transformers.models.mistral import modeling_mistral
from transformers.models.stablelm import modeling_stablelm
from transformers.models.t5 import modeling_t5

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from golden_common import meta_value, safetensors_bytes, verify_file  # noqa: E402  (the shared deterministic writer)
import yoco_reference  # noqa: E402  (a transcription of unilm YOCO: no runnable package exists)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT = os.path.join(REPO, "tests", "data", "golden", "run")
VERSIONS = f"transformers {transformers.__version__}, torch {torch.__version__}"
ROUNDTRIP_SEED_OFFSET = 7919

torch.set_num_threads(1)  # one fixed reduction order
torch.use_deterministic_algorithms(True)
transformers.logging.set_verbosity_error()


# ------------------------------------------------------------------------------------------------
# Cases
# ------------------------------------------------------------------------------------------------


class Case:
    def __init__(self, layer, config, weights, inputs, expected, source, mode=None, row_mask=None, tolerance=None,
                 what=""):
        self.layer, self.mode, self.config = layer, mode, config
        self.weights, self.inputs, self.expected = weights, inputs, expected  # lists of (name, tensor) / dict
        self.source, self.row_mask, self.tolerance, self.what = source, row_mask, tolerance, what

    def file(self, name):
        meta = {"layer": self.layer, "case": name, "source": self.source, "generator": "tools/make_golden.py"}
        if self.mode:
            meta["mode"] = self.mode
        meta.update({k: meta_value(v) for k, v in self.config.items()})
        if self.tolerance is not None:
            meta["expected.tolerance"] = meta_value(self.tolerance)
        tensors = list(self.weights) + [("input." + n, t) for n, t in self.inputs]
        for n, t in self.expected.items():
            tensors.append(("expected." + n, t.to(torch.float32)))
        if self.row_mask is not None:
            tensors.append(("expected.hidden_states.row_mask", self.row_mask.to(torch.int64)))
        names = [n for n, _ in tensors]
        assert len(names) == len(set(names)), names
        return tensors, meta


def state(module, dtype=None):
    out = []
    for k, v in module.state_dict().items():
        v = v.detach().clone()
        out.append((k, v.to(dtype) if dtype is not None else v))
    return out


def src(what):
    return f"{what} ({VERSIONS})"


def rand(gen, *shape, std=1.0):
    return torch.randn(*shape, generator=gen) * std


def init_params(module, gen, weight_std=None):
    """Weights ~ N(0, 2 / fan_in) (attention scores of std ~2: far from uniform), biases ~ N(0, 0.25),
    sinks ~ N(0, 1); 1-D norm weights ~ 1 + N(0, 0.25). Parameters are visited in name order."""
    with torch.no_grad():
        for name, p in sorted(module.named_parameters()):
            if name.endswith("weight") and p.dim() == 2:
                std = weight_std if weight_std is not None else math.sqrt(2.0 / p.shape[1])
                p.copy_(torch.randn(p.shape, generator=gen) * std)
            elif name.endswith("bias"):
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
            elif name == "sinks":
                p.copy_(torch.randn(p.shape, generator=gen))
            elif name.endswith("weight") and p.dim() == 1:
                p.copy_(1.0 + torch.randn(p.shape, generator=gen) * 0.5)
            else:
                raise RuntimeError(f"no init rule for parameter {name}")


# --- dense layers --------------------------------------------------------------------------------


def linear_case(seed, T, fin, fout, bias, weight_dtype=None, input_dtype=None):
    gen = torch.Generator().manual_seed(seed)
    lin = torch.nn.Linear(fin, fout, bias=bias).eval()
    init_params(lin, gen)
    x = rand(gen, T, fin)
    with torch.no_grad():
        if weight_dtype is not None:  # the module computes with the weights as stored
            for p in lin.parameters():
                p.copy_(p.to(weight_dtype).to(torch.float32))
        if input_dtype is not None:
            x = x.to(input_dtype).to(torch.float32)
        y = lin(x)
    return Case("linear", {"in_features": fin, "out_features": fout, "bias": bias}, state(lin, weight_dtype),
                [("hidden_states", x.to(input_dtype) if input_dtype is not None else x)], {"hidden_states": y},
                src("torch.nn.Linear"),
                what=f"in {fin}, out {fout}, bias {bias}" + (f", {weight_dtype} weights" if weight_dtype else "")
                + (f", {input_dtype} input" if input_dtype else ""))


def llama_mlp_case(seed, T, hidden, inter, act, bias):
    gen = torch.Generator().manual_seed(seed)
    cfg = transformers.LlamaConfig(hidden_size=hidden, intermediate_size=inter, hidden_act=act, mlp_bias=bias)
    mlp = modeling_llama.LlamaMLP(cfg).eval()
    init_params(mlp, gen)
    x = rand(gen, T, hidden)
    with torch.no_grad():
        y = mlp(x)
    return Case("mlp", {"hidden_size": hidden, "intermediate_size": inter, "hidden_act": act, "mlp_bias": bias},
                state(mlp), [("hidden_states", x)], {"hidden_states": y},
                src("transformers.models.llama.modeling_llama.LlamaMLP"),
                what=f"gate/up/down, {act}, mlp_bias {bias}")


def t5_ffn_case(seed, T, d_model, d_ff, proj):
    gen = torch.Generator().manual_seed(seed)
    cfg = transformers.T5Config(d_model=d_model, d_ff=d_ff, feed_forward_proj=proj, dropout_rate=0.0)
    ffn = modeling_t5.T5DenseGatedActDense(cfg).eval()
    init_params(ffn, gen)
    x = rand(gen, T, d_model)
    with torch.no_grad():
        y = ffn(x)
    return Case("mlp", {"hidden_size": d_model, "intermediate_size": d_ff, "hidden_act": cfg.dense_act_fn,
                        "checkpoint_names": "t5"},
                state(ffn), [("hidden_states", x)], {"hidden_states": y},
                src("transformers.models.t5.modeling_t5.T5DenseGatedActDense"),
                what=f"wi_0/wi_1/wo, feed_forward_proj {proj} (dense_act_fn {cfg.dense_act_fn})")


def fc_mlp_case(seed, T, hidden, inter, act):
    gen = torch.Generator().manual_seed(seed)
    cfg = transformers.CLIPTextConfig(hidden_size=hidden, intermediate_size=inter, hidden_act=act)
    mlp = modeling_clip.CLIPMLP(cfg).eval()
    init_params(mlp, gen)
    x = rand(gen, T, hidden)
    with torch.no_grad():
        y = mlp(x)
    return Case("mlp", {"hidden_size": hidden, "intermediate_size": inter, "hidden_act": act, "mlp_bias": True,
                        "checkpoint_names": "fc"},
                state(mlp), [("hidden_states", x)], {"hidden_states": y},
                src("transformers.models.clip.modeling_clip.CLIPMLP"), what=f"fc1/fc2 with biases, {act}")


def norm_input(gen, T, hidden):
    """Rows of different scales and offsets (the norms must remove both)."""
    return rand(gen, T, hidden) * torch.logspace(-1, 1, T)[:, None] + rand(gen, T, 1) * 2


def rms_norm_case(seed, T, hidden, eps, gemma):
    gen = torch.Generator().manual_seed(seed)
    norm = (modeling_gemma.GemmaRMSNorm(hidden, eps=eps) if gemma else modeling_llama.LlamaRMSNorm(hidden, eps=eps))
    norm.eval()
    with torch.no_grad():
        norm.weight.copy_(rand(gen, hidden, std=0.5) + (0.0 if gemma else 1.0))
    x = norm_input(gen, T, hidden)
    with torch.no_grad():
        y = norm(x)
    cfg = {"hidden_size": hidden, "rms_norm_eps": eps}
    if gemma:
        cfg["unit_offset"] = True
    name = "GemmaRMSNorm" if gemma else "LlamaRMSNorm"
    mod = "gemma.modeling_gemma" if gemma else "llama.modeling_llama"
    return Case("rms_norm", cfg, state(norm), [("hidden_states", x)], {"hidden_states": y},
                src(f"transformers.models.{mod}.{name}"), what=f"{name}, eps {eps}" + (" (1 + w)" if gemma else ""))


def layer_norm_case(seed, T, hidden, eps, bias):
    gen = torch.Generator().manual_seed(seed)
    norm = torch.nn.LayerNorm(hidden, eps=eps, bias=bias).eval()
    init_params(norm, gen)
    x = norm_input(gen, T, hidden)
    with torch.no_grad():
        y = norm(x)
    cfg = {"normalized_shape": hidden, "eps": eps}
    if not bias:
        cfg["bias"] = False
    return Case("layer_norm", cfg, state(norm), [("hidden_states", x)], {"hidden_states": y},
                src("torch.nn.LayerNorm"), what=f"eps {eps}, bias {bias}")


def embedding_case(seed, n, dim, T, id_dtype):
    gen = torch.Generator().manual_seed(seed)
    emb = torch.nn.Embedding(n, dim).eval()
    with torch.no_grad():
        emb.weight.copy_(rand(gen, n, dim))
    ids = torch.randint(0, n, (T,), generator=gen)
    ids[0], ids[-1] = 0, n - 1
    with torch.no_grad():
        y = emb(ids)
    return Case("embedding", {"num_embeddings": n, "embedding_dim": dim}, state(emb),
                [("input_ids", ids.to(id_dtype))], {"hidden_states": y}, src("torch.nn.Embedding"),
                what=f"{n} x {dim}, {T} ids ({id_dtype})")


# --- attention -----------------------------------------------------------------------------------

ROPE_FAMILY = {
    "llama": (modeling_llama, "LlamaConfig", "LlamaAttention", "LlamaRotaryEmbedding"),
    "mistral": (modeling_mistral, "MistralConfig", "MistralAttention", "MistralRotaryEmbedding"),
    "gemma2": (modeling_gemma2, "Gemma2Config", "Gemma2Attention", "Gemma2RotaryEmbedding"),
    "gpt_oss": (modeling_gpt_oss, "GptOssConfig", "GptOssAttention", "GptOssRotaryEmbedding"),
    "stablelm": (modeling_stablelm, "StableLmConfig", "StableLmAttention", "StableLmRotaryEmbedding"),
}


def padding_mask(T, left=0):
    m = torch.ones(1, T, dtype=torch.int64)
    m[0, :left] = 0
    return m


def generate_position_ids(attention_mask):
    """Position ids as GenerationMixin builds them for a padded batch: cumsum - 1, padding -> 1."""
    p = attention_mask.long().cumsum(-1) - 1
    p.masked_fill_(attention_mask == 0, 1)
    return p


def visible_rows(am, T, window, sinks):
    """1 where query i sees at least one key (causal, window, padding), or always with sinks."""
    if sinks or am is None:
        return None
    rows = torch.zeros(T, dtype=torch.int64)
    for i in range(T):
        lo = max(0, i - window + 1) if window else 0
        rows[i] = int(bool(am[0, lo:i + 1].any()))
    return None if bool(rows.all()) else rows


def decode_steps(T, prompt_length):
    steps = [(0, prompt_length)] if prompt_length else []
    return steps + [(t, t + 1) for t in range(prompt_length, T)]


def rope_attention_case(family, seed, T, cfg_kwargs, layer_idx=0, mode="prefill", prompt_length=0,
                        attention_mask=None, position_ids=None, mask_dtype=torch.int64, cache=None, tolerance=None,
                        what=""):
    mod, config_cls, attn_cls, rotary_cls = ROPE_FAMILY[family]
    config = getattr(transformers, config_cls)(vocab_size=16, intermediate_size=32, num_hidden_layers=2,
                                               attn_implementation="eager", **cfg_kwargs)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    attn = getattr(mod, attn_cls)(config, layer_idx=layer_idx).eval()
    init_params(attn, gen)
    rotary = getattr(mod, rotary_cls)(config)
    H = config.hidden_size
    x = torch.randn(1, T, H, generator=gen)
    window = None
    if family in ("gemma2", "gpt_oss"):
        window = attn.sliding_window
    elif family == "mistral":
        window = config.sliding_window
    sliding = window is not None
    mask_fn = masking_utils.create_sliding_window_causal_mask if sliding else masking_utils.create_causal_mask

    def run(xs, cp, pid, mask, past):
        cos, sin = rotary(xs, pid)
        if family == "stablelm":
            return attn(xs, attention_mask=mask, position_ids=pid, past_key_values=past, cache_position=cp,
                        position_embeddings=(cos, sin))[0]
        return attn(xs, (cos, sin), mask, past_key_values=past, cache_position=cp)[0]

    def stablelm_mask(am2d, q_len, kv_len, cp):
        return modeling_stablelm.StableLmModel._prepare_4d_causal_attention_mask_with_cache_position(
            am2d, sequence_length=q_len, target_length=kv_len, dtype=torch.float32, cache_position=cp, batch_size=1)

    with torch.no_grad():
        pid = position_ids if position_ids is not None else torch.arange(T)[None, :]
        cp = torch.arange(T)
        if family == "stablelm":
            mask = stablelm_mask(attention_mask if attention_mask is not None else torch.ones(1, T, dtype=torch.int64),
                                 T, T, cp)
        else:
            mask = mask_fn(config=config, input_embeds=x, attention_mask=attention_mask, cache_position=cp,
                           past_key_values=None, position_ids=pid)
        prefill = run(x, cp, pid, mask, None)
        if mode == "decode":
            assert attention_mask is None and position_ids is None
            past = DynamicCache(config=config)
            outs = []
            for a, b in decode_steps(T, prompt_length):
                xs, cps = x[:, a:b], torch.arange(a, b)
                if family == "stablelm":
                    m = stablelm_mask(torch.ones(1, b, dtype=torch.int64), b - a, b, cps)
                else:
                    m = mask_fn(config=config, input_embeds=xs, attention_mask=None, cache_position=cps,
                                past_key_values=past, position_ids=cps[None, :])
                outs.append(run(xs, cps, cps[None, :], m, past))
            out = torch.cat(outs, dim=1)
            assert torch.allclose(out, prefill, atol=1e-5, rtol=1e-5), f"{family} decode != prefill"
        else:
            out = prefill

    c = {"hidden_size": H, "num_attention_heads": config.num_attention_heads}
    if config.num_key_value_heads != config.num_attention_heads:
        c["num_key_value_heads"] = config.num_key_value_heads
    if attn.head_dim * config.num_attention_heads != H:
        c["head_dim"] = attn.head_dim
    if attn.q_proj.bias is not None:
        assert attn.o_proj.bias is not None, "q/k/v biases without an o_proj bias"
        c["attention_bias"] = True
    scale = attn.head_dim ** -0.5 if family == "stablelm" else attn.scaling
    if family == "gemma2":
        c["query_pre_attn_scalar"] = config.query_pre_attn_scalar
        assert scale == config.query_pre_attn_scalar ** -0.5
    else:
        assert scale == attn.head_dim ** -0.5
    if window is not None:
        c["sliding_window"] = window
    softcap = getattr(attn, "attn_logit_softcapping", None)
    if softcap is not None:
        c["attn_logit_softcapping"] = softcap
    if family == "gpt_oss":
        c["sinks"] = True
    c["rope_theta"] = config.rope_theta
    if getattr(config, "partial_rotary_factor", 1.0) != 1.0:
        c["partial_rotary_factor"] = config.partial_rotary_factor
    if getattr(config, "rope_scaling", None) is not None:
        c["rope_scaling"] = config.rope_scaling
        c["max_position_embeddings"] = config.max_position_embeddings
    if mode == "decode":
        c["prompt_length"] = prompt_length
        c.update(cache or {})
    inputs = [("hidden_states", x[0])]
    if position_ids is not None:
        inputs.append(("position_ids", position_ids[0].to(torch.int64)))
    if attention_mask is not None:
        inputs.append(("attention_mask", attention_mask[0].to(mask_dtype)))
    rows = visible_rows(attention_mask, T, window, family == "gpt_oss")
    return Case("attention", c, state(attn), inputs, {"hidden_states": out[0]},
                src(f"transformers.models.{family}.{mod.__name__.split('.')[-1]}.{attn_cls}, layer {layer_idx}"),
                mode=mode, row_mask=rows, tolerance=tolerance, what=what)


def bloom_attention_case(seed, T, hidden, n_head, left_pad=0, mode="prefill", prompt_length=0, what=""):
    config = transformers.BloomConfig(vocab_size=16, hidden_size=hidden, n_head=n_head, n_layer=2,
                                      attn_implementation="eager")
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    attn = modeling_bloom.BloomAttention(config, layer_idx=0).eval()
    init_params(attn, gen)
    x = torch.randn(1, T, hidden, generator=gen)
    am = padding_mask(T, left=left_pad)

    def run(xs, am2d, cp, past):
        q_len, kv_len = xs.shape[1], am2d.shape[1]
        alibi = modeling_bloom.build_alibi_tensor(am2d, n_head, torch.float32)
        mask = modeling_bloom.BloomModel._prepare_4d_causal_attention_mask_with_cache_position(
            am2d, sequence_length=q_len, target_length=kv_len, dtype=torch.float32, cache_position=cp, batch_size=1)
        residual = torch.zeros_like(xs)  # BloomAttention returns dense(context) + residual
        return attn(xs, residual, alibi, mask, layer_past=past, use_cache=past is not None, cache_position=cp)[0]

    with torch.no_grad():
        prefill = run(x, am, torch.arange(T), None)
        if mode == "decode":
            assert not left_pad
            past = DynamicCache()
            outs = [run(x[:, a:b], torch.ones(1, b, dtype=torch.int64), torch.arange(a, b), past)
                    for a, b in decode_steps(T, prompt_length)]
            out = torch.cat(outs, dim=1)
            assert torch.allclose(out, prefill, atol=1e-5, rtol=1e-5), "bloom decode != prefill"
        else:
            out = prefill
    c = {"hidden_size": hidden, "num_attention_heads": n_head, "checkpoint_names": "bloom", "attention_bias": True,
         "position_encoding": "alibi"}
    inputs = [("hidden_states", x[0])]
    if left_pad:
        inputs.append(("attention_mask", am[0]))
    if mode == "decode":
        c["prompt_length"] = prompt_length
    return Case("attention", c, state(attn), inputs, {"hidden_states": out[0]},
                src("transformers.models.bloom.modeling_bloom.BloomAttention"), mode=mode,
                row_mask=visible_rows(am if left_pad else None, T, None, False), what=what)


# --- multi-head latent attention (DeepSeek-V2/V3) ------------------------------------------------


def mla_init(module, gen):
    """Weights ~ N(0, 2 / fan_in), biases ~ N(0, 0.25), RMSNorm weights ~ 1 + N(0, 0.04); name order."""
    with torch.no_grad():
        for name, p in sorted(module.named_parameters()):
            if name.endswith("weight") and p.dim() == 2:
                p.copy_(torch.randn(p.shape, generator=gen) * math.sqrt(2.0 / p.shape[1]))
            elif name.endswith("layernorm.weight"):
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=gen))
            elif name.endswith("bias"):
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
            else:
                raise RuntimeError(f"no init rule for parameter {name}")


MLA_KEYS = ("hidden_size", "num_attention_heads", "q_lora_rank", "kv_lora_rank", "qk_nope_head_dim",
            "qk_rope_head_dim", "v_head_dim", "attention_bias", "rope_interleave", "rope_theta")


def mla_case(seed, T, cfg_kwargs, mode="prefill", path=None, position_ids=None, prompt_length=0, cache_dtype=None,
             tolerance=None, what=""):
    """transformers DeepseekV3Attention (layer 0 of a small DeepseekV3Config), eager. Prefill: the module's
    forward with the model's causal mask and DeepseekV3RotaryEmbedding cos/sin. Decode: the prompt, then one
    token at a time through a DynamicCache (as DeepseekV3Model.forward calls it), checked against the
    prefill output."""
    config = transformers.DeepseekV3Config(
        vocab_size=16, intermediate_size=32, moe_intermediate_size=16, num_hidden_layers=2, n_shared_experts=1,
        n_routed_experts=4, num_experts_per_tok=2, n_group=1, topk_group=1, first_k_dense_replace=1,
        attn_implementation="eager", **cfg_kwargs)
    assert config.num_key_value_heads == config.num_attention_heads
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    attn = modeling_deepseek_v3.DeepseekV3Attention(config, layer_idx=0).eval()
    mla_init(attn, gen)
    rotary = modeling_deepseek_v3.DeepseekV3RotaryEmbedding(config)
    x = torch.randn(1, T, config.hidden_size, generator=gen)

    def run(xs, cp, pid, past):
        mask = masking_utils.create_causal_mask(config=config, input_embeds=xs, attention_mask=None,
                                                cache_position=cp, past_key_values=past, position_ids=pid)
        return attn(xs, rotary(xs, pid), mask, past_key_values=past, cache_position=cp)[0]

    with torch.no_grad():
        pid = position_ids if position_ids is not None else torch.arange(T)[None, :]
        prefill = run(x, torch.arange(T), pid, None)
        if mode == "decode":
            assert position_ids is None
            past = DynamicCache(config=config)
            outs = [run(x[:, a:b], torch.arange(a, b), torch.arange(a, b)[None, :], past)
                    for a, b in decode_steps(T, prompt_length)]
            out = torch.cat(outs, dim=1)
            assert torch.allclose(out, prefill, atol=1e-5, rtol=1e-5), "mla decode != prefill"
        else:
            out = prefill
    c = {k: getattr(config, k) for k in MLA_KEYS}
    if config.rope_scaling is not None:
        c["rope_scaling"] = config.rope_scaling
        c["max_position_embeddings"] = config.max_position_embeddings
    if path is not None:
        c["path"] = path
    if mode == "decode":
        c["prompt_length"] = prompt_length
        if cache_dtype is not None:
            c["cache_dtype"] = cache_dtype
    inputs = [("hidden_states", x[0])]
    if position_ids is not None:
        inputs.append(("position_ids", position_ids[0].to(torch.int64)))
    return Case("mla", c, state(attn), inputs, {"hidden_states": out[0]},
                src("transformers.models.deepseek_v3.modeling_deepseek_v3.DeepseekV3Attention"), mode=mode,
                tolerance=tolerance, what=what)


# --- BitNet b1.58 ---------------------------------------------------------------------------------


def absmean_ternary(w):
    """WeightQuant's ternarization, step by step: (ternary [out, in], divisor s = 1 / clamp(mean|w|, 1e-5),
    multiplier mean). Asserted equal to what WeightQuant itself returns (t / s)."""
    mean = w.abs().mean().clamp(min=1e-5)
    s = 1.0 / mean
    t = (w * s).round().clamp(-1, 1)
    assert torch.equal(hf_bitnet.WeightQuant.apply(w), t / s)
    return t, s.reshape(1), mean.reshape(1)


def hf_packed(t):
    packed = hf_bitnet.pack_weights(t.clone())  # pack_weights adds 1 to its argument in place
    assert packed.dtype == torch.uint8
    assert torch.equal(hf_bitnet.unpack_weights(packed, dtype=torch.float32)[: t.shape[0]], t)
    return packed


def bit_module(w, b, linear_class, mode, rms=None):
    """The transformers module for dense weights w [out, in] (bias b or None): BitLinear (packed weights,
    divisor scale), AutoBitLinear offline (packed weights through its load_state_dict hook, multiplier scale)
    or AutoBitLinear online (w itself). Returns (module, state dict entries without a prefix)."""
    out_f, in_f = w.shape
    t, s, mean = absmean_ternary(w)
    bias = b is not None
    if linear_class == "bitlinear":
        assert mode == "offline" and out_f % 4 == 0  # BitLinear's buffer is [out // 4, in]
        m = hf_bitnet.BitLinear(in_f, out_f, bias=bias, dtype=torch.float32, use_rms_norm=rms is not None,
                                rms_norm_eps=1e-6)
        with torch.no_grad():
            m.weight.copy_(hf_packed(t))
            m.weight_scale.copy_(s)
            if bias:
                m.bias.copy_(b)
            if rms is not None:
                m.rms_norm.weight.copy_(rms)
        sd = [("weight", m.weight.detach().clone()), ("weight_scale", m.weight_scale.detach().clone())]
    else:
        online = mode == "online"
        m = hf_bitnet.AutoBitLinear(in_f, out_f, bias=bias, dtype=torch.float32, online_quant=online,
                                    use_rms_norm=rms is not None, rms_norm_eps=1e-6)
        sd = [("weight", w.clone())] if online else [("weight", hf_packed(t)), ("weight_scale", mean.clone())]
        load = dict(sd)
        if bias:
            load["bias"] = b
        if rms is not None:
            load["rms_norm.weight"] = rms
        m.load_state_dict(load)  # offline: the hook unpacks the uint8 weight
    if bias:
        sd.append(("bias", b.clone()))
    if rms is not None:
        sd.append(("rms_norm.weight", rms.clone()))
    return m.eval(), sd


def bit_linear_case(seed, T, in_f, out_f, linear_class="bitlinear", mode="offline", bias=False, rms_norm=False,
                    ternary_format=None, what=""):
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(out_f, in_f, generator=gen) / math.sqrt(in_f)
    b = torch.randn(out_f, generator=gen) * 0.5 if bias else None
    rms = 1.0 + 0.2 * torch.randn(in_f, generator=gen) if rms_norm else None
    x = torch.randn(T, in_f, generator=gen) * 2.0
    if T >= 3:
        x[1] = 0.0  # an all-zero token: output = bias
    m, sd = bit_module(w, b, linear_class, mode, rms)
    with torch.no_grad():
        y = m(x)
    c = {"in_features": in_f, "out_features": out_f}
    if bias:
        c["bias"] = True
    if linear_class != "bitlinear":
        c["linear_class"] = linear_class
    if mode != "offline":
        c["quantization_mode"] = mode
    if rms_norm:
        c["use_rms_norm"] = True
        c["rms_norm_eps"] = 1e-6
    if ternary_format:
        c["ternary_format"] = ternary_format
    cls = "BitLinear" if linear_class == "bitlinear" else "AutoBitLinear"
    return Case("bit_linear", c, sd, [("hidden_states", x)], {"hidden_states": y},
                src(f"transformers.integrations.bitnet.{cls}"), what=what)


def bitnet_layer_case(seed, T, linear_class="bitlinear", quant_mode="offline", mode="prefill", prompt_length=0,
                      position_ids=None, what=""):
    """transformers BitNetDecoderLayer (eager) whose nn.Linear projections are replaced by BitLinear /
    AutoBitLinear modules (what the BitNet quantizer's _replace_with_bitnet_linear builds), called as
    BitNetModel.forward calls it (create_causal_mask, BitNetRotaryEmbedding); decode through a DynamicCache,
    checked against the prefill output."""
    config = transformers.BitNetConfig(vocab_size=16, hidden_size=32, intermediate_size=48, num_hidden_layers=1,
                                       num_attention_heads=4, num_key_value_heads=2, hidden_act="relu2",
                                       max_position_embeddings=64, rms_norm_eps=1e-5, rope_theta=500000.0,
                                       attn_implementation="eager")
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    layer = modeling_bitnet.BitNetDecoderLayer(config, layer_idx=0).eval()
    with torch.no_grad():
        for name, p in sorted(layer.named_parameters()):
            if p.dim() == 2:
                p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(p.shape[1]))
            else:  # RMSNorm weights
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=gen))
    state_dict = {}
    for parent_name, parent in (("self_attn", layer.self_attn), ("mlp", layer.mlp)):
        for child_name, child in list(parent.named_children()):
            if not isinstance(child, torch.nn.Linear):
                continue
            assert child.bias is None
            new, sd = bit_module(child.weight.detach().clone(), None, linear_class, quant_mode)
            setattr(parent, child_name, new)
            for n, t in sd:
                state_dict[f"{parent_name}.{child_name}.{n}"] = t
    for n, p in layer.named_parameters():  # the norms (AutoBitLinear online: its float weights too)
        state_dict.setdefault(n, p.detach().clone())
    rotary = modeling_bitnet.BitNetRotaryEmbedding(config)
    x = torch.randn(1, T, config.hidden_size, generator=gen)

    def run(xs, cp, pid, past):
        mask = masking_utils.create_causal_mask(config=config, input_embeds=xs, attention_mask=None,
                                                cache_position=cp, past_key_values=past, position_ids=pid)
        out = layer(xs, attention_mask=mask, position_ids=pid, past_key_values=past, use_cache=past is not None,
                    cache_position=cp, position_embeddings=rotary(xs, pid))
        return out[0] if isinstance(out, tuple) else out

    with torch.no_grad():
        pid = position_ids if position_ids is not None else torch.arange(T)[None, :]
        prefill = run(x, torch.arange(T), pid, None)
        if mode == "decode":
            assert position_ids is None
            past = DynamicCache(config=config)
            out = torch.cat([run(x[:, a:b], torch.arange(a, b), torch.arange(a, b)[None, :], past)
                             for a, b in decode_steps(T, prompt_length)], dim=1)
            # Exact attention inputs differ between the two runs only in summation order; a quantization
            # step may flip, so compare loosely here (the case holds the decode output itself).
            assert torch.allclose(out, prefill, atol=1e-3, rtol=1e-3), "bitnet decode != prefill"
        else:
            out = prefill
    c = {"hidden_size": config.hidden_size, "intermediate_size": config.intermediate_size,
         "num_attention_heads": config.num_attention_heads, "num_key_value_heads": config.num_key_value_heads,
         "rms_norm_eps": config.rms_norm_eps, "rope_theta": config.rope_theta, "hidden_act": config.hidden_act}
    if linear_class != "bitlinear":
        c["linear_class"] = linear_class
    if quant_mode != "offline":
        c["quantization_mode"] = quant_mode
    if mode == "decode":
        c["prompt_length"] = prompt_length
    inputs = [("hidden_states", x[0])]
    if position_ids is not None:
        inputs.append(("position_ids", position_ids[0].to(torch.int64)))
    weights = [(n, state_dict[n]) for n in sorted(state_dict)]
    cls = "BitLinear" if linear_class == "bitlinear" else "AutoBitLinear"
    return Case("bitnet_layer", c, weights, inputs, {"hidden_states": out[0]},
                src(f"transformers.models.bitnet.modeling_bitnet.BitNetDecoderLayer with {cls}"), mode=mode,
                what=what)


# --- RetNet (torchscale) --------------------------------------------------------------------------


def torchscale_retnet():
    """torchscale.architecture.retnet and component.multiscale_retention. retnet.py imports fairscale
    (checkpoint_wrapper, wrap) and droppath.py timm (drop_path); neither runs here (no activation
    checkpointing, no FSDP, drop_path_rate 0), so when they are not installed they are stubbed by modules
    whose functions raise if called."""
    import importlib
    import types

    def unavailable(*args, **kwargs):
        raise RuntimeError("stubbed dependency called")

    for name, attrs in (("fairscale", {}), ("fairscale.nn", {"checkpoint_wrapper": unavailable, "wrap": unavailable}),
                        ("timm", {}), ("timm.models", {}), ("timm.models.layers", {"drop_path": unavailable})):
        try:
            importlib.import_module(name)
        except ImportError:
            m = types.ModuleType(name)
            m.__dict__.update(attrs)
            sys.modules[name] = m
    from torchscale.architecture import config as ts_config
    from torchscale.architecture import retnet as ts_retnet
    from torchscale.component import multiscale_retention as ts_msr
    return ts_config, ts_retnet, ts_msr


def torchscale_version():
    from importlib.metadata import version
    return f"torchscale {version('torchscale')}, torch {torch.__version__}"


def retention_case(seed, T, kind, embed, value, heads, mode, eps=1e-6, chunk=None, ffn=None, activation_fn=None,
                   qk_gain=1.0, what=""):
    """torchscale MultiScaleRetention (kind "retention") or RetNet DecoderLayer (kind "layer"), built from a
    RetNetConfig with the module's own reset_parameters under a fixed seed (RMSNorm weights of a layer set
    to 1 + 0.1 N(0, 1)). Modes as RetNetDecoder.forward runs them: parallel (RetNetRelPos(T)), recurrent (one
    token at a time with an incremental_state, RetNetRelPos(t + 1, activate_recurrent=True)), chunkwise
    (RetNetRelPos(T', chunkwise_recurrent=True) over the input zero-padded to a multiple T' of the chunk,
    the output cut back to T)."""
    ts_config, ts_retnet, ts_msr = torchscale_retnet()
    kw = dict(decoder_embed_dim=embed, decoder_value_embed_dim=value, decoder_retention_heads=heads,
              layernorm_eps=eps, recurrent_chunk_size=chunk or 512)
    if kind == "layer":
        kw.update(decoder_ffn_embed_dim=ffn, activation_fn=activation_fn)
    args = ts_config.RetNetConfig(**kw)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    if kind == "retention":
        module = ts_msr.MultiScaleRetention(args, embed, value, heads).eval()
        if qk_gain != 1.0:  # larger scores, so that the abs-sum normalisation acts
            with torch.no_grad():
                module.q_proj.weight.mul_(qk_gain)
                module.k_proj.weight.mul_(qk_gain)

        def call(xs, rel, chunkwise, state):
            return module(xs, rel, chunkwise_recurrent=chunkwise, incremental_state=state)
    else:
        module = ts_retnet.DecoderLayer(args, depth=0).eval()
        with torch.no_grad():
            for n, p in sorted(module.named_parameters()):
                if n.endswith("layer_norm.weight"):
                    p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=gen))

        def call(xs, rel, chunkwise, state):
            return module(xs, incremental_state=state, chunkwise_recurrent=chunkwise, retention_rel_pos=rel)[0]
    x = torch.randn(1, T, embed, generator=gen)
    rel = ts_retnet.RetNetRelPos(args)
    with torch.no_grad():
        if mode == "parallel":
            y = call(x, rel(T), False, None)
        elif mode == "recurrent":
            state = {}
            y = torch.cat([call(x[:, t:t + 1], rel(t + 1, activate_recurrent=True), False, state) for t in range(T)],
                          dim=1)
        else:
            pad = (chunk - T % chunk) % chunk
            xp = torch.nn.functional.pad(x, (0, 0, 0, pad))
            y = call(xp, rel(T + pad, chunkwise_recurrent=True), True, None)[:, :T]
    c = {"decoder_embed_dim": embed, "decoder_value_embed_dim": value, "decoder_retention_heads": heads,
         "layernorm_eps": eps}
    if mode == "chunkwise":
        c["recurrent_chunk_size"] = chunk
    if kind == "layer":
        c["decoder_ffn_embed_dim"] = ffn
        c["activation_fn"] = activation_fn
    weights = [(n, p.detach().clone()) for n, p in sorted(module.state_dict().items())]
    layer = "retention" if kind == "retention" else "retnet_layer"
    ref = ("torchscale.component.multiscale_retention.MultiScaleRetention" if kind == "retention"
           else "torchscale.architecture.retnet.DecoderLayer")
    return Case(layer, c, weights, [("hidden_states", x[0])], {"hidden_states": y[0]},
                f"{ref} ({torchscale_version()})", mode=mode, what=what)


# --- YOCO (a transcription of unilm YOCO: tools/yoco_reference.py) --------------------------------


def yoco_source(what):
    return (f"tools/yoco_reference.py {what} (a PyTorch transcription of unilm YOCO, "
            f"{yoco_reference.REFERENCE}; NOT the original package, which needs CUDA; torch {torch.__version__})")


def yoco_init(module, gen, gt_gain=1.0):
    """init_params (weights N(0, 2 / fan_in), RMSNorm weights 1 + N(0, 0.25)); gt_proj weights times gt_gain
    (larger gate logits: decays spread over (0, 1) instead of all near exp(-log 2 / 16))."""
    init_params(module, gen)
    if gt_gain != 1.0:
        with torch.no_grad():
            for n, p in module.named_parameters():
                if n.endswith("gt_proj.weight"):
                    p.mul_(gt_gain)


def gated_retention_case(seed, T, dim, heads, mode, chunk=None, norm_eps=1e-5, rope_theta=10000.0, gt_gain=1.0,
                         what=""):
    """GateRetention as SelfDecoder runs it: chunkwise = the forward without incremental_state over the input
    zero-padded to a multiple of the chunk (SelfDecoder.forward's padding; the padded rows cut off again),
    recurrent = one token at a time with an incremental_state (is_prefilling False), rel_pos of position t."""
    gen = torch.Generator().manual_seed(seed)
    args = yoco_reference.YOCOArgs(dim=dim, n_layers=2, hidden_dim=dim, n_self_heads=heads, n_attn_heads=heads,
                                   n_attn_kv_heads=heads, max_seq_len=T + (chunk or 1), rope_theta=rope_theta,
                                   norm_eps=norm_eps, block_size=chunk or 256)
    module = yoco_reference.GateRetention(args).eval()
    yoco_init(module, gen, gt_gain)
    x = torch.randn(1, T, dim, generator=gen)
    with torch.no_grad():
        if mode == "chunkwise":
            pad = (chunk - T % chunk) % chunk
            xp = torch.nn.functional.pad(x, (0, 0, 0, pad))
            y = module(xp, yoco_reference.gate_retention_rel_pos(args, 0, T + pad))[:, :T]
        else:
            state = {}
            y = torch.cat([module(x[:, t:t + 1], yoco_reference.gate_retention_rel_pos(args, t, 1), state)
                           for t in range(T)], dim=1)
        # The two forms and the source's parallel_gate_retention agree (a check of the transcription).
        q = yoco_reference.apply_rotary_emb(module.q_proj(x).view(1, T, heads, dim // heads),
                                            *yoco_reference.gate_retention_rel_pos(args, 0, T), interleaved=True)
        k = yoco_reference.apply_rotary_emb(module.k_proj(x).view(1, T, heads, dim // heads),
                                            *yoco_reference.gate_retention_rel_pos(args, 0, T), interleaved=True)
        v = module.v_proj(x).view(1, T, heads, dim // heads).transpose(1, 2)
        gt = torch.nn.functional.logsigmoid(module.gt_proj(x).view(1, T, heads).transpose(1, 2)) / 16
        o = yoco_reference.parallel_gate_retention(q.transpose(1, 2), k.transpose(1, 2), v, gt)
        o = module.subln(o).transpose(1, 2).reshape(1, T, dim)
        yp = module.out_proj(yoco_reference.swiglu(module.g_proj(x), o))
        assert torch.allclose(y, yp, atol=1e-5, rtol=1e-4), (y - yp).abs().max()
    c = {"dim": dim, "n_self_heads": heads, "norm_eps": norm_eps, "rope_theta": rope_theta}
    if mode == "chunkwise":
        c["chunk_size"] = chunk
    weights = [(n, p.detach().clone()) for n, p in sorted(module.state_dict().items())]
    return Case("gated_retention", c, weights, [("hidden_states", x[0])], {"hidden_states": y[0]},
                yoco_source("GateRetention"), mode=mode, what=what)


def yoco_case(seed, T, dim, n_layers, hidden_dim, self_heads, attn_heads, kv_heads, mode, block=256, prompt_length=0,
              norm_eps=1e-5, rope_theta=10000.0, gt_gain=1.0, sliding_window=None, what=""):
    """YOCO (without embedding / output projection) as its generation runs it: prefill = one forward over the
    T embedded tokens (no incremental_state, is_prefilling True: the self-decoder chunkwise over the input
    padded to a multiple of block_size, the cross-decoder over every row); decode = a prompt of prompt_length
    tokens (is_prefilling True, with incremental_state) and then one token at a time (is_prefilling False,
    start_pos t), every call's rows kept. Checked against the prefill output before writing."""
    gen = torch.Generator().manual_seed(seed)
    args = yoco_reference.YOCOArgs(dim=dim, n_layers=n_layers, hidden_dim=hidden_dim, n_self_heads=self_heads,
                                   n_attn_heads=attn_heads, n_attn_kv_heads=kv_heads, max_seq_len=T + block,
                                   rope_theta=rope_theta, norm_eps=norm_eps, block_size=block,
                                   sliding_window=sliding_window)
    module = yoco_reference.YOCO(args).eval()
    yoco_init(module, gen, gt_gain)
    x = torch.randn(1, T, dim, generator=gen)
    with torch.no_grad():
        full = module(x, start_pos=0, incremental_state=None, is_prefilling=True)
        if mode == "prefill":
            y = full
        else:
            state, parts, t = {}, [], 0
            if prompt_length > 0:
                parts.append(module(x[:, :prompt_length], start_pos=0, incremental_state=state, is_prefilling=True))
                t = prompt_length
            for t in range(t, T):
                parts.append(module(x[:, t:t + 1], start_pos=t, incremental_state=state, is_prefilling=False))
            y = torch.cat(parts, dim=1)
            assert torch.allclose(y, full, atol=1e-4, rtol=1e-4), (y - full).abs().max()
    c = {"dim": dim, "n_layers": n_layers, "hidden_dim": hidden_dim, "n_self_heads": self_heads,
         "n_attn_heads": attn_heads, "n_attn_kv_heads": kv_heads, "norm_eps": norm_eps, "rope_theta": rope_theta,
         "block_size": block}
    if mode == "decode":
        c["prompt_length"] = prompt_length
    if sliding_window is not None:
        c["sliding_window"] = sliding_window
    weights = [(n, p.detach().clone()) for n, p in sorted(module.state_dict().items())]
    return Case("yoco", c, weights, [("hidden_states", x[0])], {"hidden_states": y[0]},
                yoco_source("YOCO"), mode=mode, what=what)


# --- sparse attention: Longformer, BigBird (docs/sparse_attention.md) ---------------------------
from transformers.models.big_bird import modeling_big_bird  # noqa: E402
from transformers.models.longformer import modeling_longformer  # noqa: E402


def longformer_case(seed, T, hidden, heads, window, global_idx, what=""):
    """transformers LongformerSelfAttention (layer 0), eval, called as LongformerModel calls it: attention_mask
    [1, T] 0 for local and positive for global tokens (the module only tests its sign; LongformerModel passes
    -finfo.min), is_index_* derived from it (no padding)."""
    config = transformers.LongformerConfig(hidden_size=hidden, num_attention_heads=heads, attention_window=[window],
                                           attention_probs_dropout_prob=0.0)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    attn = modeling_longformer.LongformerSelfAttention(config, layer_id=0).eval()
    init_params(attn, gen)
    x = torch.randn(1, T, hidden, generator=gen)
    glob = torch.zeros(T, dtype=torch.int64)
    glob[list(global_idx)] = 1
    am = glob.to(torch.float32)[None, :] * 10000.0
    with torch.no_grad():
        out = attn(x, attention_mask=am, is_index_masked=am < 0, is_index_global_attn=am > 0,
                   is_global_attn=bool(glob.any()))[0]
    c = {"hidden_size": hidden, "num_attention_heads": heads, "attention_window": window}
    inputs = [("hidden_states", x[0])]
    if bool(glob.any()):
        inputs.append(("is_index_global_attn", glob))
    return Case("longformer_self_attention", c, state(attn), inputs, {"hidden_states": out[0]},
                src("transformers.models.longformer.modeling_longformer.LongformerSelfAttention"), what=what)


def bigbird_case(seed, T, hidden, heads, block, n_random, use_bias=True, what=""):
    """transformers BigBirdBlockSparseAttention, eval (its random-block table is then all zeros), with the
    masks BigBirdModel.create_masks_for_block_sparse_attn builds for an all-ones attention mask."""
    config = transformers.BigBirdConfig(hidden_size=hidden, num_attention_heads=heads, block_size=block,
                                        num_random_blocks=n_random, use_bias=use_bias, attention_type="block_sparse",
                                        max_position_embeddings=max(512, T))
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    attn = modeling_big_bird.BigBirdBlockSparseAttention(config, seed=seed).eval()
    init_params(attn, gen)
    x = torch.randn(1, T, hidden, generator=gen)
    blocked, band, from_mask, to_mask = modeling_big_bird.BigBirdModel.create_masks_for_block_sparse_attn(
        torch.ones(1, T), block)
    with torch.no_grad():
        out = attn(x, band_mask=band, from_mask=from_mask, to_mask=to_mask, from_blocked_mask=blocked,
                   to_blocked_mask=blocked)[0]
    c = {"hidden_size": hidden, "num_attention_heads": heads, "block_size": block, "num_random_blocks": n_random,
         "use_bias": use_bias, "random_blocks": "hf_eval"}
    return Case("bigbird_block_sparse_attention", c, state(attn), [("hidden_states", x[0])],
                {"hidden_states": out[0]}, src("transformers.models.big_bird.modeling_big_bird."
                                               "BigBirdBlockSparseAttention"), what=what)


def sparse_cases():
    return [
        ("longformer_global", lambda s: longformer_case(
            s, 16, 32, 4, 4, (1, 10), what="window 4 (2 each side), global tokens 1 and 10, head_dim 8")),
        ("longformer_window8_no_global", lambda s: longformer_case(
            s, 24, 32, 2, 8, (), what="window 8, no global token, head_dim 16")),
        ("bigbird_block_sparse", lambda s: bigbird_case(
            s, 160, 32, 4, 8, 2, what="T 160 = 20 blocks of 8, 2 random blocks (HF eval: block 0), head_dim 8")),
        ("bigbird_block_sparse_no_bias", lambda s: bigbird_case(
            s, 96, 16, 2, 8, 1, use_bias=False, what="T 96 = 12 blocks of 8, 1 random block, no bias")),
    ]


# --- KAN (a transcription of efficient-kan: tools/efficient_kan_reference.py, docs/kan.md) -----------
import efficient_kan_reference  # noqa: E402  (efficient-kan is not installable here)


def kan_linear_case(seed, T, in_f, out_f, grid_size, spline_order, scaler, x_std, update_grid=False, what=""):
    """efficient-kan KANLinear forward; parameters N(0, 0.5^2) (scaler N(1, 0.5^2)); with update_grid, the
    grid (and spline_weight) first adapt to 64 samples of N(0, x_std^2), giving non-uniform per-input rows."""
    gen = torch.Generator().manual_seed(seed)
    layer = efficient_kan_reference.KANLinear(in_f, out_f, grid_size=grid_size, spline_order=spline_order,
                                              enable_standalone_scale_spline=scaler).eval()
    with torch.no_grad():
        layer.base_weight.copy_(rand(gen, out_f, in_f, std=0.5))
        layer.spline_weight.copy_(rand(gen, out_f, in_f, grid_size + spline_order, std=0.5))
        if scaler:
            layer.spline_scaler.copy_(1.0 + rand(gen, out_f, in_f, std=0.5))
        if update_grid:
            layer.update_grid(rand(gen, 64, in_f, std=x_std))
        x = rand(gen, T, in_f, std=x_std)
        y = layer(x)
    c = {"in_features": in_f, "out_features": out_f, "grid_size": grid_size, "spline_order": spline_order,
         "enable_standalone_scale_spline": scaler}
    weights = [(n, t.detach().clone()) for n, t in sorted(layer.state_dict().items())]
    return Case("kan_linear", c, weights, [("hidden_states", x)], {"hidden_states": y},
                f"tools/efficient_kan_reference.py KANLinear (a PyTorch transcription of "
                f"{efficient_kan_reference.REFERENCE}; NOT the original package; torch {torch.__version__})", what=what)


def fast_kan_case(seed, T, in_f, out_f, num_grids, use_base_update, what=""):
    """fast-kan FastKANLayer (default grid [-2, 2]); parameters from init_params (LayerNorm weight 1 + N(0, 0.5^2))."""
    gen = torch.Generator().manual_seed(seed)
    layer = efficient_kan_reference.FastKANLayer(in_f, out_f, num_grids=num_grids,
                                                 use_base_update=use_base_update).eval()
    with torch.no_grad():
        for name, p in sorted(layer.named_parameters()):
            if name == "rbf.grid":
                continue
            p.copy_(rand(gen, *p.shape, std=0.3) + (1.0 if name == "layernorm.weight" else 0.0))
        x = rand(gen, T, in_f)
        y = layer(x)
    c = {"in_features": in_f, "out_features": out_f, "num_grids": num_grids, "use_base_update": use_base_update}
    weights = [(n, t.detach().clone()) for n, t in sorted(layer.state_dict().items())]
    return Case("fast_kan_layer", c, weights, [("hidden_states", x)], {"hidden_states": y},
                f"tools/efficient_kan_reference.py FastKANLayer (a PyTorch transcription of "
                f"{efficient_kan_reference.FASTKAN_REFERENCE}; NOT the original package; torch {torch.__version__})",
                what=what)


def cheby_kan_case(seed, T, in_f, out_f, degree, what=""):
    gen = torch.Generator().manual_seed(seed)
    layer = efficient_kan_reference.ChebyKANLayer(in_f, out_f, degree).eval()
    with torch.no_grad():
        layer.cheby_coeffs.copy_(rand(gen, in_f, out_f, degree + 1, std=0.3))
        x = rand(gen, T, in_f)
        y = layer(x)
    c = {"in_features": in_f, "out_features": out_f, "degree": degree}
    weights = [(n, t.detach().clone()) for n, t in sorted(layer.state_dict().items())]
    return Case("cheby_kan_layer", c, weights, [("hidden_states", x)], {"hidden_states": y},
                f"tools/efficient_kan_reference.py ChebyKANLayer (a PyTorch transcription of "
                f"{efficient_kan_reference.CHEBYKAN_REFERENCE}; NOT the original package; torch {torch.__version__})",
                what=what)


def kan_cases():
    return [
        ("fast_kan_layer", lambda s: fast_kan_case(s, 6, 10, 7, 8, True, what="8 Gaussian bumps on [-2, 2], base update")),
        ("fast_kan_layer_no_base", lambda s: fast_kan_case(s, 5, 6, 9, 5, False, what="5 bumps, no base_linear")),
        ("cheby_kan_layer", lambda s: cheby_kan_case(s, 7, 9, 5, 4, what="degree 4")),
        ("cheby_kan_layer_degree1", lambda s: cheby_kan_case(s, 4, 5, 6, 1, what="degree 1")),
        ("kan_linear_default", lambda s: kan_linear_case(
            s, 7, 12, 10, 5, 3, True, 0.8, what="G 5, k 3, standalone scaler, inputs N(0, 0.8^2): some outside the grid")),
        ("kan_linear_order2_no_scaler", lambda s: kan_linear_case(
            s, 5, 9, 17, 4, 2, False, 0.6, what="G 4, k 2, enable_standalone_scale_spline false")),
        ("kan_linear_updated_grid", lambda s: kan_linear_case(
            s, 6, 8, 5, 6, 3, True, 1.5, update_grid=True,
            what="grid from update_grid on 64 samples (non-uniform, per input), inputs N(0, 1.5^2)")),
        ("kan_linear_order1_wide", lambda s: kan_linear_case(
            s, 20, 33, 3, 3, 1, True, 1.0, what="G 3, k 1 (piecewise linear), 20 tokens (GEMM path)")),
    ]


# ------------------------------------------------------------------------------------------------
# The case list (name, builder(seed)); base seeds are fixed, --roundtrip adds ROUNDTRIP_SEED_OFFSET.
# ------------------------------------------------------------------------------------------------

LLAMA3 = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
          "original_max_position_embeddings": 16}
GEMMA2 = dict(hidden_size=32, num_attention_heads=4, num_key_value_heads=2, head_dim=8, query_pre_attn_scalar=24,
              attn_logit_softcapping=4.0, final_logit_softcapping=30.0, sliding_window=6)
GPT_OSS = dict(hidden_size=32, num_attention_heads=4, num_key_value_heads=2, head_dim=8, sliding_window=4,
               num_local_experts=4, num_experts_per_tok=2)

MLA_SMALL = dict(hidden_size=32, num_attention_heads=4, num_key_value_heads=4, kv_lora_rank=24, qk_nope_head_dim=8,
                 qk_rope_head_dim=8, v_head_dim=12, rope_theta=10000.0)
MLA_YARN = {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 16, "beta_fast": 32.0,
            "beta_slow": 1.0, "mscale": 1.0, "mscale_all_dim": 0.8}


def cases():
    pad3 = padding_mask(11, left=3)
    pad2 = padding_mask(12, left=2)
    L = rope_attention_case
    return [
        ("linear_bias", lambda s: linear_case(s, 5, 24, 40, True)),
        ("linear_no_bias_bf16_weights_f16_input", lambda s: linear_case(s, 4, 32, 16, False, torch.bfloat16,
                                                                        torch.float16)),
        ("mlp_llama_silu", lambda s: llama_mlp_case(s, 6, 32, 48, "silu", False)),
        ("mlp_llama_bias_gelu_tanh", lambda s: llama_mlp_case(s, 5, 24, 40, "gelu_pytorch_tanh", True)),
        ("mlp_t5_gated_gelu", lambda s: t5_ffn_case(s, 5, 32, 48, "gated-gelu")),
        ("mlp_fc_gelu", lambda s: fc_mlp_case(s, 5, 32, 64, "gelu")),
        ("rms_norm_llama", lambda s: rms_norm_case(s, 6, 48, 1e-5, False)),
        ("rms_norm_gemma", lambda s: rms_norm_case(s, 6, 32, 1e-6, True)),
        ("layer_norm", lambda s: layer_norm_case(s, 6, 40, 1e-5, True)),
        ("layer_norm_no_bias", lambda s: layer_norm_case(s, 5, 24, 1e-6, False)),
        ("embedding", lambda s: embedding_case(s, 50, 16, 9, torch.int64)),
        ("embedding_int32_ids", lambda s: embedding_case(s, 20, 8, 6, torch.int32)),
        ("attention_llama_mha", lambda s: L("llama", s, 7, dict(hidden_size=32, num_attention_heads=4),
                                            what="MHA, default RoPE")),
        ("attention_llama_gqa_llama3_rope", lambda s: L(
            "llama", s, 10, dict(hidden_size=32, num_attention_heads=4, num_key_value_heads=2, rope_theta=500000.0,
                                 rope_scaling=LLAMA3, max_position_embeddings=128),
            what="GQA 4/2, llama3 RoPE scaling, theta 5e5")),
        ("attention_llama_mqa_linear_rope_position_ids", lambda s: L(
            "llama", s, 9, dict(hidden_size=32, num_attention_heads=4, num_key_value_heads=1,
                                rope_scaling={"rope_type": "linear", "factor": 2.0}),
            position_ids=torch.arange(5, 14)[None, :], what="MQA, linear RoPE scaling, position_ids 5..13")),
        ("attention_llama_dynamic_rope", lambda s: L(
            "llama", s, 12, dict(hidden_size=32, num_attention_heads=2, num_key_value_heads=2,
                                 rope_scaling={"rope_type": "dynamic", "factor": 2.0}, max_position_embeddings=8),
            what="dynamic NTK RoPE, T 12 > max_position_embeddings 8")),
        ("attention_llama_yarn_rope", lambda s: L(
            "llama", s, 8, dict(hidden_size=32, num_attention_heads=4, num_key_value_heads=2,
                                rope_scaling={"rope_type": "yarn", "factor": 4.0,
                                              "original_max_position_embeddings": 16}, max_position_embeddings=64),
            what="YaRN RoPE (factor 4, original 16)")),
        ("attention_llama_bias_head_dim", lambda s: L(
            "llama", s, 8, dict(hidden_size=32, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                                attention_bias=True),
            what="attention_bias, head_dim 16 != hidden / heads")),
        ("attention_llama_left_padding_bool_mask", lambda s: L(
            "llama", s, 11, dict(hidden_size=32, num_attention_heads=4, num_key_value_heads=2),
            attention_mask=pad3, position_ids=generate_position_ids(pad3), mask_dtype=torch.bool,
            what="3 left pad tokens (BOOL mask), generate-style position_ids")),
        ("attention_mistral_sliding_window", lambda s: L(
            "mistral", s, 13, dict(hidden_size=32, num_attention_heads=4, num_key_value_heads=2, head_dim=8,
                                   sliding_window=5, rope_theta=1000000.0),
            what="sliding_window 5 < T, theta 1e6")),
        ("attention_gemma2_sliding_softcap", lambda s: L(
            "gemma2", s, 12, GEMMA2, layer_idx=0,
            what="soft-cap 4, query_pre_attn_scalar 24, sliding layer (window 6)")),
        ("attention_gemma2_global", lambda s: L("gemma2", s, 12, GEMMA2, layer_idx=1,
                                                what="soft-cap 4, global layer")),
        ("attention_gpt_oss_sinks_sliding_left_padding", lambda s: L(
            "gpt_oss", s, 12, GPT_OSS, layer_idx=0, attention_mask=pad2, position_ids=generate_position_ids(pad2),
            what="sinks, YaRN (gpt-oss default), biases, sliding window 4, 2 left pad tokens")),
        ("attention_gpt_oss_sinks_full", lambda s: L("gpt_oss", s, 10, GPT_OSS, layer_idx=1,
                                                     what="sinks, YaRN, biases, full layer")),
        ("attention_stablelm_partial_rotary", lambda s: L(
            "stablelm", s, 9, dict(hidden_size=32, num_attention_heads=4, num_key_value_heads=2,
                                   partial_rotary_factor=0.5),
            what="partial rotary (half of head_dim 8)")),
        ("attention_bloom_alibi", lambda s: bloom_attention_case(s, 10, 32, 4, what="ALiBi, fused query_key_value")),
        ("attention_bloom_alibi_3heads_left_padding", lambda s: bloom_attention_case(
            s, 10, 24, 3, left_pad=2, what="ALiBi with 3 heads, 2 left pad tokens")),
        ("decode_llama_gqa", lambda s: L(
            "llama", s, 9, dict(hidden_size=32, num_attention_heads=4, num_key_value_heads=2), mode="decode",
            what="GQA, every token alone")),
        ("decode_llama_llama3_rope_prompt", lambda s: L(
            "llama", s, 10, dict(hidden_size=32, num_attention_heads=4, num_key_value_heads=2, rope_theta=500000.0,
                                 rope_scaling=LLAMA3, max_position_embeddings=128),
            mode="decode", prompt_length=5, what="llama3 RoPE, prompt of 5 then 5 single tokens")),
        ("decode_mistral_sliding_window_ring_cache", lambda s: L(
            "mistral", s, 11, dict(hidden_size=32, num_attention_heads=4, num_key_value_heads=2, head_dim=8,
                                   sliding_window=4),
            mode="decode", prompt_length=3,
            cache={"cache_eviction": "sliding_window", "cache_capacity": 4},
            what="sliding window 4, KV cache a ring of 4")),
        ("decode_gemma2_softcap_f16_cache", lambda s: L(
            "gemma2", s, 10, GEMMA2, layer_idx=0, mode="decode", cache={"cache_dtype": "float16"},
            tolerance=1e-3, what="soft-cap, sliding layer, float16 KV cache")),
        ("decode_gpt_oss_sinks", lambda s: L(
            "gpt_oss", s, 10, GPT_OSS, layer_idx=0, mode="decode", prompt_length=4,
            what="sinks, YaRN, biases, sliding window 4")),
        ("decode_bloom_alibi", lambda s: bloom_attention_case(s, 8, 32, 4, mode="decode", prompt_length=3,
                                                              what="ALiBi")),
        ("mla_q_lora_yarn_interleave_expanded", lambda s: mla_case(
            s, 9, dict(MLA_SMALL, q_lora_rank=16, rope_scaling=MLA_YARN, max_position_embeddings=64), path="expanded",
            what="q_lora_rank 16, YaRN (mscale, mscale_all_dim), interleaved RoPE, expanded path")),
        ("mla_q_proj_bias_half_rope_absorbed_position_ids", lambda s: mla_case(
            s, 8, dict(MLA_SMALL, q_lora_rank=None, attention_bias=True, rope_interleave=False), path="absorbed",
            position_ids=torch.arange(3, 11)[None, :],
            what="q_proj (q_lora_rank null), biases, rotate_half RoPE, absorbed path, position_ids 3..10")),
        ("mla_decode_q_lora_yarn", lambda s: mla_case(
            s, 9, dict(MLA_SMALL, q_lora_rank=16, attention_bias=True, rope_scaling=MLA_YARN,
                       max_position_embeddings=64), mode="decode", prompt_length=4,
            what="q_lora_rank 16, biases (q_a_proj too), YaRN, prompt of 4 then 5 single tokens (LatentCache)")),
        ("mla_decode_q_proj_f16_cache", lambda s: mla_case(
            s, 8, dict(MLA_SMALL, q_lora_rank=None, attention_bias=True), mode="decode", cache_dtype="float16",
            tolerance=2e-3, what="q_proj, biases, every token alone, float16 LatentCache")),
        ("bit_linear_bitlinear_bias", lambda s: bit_linear_case(
            s, 5, 40, 24, bias=True, what="BitLinear: packed weights, divisor weight_scale, bias")),
        ("bit_linear_autobitlinear_offline_rms_norm", lambda s: bit_linear_case(
            s, 4, 48, 16, linear_class="autobitlinear", rms_norm=True, ternary_format="tq1",
            what="AutoBitLinear offline: packed weights, multiplier weight_scale; use_rms_norm; tq1 storage")),
        ("bit_linear_autobitlinear_online", lambda s: bit_linear_case(
            s, 4, 33, 20, linear_class="autobitlinear", mode="online", bias=True,
            what="AutoBitLinear online: float weights quantized on load, bias")),
        ("bitnet_layer_bitlinear", lambda s: bitnet_layer_case(
            s, 7, what="GQA 4/2, relu2, BitLinear projections (packed)")),
        ("bitnet_layer_autobitlinear_online_position_ids", lambda s: bitnet_layer_case(
            s, 6, linear_class="autobitlinear", quant_mode="online", position_ids=torch.arange(2, 8)[None, :],
            what="AutoBitLinear online projections, position_ids 2..7")),
        ("bitnet_layer_decode", lambda s: bitnet_layer_case(
            s, 8, mode="decode", prompt_length=3, what="BitLinear projections, prompt of 3 then 5 single tokens")),
        ("retention_parallel", lambda s: retention_case(
            s, 11, "retention", 16, 32, 2, "parallel", what="2 heads, dk 8, dv 16 (value = 2 embed)")),
        ("retention_recurrent_eps_qk_gain", lambda s: retention_case(
            s, 10, "retention", 16, 16, 2, "recurrent", eps=1e-3, qk_gain=16.0,
            what="layernorm_eps 1e-3, q/k weights x16 (abs-sum normalisation acts)")),
        ("retention_chunkwise_h4", lambda s: retention_case(
            s, 13, "retention", 32, 24, 4, "chunkwise", chunk=5,
            what="4 heads, dk 8, dv 6, chunks of 5 (the last one shorter)")),
        ("retnet_layer_gelu_parallel", lambda s: retention_case(
            s, 9, "layer", 16, 32, 2, "parallel", ffn=32, activation_fn="gelu", what="gelu FFN")),
        ("retnet_layer_swish_recurrent", lambda s: retention_case(
            s, 8, "layer", 16, 16, 2, "recurrent", eps=1e-5, ffn=24, activation_fn="swish",
            what="swish FFN, layernorm_eps 1e-5")),
        ("retnet_layer_chunkwise", lambda s: retention_case(
            s, 10, "layer", 16, 32, 2, "chunkwise", chunk=4, ffn=32, activation_fn="gelu",
            what="gelu FFN, chunks of 4 (T 10)")),
        ("gated_retention_chunkwise", lambda s: gated_retention_case(
            s, 11, 32, 2, "chunkwise", chunk=4, gt_gain=4.0,
            what="2 heads, d 16, chunks of 4 (the last one shorter), gt_proj x4 (decays spread)")),
        ("gated_retention_recurrent_h4", lambda s: gated_retention_case(
            s, 9, 32, 4, "recurrent", norm_eps=1e-3, rope_theta=500.0, gt_gain=4.0,
            what="4 heads, d 8, token by token, norm_eps 1e-3, rope_theta 500")),
        ("yoco_prefill_gqa", lambda s: yoco_case(
            s, 10, 16, 4, 16, 2, 4, 2, "prefill", block=4, gt_gain=4.0,
            what="2 self + 2 cross layers, cross-attention GQA 4/2 (head_dim 4), self-decoder chunks of 4")),
        ("yoco_decode_prompt", lambda s: yoco_case(
            s, 9, 16, 2, 40, 2, 2, 1, "decode", block=256, prompt_length=4, gt_gain=4.0,
            what="1 self + 1 cross layer, MQA 2/1 (head_dim 8), prompt of 4 then 5 single tokens")),
        ("yoco_sliding_window_prefill", lambda s: yoco_case(
            s, 11, 16, 4, 24, 2, 4, 2, "prefill", sliding_window=3,
            what="2 sliding-window (3) self + 2 cross layers, self heads 2 (head_dim 8), GQA 4/2")),
        ("yoco_sliding_window_decode", lambda s: yoco_case(
            s, 10, 16, 2, 24, 4, 2, 1, "decode", prompt_length=5, sliding_window=3,
            what="1 sliding-window (3) self + 1 cross layer, self heads 4 (head_dim 4), prompt of 5 (longer than "
                 "the window) then 5 single tokens")),
    ] + sparse_cases() + kan_cases()


# ------------------------------------------------------------------------------------------------
# README
# ------------------------------------------------------------------------------------------------

README_HEAD = """# Golden conformance cases (eigenformer-run)

Written by `tools/make_golden.py` from the reference implementations themselves (CPU, float32, eval mode,
`attn_implementation="eager"`); read by `tests/test_conformance.cpp`, which runs every case through the
library in-process and through the `eigenformer-run` binary. The tests never need Python.

Generated with: {versions}, {ts}, safetensors {st}, numpy {np}, Python {py}.

## Regenerate

```sh
.venv/bin/python tools/make_golden.py            # writes the files and this README
.venv/bin/python tools/make_golden.py --check    # compares byte for byte, exit 1 on a difference
```

No network: every config is built from keyword arguments. Re-running gives identical bytes. Another CPU
or torch build may change the last bits of the expected outputs; the tests compare within a tolerance.

## Format

The case format is docs/conformance.md's: `__metadata__` holds `layer`, `mode` (where the layer has
several), one string per config key (strings as they are, everything else JSON text), and `case`,
`source` (the reference module and versions), `generator`. Tensors: the module's own `state_dict()` names
without a prefix, and `input.*`. The module's output is stored in the same file as `expected.<output>`
(e.g. `expected.hidden_states`, F32), which eigenformer-run ignores, with two optional companions:

- `expected.hidden_states.row_mask` (I64 [T]): 1 = compare this row. 0 marks a query that sees no key
  at all (causal attention over left padding, without sinks): HF's eager path returns an arbitrary
  average there, eigenformer returns 0 before `o_proj`.
- metadata `expected.tolerance`: a case-specific tolerance replacing the layer's (the float16 KV cache
  case: its keys and values are rounded to float16 by design).

Tolerance: max |got - want| <= tol * (1 + max |want|) over the compared rows; each layer's tol is in
`eigenformer-run --list` / docs/conformance.md.

BitNet cases with `quantization_mode` offline store transformers' packed ternary weights (U8
`[ceil(out / 4), in]`, `pack_weights`) and `weight_scale` (the divisor 1 / mean|W| for `BitLinear`, the
multiplier mean|W| for `AutoBitLinear`); online cases store the float weights AutoBitLinear quantizes
at every call. Retention cases hold the output of torchscale's form named by `mode`.

**YOCO cases (`gated_retention_*`, `yoco_*`) are not from the original package.** unilm YOCO needs CUDA
(Triton kernels, flash_attn, fairseq's model-parallel layers) and is not pip-installable, so their
expected outputs come from a PyTorch transcription of its source, `tools/yoco_reference.py`, written
from microsoft/unilm at commit 7402b0eefe7eee5863c7b2c164a7b13cdc6425e6,
`YOCO/yoco/models/decoder/{{gate_retention.py, kernel/gate_recurrent.py, yoco.py, cross_attention.py,
feedforward_network.py, rms_norm.py, kernel/swiglu.py, kernel/rotary.py}}` (its docstring lists the
substitutions: nn.Linear for the parallel linears, the rotary / swiglu formulas for their kernels,
`naive_kv_recurrent` for the Triton recurrence, an eager flash_attn_func, the 256-token chunk as a
parameter). Each case's `source` metadata says so. The chunkwise and recurrent forms are checked against
the file's own `parallel_gate_retention`, and YOCO's decode against its prefill, before writing.

Reference names: cases use the module's own state_dict names. Bloom's fused `query_key_value`
(interleaved per head) and `dense` are read as they are (`checkpoint_names: bloom`); the runner splits
the fused weight into q/k/v. T5's `wi_0`/`wi_1`/`wo` and CLIP's `fc1`/`fc2` likewise
(`checkpoint_names: t5` / `fc`); their config uses the Llama key names (`hidden_size` = T5 `d_model`,
`intermediate_size` = `d_ff`, `hidden_act` = `dense_act_fn`). Attention configs carry the layer's own
values: a Gemma 2 or gpt-oss full-attention layer has no `sliding_window`.

## Cases

| case | layer | mode | reference | what | bytes |
|---|---|---|---|---|---|
"""


def readme(rows, total):
    import platform
    text = README_HEAD.format(versions=VERSIONS, ts=torchscale_version().split(",")[0], st=safetensors.__version__,
                              np=np.__version__, py=platform.python_version())
    for r in rows:
        text += "| `{}` | {} | {} | `{}` | {} | {} |\n".format(*r)
    text += f"\nTotal: {total} bytes.\n"
    return text


# ------------------------------------------------------------------------------------------------
# Round trip through a runner binary
# ------------------------------------------------------------------------------------------------


def runner_tolerances(runner):
    text = subprocess.run([runner, "--list"], check=True, capture_output=True, text=True).stdout
    tol, layer = {}, None
    for line in text.splitlines():
        m = re.match(r"^### `([^`]+)`", line)
        if m:
            layer = m.group(1)
        m = re.match(r"^Tolerance .*?: ([0-9.e+-]+)(.*)\.$", line)
        if m and layer:
            tol[(layer, None)] = float(m.group(1))
            for mode, v in re.findall(r"; mode (\w+): ([0-9.e+-]+)", m.group(2)):
                tol[(layer, mode)] = float(v)
    return tol


def compare(got, want, row_mask, tol):
    got, want = got.double(), want.double()
    if row_mask is not None:
        keep = row_mask.bool()
        got, want = got[keep], want[keep]
    err = (got - want).abs().max().item() if want.numel() else 0.0
    bound = tol * (1.0 + (want.abs().max().item() if want.numel() else 0.0))
    return err, bound


def roundtrip(runner):
    tol = runner_tolerances(runner)
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        for name, make in cases():
            case = make(seed_of(name) + ROUNDTRIP_SEED_OFFSET)
            tensors, meta = case.file(name)
            path, out = os.path.join(tmp, name + ".safetensors"), os.path.join(tmp, name + ".out.safetensors")
            with open(path, "wb") as f:
                f.write(safetensors_bytes(tensors, meta))
            r = subprocess.run([runner, path, out], capture_output=True, text=True)
            if r.returncode != 0:
                print(f"FAIL {name}: exit {r.returncode}: {r.stderr.strip()}")
                failures += 1
                continue
            t = case.tolerance if case.tolerance is not None else tol.get((case.layer, case.mode),
                                                                           tol[(case.layer, None)])
            with safe_open(out, framework="pt") as f:
                for oname, want in case.expected.items():
                    got = f.get_tensor("output." + oname)
                    err, bound = compare(got, want, case.row_mask, t)
                    ok = got.shape == want.shape and err <= bound
                    failures += not ok
                    print(f"{'ok  ' if ok else 'FAIL'} {name}: output.{oname} max |diff| {err:.3g} "
                          f"(bound {bound:.3g})")
        # A malformed case must be rejected with its own message and exit code 4.
        case = cases()[0][1](1)
        tensors, meta = case.file("missing_weight")
        tensors = [(n, t) for n, t in tensors if n != "weight"]
        path = os.path.join(tmp, "missing_weight.safetensors")
        with open(path, "wb") as f:
            f.write(safetensors_bytes(tensors, meta))
        r = subprocess.run([runner, path, os.path.join(tmp, "x.safetensors")], capture_output=True, text=True)
        ok = r.returncode == 4 and "missing weight" in r.stderr
        failures += not ok
        print(f"{'ok  ' if ok else 'FAIL'} malformed case rejected: exit {r.returncode}: {r.stderr.strip()}")
    print(f"round trip: {failures} failure(s) ({VERSIONS}, {torchscale_version().split(',')[0]})")
    return 1 if failures else 0


# ------------------------------------------------------------------------------------------------


SEEDS = {}


def seed_of(name):
    """A fixed seed per case (its index in the list + 1000)."""
    if not SEEDS:
        for i, (n, _) in enumerate(cases()):
            SEEDS[n] = 1000 + i
    return SEEDS[name]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=DEFAULT_OUT)
    ap.add_argument("--check", action="store_true", help="compare with the files on disk instead of writing")
    ap.add_argument("--roundtrip", metavar="RUNNER", help="run fresh cases through this eigenformer-run binary")
    args = ap.parse_args()
    assert sys.byteorder == "little"
    if args.roundtrip:
        return roundtrip(args.roundtrip)
    os.makedirs(args.out, exist_ok=True)
    total, bad, rows = 0, 0, []
    for name, make in cases():
        case = make(seed_of(name))
        tensors, meta = case.file(name)
        data = safetensors_bytes(tensors, meta)
        path = os.path.join(args.out, name + ".safetensors")
        total += len(data)
        rows.append((name, case.layer, case.mode or "forward", case.source.split(" (")[0], case.what, len(data)))
        if args.check:
            with open(path, "rb") as f:
                same = f.read() == data
            bad += not same
            print(f"{'same' if same else 'DIFFERENT'}  {path}")
            continue
        with open(path, "wb") as f:
            f.write(data)
        verify_file(path, tensors, meta)
        print(f"{len(data):7d} bytes  {path}")
    text = readme(rows, total)
    rpath = os.path.join(args.out, "README.md")
    if args.check:
        with open(rpath, encoding="utf-8") as f:
            same = f.read() == text
        bad += not same
        print(f"{'same' if same else 'DIFFERENT'}  {rpath}")
    else:
        with open(rpath, "w", encoding="utf-8") as f:
            f.write(text)
    print(f"{total} bytes in total ({VERSIONS}, safetensors {safetensors.__version__}, numpy {np.__version__})")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Golden attention fixtures from Hugging Face transformers' own attention modules.

Writes tests/data/golden/attention/<case>.safetensors (see tests/data/golden/attention/README.md for
the tensor naming and the case list). Usage, from the repository root:

    .venv/bin/python tools/make_golden_attention.py [--out DIR] [--check]

--check regenerates into memory and compares with the files on disk byte for byte (exit 1 on any
difference) instead of writing.

How each case is made (CPU, float32, attn_implementation="eager", no network):
  1. build the config from keyword arguments (never from_pretrained) and the attention module
     (LlamaAttention, MistralAttention, Gemma2Attention, GptOssAttention, BloomAttention,
     BertSelfAttention) for one layer index;
  2. re-initialise its parameters from a seeded torch.Generator with a scale that makes attention
     far from uniform (scores of standard deviation ~2), so a wrong mask or scale shows;
  3. build the mask exactly as the model builds it (masking_utils.create_causal_mask /
     create_sliding_window_causal_mask, Bloom's _prepare_4d_causal_attention_mask_with_cache_position
     and build_alibi_tensor, BERT's get_extended_attention_mask) and ALSO run the whole model
     (XModel with 2 layers) on the same input with a forward pre-hook on the attention module to
     capture the mask (and RoPE cos/sin, ALiBi) the model really passes in: they must be equal;
  4. run the module's forward (the output) and, step by step, the model file's own functions
     (projections, apply_rotary_pos_emb, eager_attention_forward, Bloom's _reshape/_merge_heads):
     the step-wise result must equal the forward output bit for bit, and attn_output must equal
     the input the module's o_proj/dense really received (captured with a pre-hook).
The file is written by a small writer below (not safetensors.torch.save_file, whose Rust side
serialises __metadata__ from a HashMap in a random order per process): metadata keys sorted,
tensors in a fixed order, header padded with spaces to a multiple of 8. Every file is re-read with
safetensors.safe_open and compared with the tensors written. Re-running gives the same bytes.
"""

import argparse
import math
import os
import sys

import numpy as np
import safetensors
import torch
import transformers
from transformers import PretrainedConfig
from transformers import masking_utils
from transformers.modeling_attn_mask_utils import AttentionMaskConverter
from transformers.models.bert import modeling_bert
from transformers.models.bloom import modeling_bloom
from transformers.models.gemma2 import modeling_gemma2
from transformers.models.gpt_oss import modeling_gpt_oss
from transformers.models.llama import modeling_llama
from transformers.models.mistral import modeling_mistral

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from golden_common import meta_value, write_or_check  # noqa: E402  (the shared deterministic writer)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT = os.path.join(REPO, "tests", "data", "golden", "attention")
VERSIONS = f"transformers {transformers.__version__}, torch {torch.__version__}"

torch.set_num_threads(1)  # one fixed reduction order
torch.use_deterministic_algorithms(True)
transformers.logging.set_verbosity_error()


# ------------------------------------------------------------------------------------------------
# Helpers
# ------------------------------------------------------------------------------------------------


def config_metadata(config):
    """Every model-specific config field (those PretrainedConfig itself does not define) plus model_type."""
    base = set(PretrainedConfig().to_dict())
    d = config.to_dict()
    out = {k: meta_value(v) for k, v in d.items() if k not in base}
    out["model_type"] = config.model_type
    out["attn_implementation"] = config._attn_implementation
    return out


def init_params(module, gen):
    """Weights ~ N(0, 2 / fan_in) (scores of std ~2 for unit-variance inputs), biases ~ N(0, 0.25),
    attention sinks ~ N(0, 1). Parameters are visited in name order."""
    with torch.no_grad():
        for name, p in sorted(module.named_parameters()):
            if name.endswith("weight") and p.dim() == 2:
                std = math.sqrt(2.0 / p.shape[1])
            elif name.endswith("bias"):
                std = 0.5
            elif name == "sinks":
                std = 1.0
            else:
                raise RuntimeError(f"no init rule for parameter {name}")
            p.copy_(torch.randn(p.shape, generator=gen) * std)


def rows(t):
    """[1, heads, T, d] -> [T, heads * d] (head-major columns: transpose(1, 2).reshape)."""
    b, h, s, d = t.shape
    assert b == 1
    return t.transpose(1, 2).reshape(s, h * d).contiguous()


class Capture:
    """Forward pre-hook that records the args/kwargs a module receives."""

    def __init__(self, module):
        self.args = self.kwargs = None
        self.handle = module.register_forward_pre_hook(self, with_kwargs=True)

    def __call__(self, module, args, kwargs):
        self.args, self.kwargs = args, dict(kwargs)

    def remove(self):
        self.handle.remove()


def padding_mask(T, left=0, right=0):
    m = torch.ones(1, T, dtype=torch.int64)
    if left:
        m[0, :left] = 0
    if right:
        m[0, T - right :] = 0
    return m


def generate_position_ids(attention_mask):
    """Position ids as GenerationMixin builds them for a padded batch: cumsum - 1, padding -> 1."""
    p = attention_mask.long().cumsum(-1) - 1
    p.masked_fill_(attention_mask == 0, 1)
    return p


def equal_or_die(a, b, what):
    if not torch.equal(a, b):
        raise AssertionError(f"{what}: step-wise result differs from the module (max |diff| "
                             f"{(a.float() - b.float()).abs().max().item():.3g})")


def check_sliding_window_conventions():
    """The sliding-window off-by-one, checked on the installed transformers:
    masking_utils (used by Mistral/Gemma2/gpt-oss in 4.57) keeps key j for query i iff
    j <= i and i - j < W (W keys including the query itself); the legacy AttentionMaskConverter
    (modeling_attn_mask_utils, still in 4.57, the convention of transformers <= 4.52 Mistral and of
    mistral-src one_file_ref's torch.triu(mask, diagonal=-W)) keeps i - j <= W (W + 1 keys)."""
    T, W = 9, 3
    cache_position = torch.arange(T)
    new = masking_utils.sdpa_mask(batch_size=1, cache_position=cache_position, kv_length=T,
                                  mask_function=masking_utils.sliding_window_causal_mask_function(W),
                                  allow_is_causal_skip=False)[0, 0]
    i = torch.arange(T)[:, None]
    j = torch.arange(T)[None, :]
    assert torch.equal(new, (j <= i) & (i - j < W))
    legacy = AttentionMaskConverter._make_causal_mask((1, T), torch.float32, torch.device("cpu"),
                                                      sliding_window=W)[0, 0] == 0
    assert torch.equal(legacy, (j <= i) & (i - j <= W))
    new_w1 = masking_utils.sdpa_mask(batch_size=1, cache_position=cache_position, kv_length=T,
                                     mask_function=masking_utils.sliding_window_causal_mask_function(W + 1),
                                     allow_is_causal_skip=False)[0, 0]
    assert torch.equal(legacy, new_w1)


# ------------------------------------------------------------------------------------------------
# RoPE-family decoders: Llama, Mistral, Gemma 2, gpt-oss
# ------------------------------------------------------------------------------------------------

ROPE_FAMILY = {
    "llama": (modeling_llama, "LlamaConfig", "LlamaAttention", "LlamaRotaryEmbedding", "LlamaModel"),
    "mistral": (modeling_mistral, "MistralConfig", "MistralAttention", "MistralRotaryEmbedding", "MistralModel"),
    "gemma2": (modeling_gemma2, "Gemma2Config", "Gemma2Attention", "Gemma2RotaryEmbedding", "Gemma2Model"),
    "gpt_oss": (modeling_gpt_oss, "GptOssConfig", "GptOssAttention", "GptOssRotaryEmbedding", "GptOssModel"),
}


def rope_case(name, family, seed, T, config_kwargs, layer_idx=0, attention_mask=None, position_ids=None):
    mod, config_cls, attn_cls, rotary_cls, model_cls = ROPE_FAMILY[family]
    config = getattr(transformers, config_cls)(
        vocab_size=16, intermediate_size=32, num_hidden_layers=2, attn_implementation="eager", **config_kwargs)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)

    attn = getattr(mod, attn_cls)(config, layer_idx=layer_idx).eval()
    init_params(attn, gen)
    rotary = getattr(mod, rotary_cls)(config)
    H = config.hidden_size
    x = torch.randn(1, T, H, generator=gen)
    if position_ids is None:
        position_ids = torch.arange(T)[None, :]
    cache_position = torch.arange(T)
    sliding = getattr(attn, "sliding_window", None) is not None or (
        family == "mistral" and config.sliding_window is not None)
    layer_type = "sliding_attention" if sliding else "full_attention"

    with torch.no_grad():
        # The mask as the model builds it (masking_utils), for this layer's type.
        mask_fn = masking_utils.create_sliding_window_causal_mask if sliding else masking_utils.create_causal_mask
        mask = mask_fn(config=config, input_embeds=x, attention_mask=attention_mask, cache_position=cache_position,
                       past_key_values=None, position_ids=position_ids)
        cos, sin = rotary(x, position_ids)

        # Cross-check: the whole model passes this layer's attention the same mask and cos/sin.
        model = getattr(mod, model_cls)(config).eval()
        cap = Capture(model.layers[layer_idx].self_attn)
        model(inputs_embeds=x, attention_mask=attention_mask, position_ids=position_ids, use_cache=False)
        cap.remove()
        equal_or_die(cap.kwargs["attention_mask"], mask, f"{name}: model mask")
        equal_or_die(cap.kwargs["position_embeddings"][0], cos, f"{name}: model cos")
        equal_or_die(cap.kwargs["position_embeddings"][1], sin, f"{name}: model sin")

        # The module's own forward, capturing what o_proj receives.
        cap_o = Capture(attn.o_proj)
        out_module, w_module = attn(x, (cos, sin), mask)
        cap_o.remove()

        # Step by step with the model file's functions.
        hd = attn.head_dim
        hidden_shape = (1, T, -1, hd)
        q0 = attn.q_proj(x).view(hidden_shape).transpose(1, 2)
        k0 = attn.k_proj(x).view(hidden_shape).transpose(1, 2)
        v = attn.v_proj(x).view(hidden_shape).transpose(1, 2)
        q, k = mod.apply_rotary_pos_emb(q0, k0, cos, sin)
        extra = {}
        if family == "gemma2":
            extra = {"softcap": attn.attn_logit_softcapping, "sliding_window": attn.sliding_window}
        elif family == "gpt_oss":
            extra = {"sliding_window": attn.sliding_window, "s_aux": attn.sinks}
        elif family == "mistral":
            extra = {"sliding_window": config.sliding_window}
        attn_out, attn_w = mod.eager_attention_forward(attn, q, k, v, mask, scaling=attn.scaling, dropout=0.0,
                                                       **extra)
        attn_out = attn_out.reshape(1, T, -1).contiguous()
        y = attn.o_proj(attn_out)
        equal_or_die(y, out_module, f"{name}: output")
        equal_or_die(attn_out, cap_o.args[0], f"{name}: attn_output")
        equal_or_die(attn_w, w_module, f"{name}: attn_weights")

    n_heads, n_kv = config.num_attention_heads, config.num_key_value_heads
    softcap = getattr(attn, "attn_logit_softcapping", None)
    window = attn.sliding_window if family in ("gemma2", "gpt_oss") else (config.sliding_window if sliding else None)
    derived = {
        "num_heads": n_heads, "num_kv_heads": n_kv, "head_dim": hd, "scaling": float(attn.scaling),
        "causal": True, "sliding_window": int(window or 0), "softcap": float(softcap or 0.0),
        "alibi": False, "sinks": family == "gpt_oss", "layer_idx": layer_idx, "layer_type": layer_type,
        "rope_attention_scaling": float(rotary.attention_scaling), "rope_type": rotary.rope_type,
        "padding": attention_mask is not None,
    }
    tensors = [(k_, v_.detach()) for k_, v_ in attn.state_dict().items()]
    tensors.append(("input.hidden_states", x[0]))
    tensors.append(("input.position_ids", position_ids[0].to(torch.int64)))
    if attention_mask is not None:
        tensors.append(("input.attention_mask", attention_mask[0].to(torch.int64)))
    tensors += [
        ("intermediate.query_states_pre_rope", rows(q0)),
        ("intermediate.key_states_pre_rope", rows(k0)),
        ("intermediate.query_states", rows(q)),
        ("intermediate.key_states", rows(k)),
        ("intermediate.value_states", rows(v)),
        ("intermediate.attn_weights", attn_w[0].contiguous()),
        ("intermediate.attn_output", attn_out[0]),
        ("output.hidden_states", out_module[0]),
    ]
    source = f"transformers.models.{family}.{mod.__name__.split('.')[-1]}.{attn_cls} ({VERSIONS})"
    return tensors, source, config, derived


# ------------------------------------------------------------------------------------------------
# Bloom (ALiBi, fused query_key_value)
# ------------------------------------------------------------------------------------------------


def bloom_case(name, seed, T, hidden, n_head, left_pad=0):
    config = transformers.BloomConfig(vocab_size=16, hidden_size=hidden, n_head=n_head, n_layer=2,
                                      attn_implementation="eager")
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    attn = modeling_bloom.BloomAttention(config, layer_idx=0).eval()
    init_params(attn, gen)
    x = torch.randn(1, T, hidden, generator=gen)
    residual = torch.zeros(1, T, hidden)  # the block passes its residual in; zero -> output = dense(context)
    am = padding_mask(T, left=left_pad)
    cache_position = torch.arange(T)
    d = hidden // n_head

    with torch.no_grad():
        alibi = modeling_bloom.build_alibi_tensor(am, n_head, torch.float32)  # [n_head, 1, T]
        mask = modeling_bloom.BloomModel._prepare_4d_causal_attention_mask_with_cache_position(
            am, sequence_length=T, target_length=T, dtype=torch.float32, cache_position=cache_position,
            batch_size=1)

        model = modeling_bloom.BloomModel(config).eval()
        cap = Capture(model.h[0].self_attention)
        model(inputs_embeds=x, attention_mask=am, use_cache=False)
        cap.remove()
        equal_or_die(cap.kwargs["attention_mask"], mask, f"{name}: model mask")
        equal_or_die(cap.kwargs["alibi"], alibi, f"{name}: model alibi")

        cap_o = Capture(attn.dense)
        out_module, probs_module = attn(x, residual, alibi, mask)
        cap_o.remove()

        # Step by step (BloomAttention.forward has no separate attention function: same ops here).
        fused = attn.query_key_value(x)
        q, k, v = attn._reshape(fused)  # [1, n_head, T, d] each
        qb = q.reshape(n_head, T, d)
        kb = k.reshape(n_head, T, d).transpose(-1, -2)
        vb = v.reshape(n_head, T, d)
        scores = alibi.baddbmm(batch1=qb, batch2=kb, beta=attn.beta, alpha=attn.inv_norm_factor)
        w = scores.view(1, n_head, T, T) + mask
        probs = torch.nn.functional.softmax(w, dim=-1, dtype=torch.float32)
        ctx = attn._merge_heads(torch.bmm(probs.view(n_head, T, T), vb))
        y = attn.dense(ctx) + residual
        equal_or_die(y, out_module, f"{name}: output")
        equal_or_die(ctx, cap_o.args[0], f"{name}: attn_output")
        equal_or_die(probs, probs_module, f"{name}: attn_weights")

        # The fused weight split into Llama-layout q/k/v projections: fused row h*3d + t*d + i is
        # row h*d + i of projection t (t = 0 query, 1 key, 2 value).
        W = attn.query_key_value.weight.view(n_head, 3, d, hidden)
        B = attn.query_key_value.bias.view(n_head, 3, d)
        split_w = [W[:, t].reshape(n_head * d, hidden).contiguous() for t in range(3)]
        split_b = [B[:, t].reshape(n_head * d).contiguous() for t in range(3)]
        for t, ref in enumerate((q, k, v)):
            equal_or_die(torch.nn.functional.linear(x, split_w[t], split_b[t]).view(1, T, n_head, d)
                         .transpose(1, 2), ref, f"{name}: split projection {t}")

        # The slopes (build_alibi_tensor multiplies them by 0, 1, 2, ... for unpadded rows).
        slopes = modeling_bloom.build_alibi_tensor(torch.ones(1, 2, dtype=torch.int64), n_head,
                                                   torch.float32)[:, 0, 1].contiguous()

    derived = {
        "num_heads": n_head, "num_kv_heads": n_head, "head_dim": d, "scaling": float(attn.inv_norm_factor),
        "causal": True, "sliding_window": 0, "softcap": 0.0, "alibi": True, "sinks": False,
        "layer_idx": 0, "layer_type": "full_attention", "padding": bool(left_pad),
    }
    tensors = [(k_, v_.detach()) for k_, v_ in attn.state_dict().items()]
    tensors.append(("input.hidden_states", x[0]))
    # Bloom has no position_ids: its ALiBi positions come from the mask, (cumsum - 1) * mask.
    tensors.append(("input.position_ids", ((am.cumsum(-1) - 1) * am)[0]))
    if left_pad:
        tensors.append(("input.attention_mask", am[0]))
    tensors += [
        ("intermediate.q_proj.weight", split_w[0]), ("intermediate.q_proj.bias", split_b[0]),
        ("intermediate.k_proj.weight", split_w[1]), ("intermediate.k_proj.bias", split_b[1]),
        ("intermediate.v_proj.weight", split_w[2]), ("intermediate.v_proj.bias", split_b[2]),
        ("intermediate.alibi_slopes", slopes),
        ("intermediate.query_states", rows(q)),
        ("intermediate.key_states", rows(k)),
        ("intermediate.value_states", rows(v)),
        ("intermediate.attn_weights", probs[0].contiguous()),
        ("intermediate.attn_output", ctx[0]),
        ("output.hidden_states", out_module[0]),
    ]
    source = f"transformers.models.bloom.modeling_bloom.BloomAttention ({VERSIONS})"
    return tensors, source, config, derived


# ------------------------------------------------------------------------------------------------
# BERT self-attention (bidirectional, key padding)
# ------------------------------------------------------------------------------------------------


def bert_case(name, seed, T, hidden, n_head, right_pad):
    config = transformers.BertConfig(vocab_size=16, hidden_size=hidden, num_attention_heads=n_head,
                                     num_hidden_layers=2, intermediate_size=32, attn_implementation="eager")
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    attn = modeling_bert.BertSelfAttention(config, layer_idx=0).eval()
    init_params(attn, gen)
    x = torch.randn(1, T, hidden, generator=gen)
    am = padding_mask(T, right=right_pad)
    d = hidden // n_head

    with torch.no_grad():
        model = modeling_bert.BertModel(config, add_pooling_layer=False).eval()
        mask = model.get_extended_attention_mask(am, (1, T))
        cap = Capture(model.encoder.layer[0].attention.self)
        model(inputs_embeds=x, attention_mask=am)
        cap.remove()
        equal_or_die(cap.kwargs["attention_mask"], mask, f"{name}: model mask")

        ctx_module, probs_module = attn(x, attention_mask=mask)

        shape = (1, T, n_head, d)
        q = attn.query(x).view(shape).transpose(1, 2)
        k = attn.key(x).view(shape).transpose(1, 2)
        v = attn.value(x).view(shape).transpose(1, 2)
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(d) + mask
        probs = torch.nn.functional.softmax(scores, dim=-1)
        ctx = torch.matmul(probs, v).permute(0, 2, 1, 3).reshape(1, T, hidden)
        equal_or_die(ctx, ctx_module, f"{name}: output")
        equal_or_die(probs, probs_module, f"{name}: attn_weights")

    derived = {
        "num_heads": n_head, "num_kv_heads": n_head, "head_dim": d, "scaling": 1.0 / math.sqrt(d),
        "causal": False, "sliding_window": 0, "softcap": 0.0, "alibi": False, "sinks": False,
        "layer_idx": 0, "layer_type": "bidirectional", "padding": True,
    }
    tensors = [(k_, v_.detach()) for k_, v_ in attn.state_dict().items()]
    tensors.append(("input.hidden_states", x[0]))
    tensors.append(("input.position_ids", torch.arange(T, dtype=torch.int64)))
    tensors.append(("input.attention_mask", am[0]))
    tensors += [
        ("intermediate.query_states", rows(q)),
        ("intermediate.key_states", rows(k)),
        ("intermediate.value_states", rows(v)),
        ("intermediate.attn_weights", probs[0].contiguous()),
        ("intermediate.attn_output", ctx[0]),
        ("output.hidden_states", ctx_module[0]),
    ]
    source = f"transformers.models.bert.modeling_bert.BertSelfAttention ({VERSIONS})"
    return tensors, source, config, derived


# ------------------------------------------------------------------------------------------------
# Cases
# ------------------------------------------------------------------------------------------------


def cases():
    pad_llama = padding_mask(11, left=3)
    pad_oss = padding_mask(12, left=2)
    gemma2 = dict(hidden_size=32, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                  query_pre_attn_scalar=24, attn_logit_softcapping=4.0, final_logit_softcapping=30.0,
                  sliding_window=6)
    gpt_oss = dict(hidden_size=32, num_attention_heads=4, num_key_value_heads=2, head_dim=16, sliding_window=4,
                   num_local_experts=4, num_experts_per_tok=2)
    return [
        ("llama_mha", lambda: rope_case("llama_mha", "llama", 101, 7, dict(
            hidden_size=32, num_attention_heads=4, num_key_value_heads=4))),
        ("llama_gqa_llama3_rope", lambda: rope_case("llama_gqa_llama3_rope", "llama", 102, 13, dict(
            hidden_size=64, num_attention_heads=4, num_key_value_heads=2, rope_theta=500000.0,
            rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                          "original_max_position_embeddings": 32}))),
        ("llama_mqa_linear_rope_offset", lambda: rope_case("llama_mqa_linear_rope_offset", "llama", 103, 9, dict(
            hidden_size=32, num_attention_heads=4, num_key_value_heads=1,
            rope_scaling={"rope_type": "linear", "factor": 2.0}),
            position_ids=torch.arange(5, 14)[None, :])),
        ("llama_bias_head_dim", lambda: rope_case("llama_bias_head_dim", "llama", 104, 10, dict(
            hidden_size=48, num_attention_heads=4, num_key_value_heads=2, head_dim=16, attention_bias=True))),
        ("llama_left_padding", lambda: rope_case("llama_left_padding", "llama", 105, 11, dict(
            hidden_size=32, num_attention_heads=4, num_key_value_heads=2),
            attention_mask=pad_llama, position_ids=generate_position_ids(pad_llama))),
        ("mistral_sliding_window", lambda: rope_case("mistral_sliding_window", "mistral", 106, 17, dict(
            hidden_size=32, num_attention_heads=4, num_key_value_heads=2, head_dim=8, sliding_window=5,
            rope_theta=1000000.0))),
        ("gemma2_sliding", lambda: rope_case("gemma2_sliding", "gemma2", 107, 15, gemma2, layer_idx=0)),
        ("gemma2_global", lambda: rope_case("gemma2_global", "gemma2", 108, 15, gemma2, layer_idx=1)),
        ("bloom_alibi", lambda: bloom_case("bloom_alibi", 109, 12, 32, 4)),
        ("bloom_alibi_3heads_left_padding", lambda: bloom_case("bloom_alibi_3heads_left_padding", 110, 10, 48, 3,
                                                               left_pad=2)),
        ("gpt_oss_sliding_left_padding", lambda: rope_case("gpt_oss_sliding_left_padding", "gpt_oss", 111, 12,
                                                           gpt_oss, layer_idx=0, attention_mask=pad_oss,
                                                           position_ids=generate_position_ids(pad_oss))),
        ("gpt_oss_full", lambda: rope_case("gpt_oss_full", "gpt_oss", 112, 12, gpt_oss, layer_idx=1)),
        ("bert_bidirectional_right_padding", lambda: bert_case("bert_bidirectional_right_padding", 113, 8, 32, 4,
                                                               right_pad=2)),
    ]


def build(name, make):
    tensors, source, config, derived = make()
    meta = config_metadata(config)
    meta.update({"derived." + k: meta_value(v) for k, v in derived.items()})
    meta["layer"] = "attention"
    meta["case"] = name
    meta["source"] = source
    meta["generator"] = "tools/make_golden_attention.py"
    tensors = [(n, t.to(torch.int64) if t.dtype == torch.int64 else t.to(torch.float32)) for n, t in tensors]
    names = [n for n, _ in tensors]
    assert len(names) == len(set(names)), names
    return tensors, meta


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=DEFAULT_OUT)
    ap.add_argument("--check", action="store_true", help="compare with the files on disk instead of writing")
    args = ap.parse_args()
    assert sys.byteorder == "little"
    check_sliding_window_conventions()
    total, bad = 0, 0
    for name, make in cases():
        tensors, meta = build(name, make)
        n, same = write_or_check(args.out, name, tensors, meta, args.check)
        total += n
        bad += not same
    print(f"{total} bytes in total ({VERSIONS}, safetensors {safetensors.__version__}, numpy {np.__version__})")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

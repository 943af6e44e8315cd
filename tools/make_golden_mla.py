#!/usr/bin/env python3
"""Golden MLA fixtures from Hugging Face transformers' own DeepseekV3Attention.

Writes tests/data/golden/mla/<case>.safetensors (see tests/data/golden/mla/README.md for the tensor
naming and the case list). Usage, from the repository root:

    .venv/bin/python tools/make_golden_mla.py [--out DIR] [--check]

--check regenerates into memory and compares with the files on disk byte for byte (exit 1 on any
difference) instead of writing.

How each case is made (CPU, float32, attn_implementation="eager", no network):
  1. build a small DeepseekV3Config from keyword arguments (never from_pretrained) and the module
     DeepseekV3Attention for layer 0;
  2. re-initialise its parameters from a seeded torch.Generator: weights N(0, 2 / fan_in), biases
     N(0, 0.25), RMSNorm weights 1 + N(0, 0.04), so that logits have a standard deviation of a few
     units (attention far from uniform) and the norm weights matter;
  3. build the causal mask (masking_utils.create_causal_mask) and cos/sin (DeepseekV3RotaryEmbedding)
     and ALSO run the whole model (DeepseekV3Model, 2 layers: one dense, one MoE) on the same input
     with a forward pre-hook on layer 0's attention to capture the mask and cos/sin the model really
     passes in: they must be equal;
  4. run the module's forward (the output) and, step by step, the model file's own functions
     (projections, RMSNorms, apply_rotary_pos_emb[_interleave], eager_attention_forward): the
     step-wise result must equal the forward output bit for bit, and attn_output must equal the input
     o_proj really received (captured with a pre-hook);
  5. check two facts the C++ layer relies on, in float64 from the float32 intermediates:
       - absorption: attention over the latent rows [c | k_rot] with queries [q_nope W_UK | q_rot] and
         outputs (p c) W_UV^T equals the module's output (relative 1e-5);
       - rope_interleave: rotating the rope dims pair-interleaved in place (eigenformer's
         RopeLayout::interleaved) gives HF's rotated dims with y_HF[i] = y[2i], y_HF[d/2 + i] =
         y[2i + 1] (bit for bit).
The file is written by the deterministic writer of tools/make_golden_attention.py (metadata keys
sorted, tensors in a fixed order, header padded to a multiple of 8); every file is re-read with
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
from transformers import masking_utils
from transformers.models.deepseek_v3 import modeling_deepseek_v3 as mod

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_golden_attention import (  # noqa: E402  (the shared deterministic writer and helpers)
    Capture,
    config_metadata,
    equal_or_die,
    rows,
)
from golden_common import meta_value, write_or_check  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT = os.path.join(REPO, "tests", "data", "golden", "mla")
VERSIONS = f"transformers {transformers.__version__}, torch {torch.__version__}"

torch.set_num_threads(1)  # one fixed reduction order
torch.use_deterministic_algorithms(True)
transformers.logging.set_verbosity_error()


def init_params(module, gen):
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


def rotate_every_two_inplace_layout(x, cos_half, sin_half):
    """eigenformer's RopeLayout::interleaved: pairs (x[2i], x[2i+1]) rotated by angle i, in place order.
    cos_half/sin_half: [..., d/2] (HF's cos/sin are [cos_half, cos_half])."""
    a, b = x[..., 0::2], x[..., 1::2]
    y = torch.empty_like(x)
    y[..., 0::2] = a * cos_half - b * sin_half
    y[..., 1::2] = b * cos_half + a * sin_half
    return y


def mla_case(name, seed, T, config_kwargs, position_ids=None):
    config = transformers.DeepseekV3Config(
        vocab_size=16, intermediate_size=32, moe_intermediate_size=16, num_hidden_layers=2, n_shared_experts=1,
        n_routed_experts=4, num_experts_per_tok=2, n_group=1, topk_group=1, first_k_dense_replace=1,
        attn_implementation="eager", **config_kwargs)
    assert config.num_key_value_heads == config.num_attention_heads
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)

    attn = mod.DeepseekV3Attention(config, layer_idx=0).eval()
    init_params(attn, gen)
    rotary = mod.DeepseekV3RotaryEmbedding(config)
    hidden = config.hidden_size
    x = torch.randn(1, T, hidden, generator=gen)
    if position_ids is None:
        position_ids = torch.arange(T)[None, :]
    cache_position = torch.arange(T)
    H, r = config.num_attention_heads, config.kv_lora_rank
    dn, dr, dv, dq = config.qk_nope_head_dim, config.qk_rope_head_dim, config.v_head_dim, config.qk_head_dim

    with torch.no_grad():
        mask = masking_utils.create_causal_mask(config=config, input_embeds=x, attention_mask=None,
                                                cache_position=cache_position, past_key_values=None,
                                                position_ids=position_ids)
        cos, sin = rotary(x, position_ids)

        # Cross-check: the whole model passes layer 0's attention the same mask and cos/sin.
        model = mod.DeepseekV3Model(config).eval()
        cap = Capture(model.layers[0].self_attn)
        model(inputs_embeds=x, position_ids=position_ids, use_cache=False)
        cap.remove()
        equal_or_die(cap.kwargs["attention_mask"], mask, f"{name}: model mask")
        equal_or_die(cap.kwargs["position_embeddings"][0], cos, f"{name}: model cos")
        equal_or_die(cap.kwargs["position_embeddings"][1], sin, f"{name}: model sin")

        # The module's own forward, capturing what o_proj receives.
        cap_o = Capture(attn.o_proj)
        out_module, w_module = attn(x, (cos, sin), mask)
        cap_o.remove()

        # Step by step with the model file's functions (DeepseekV3Attention.forward's sequence).
        if config.q_lora_rank is None:
            q_states = attn.q_proj(x)
        else:
            q_states = attn.q_b_proj(attn.q_a_layernorm(attn.q_a_proj(x)))
        q_states = q_states.view(1, T, -1, dq).transpose(1, 2)
        q_pass, q_rot0 = torch.split(q_states, [dn, dr], dim=-1)
        compressed = attn.kv_a_proj_with_mqa(x)
        k_pass0, k_rot0 = torch.split(compressed, [r, dr], dim=-1)
        c_norm = attn.kv_a_layernorm(k_pass0)  # [1, T, r]: the latent the cache holds
        kvb = attn.kv_b_proj(c_norm).view(1, T, -1, dn + dv).transpose(1, 2)
        k_pass, v = torch.split(kvb, [dn, dv], dim=-1)
        k_rot0 = k_rot0.view(1, 1, T, dr)
        if config.rope_interleave:
            q_rot, k_rot = mod.apply_rotary_pos_emb_interleave(q_rot0, k_rot0, cos, sin)
        else:
            q_rot, k_rot = mod.apply_rotary_pos_emb(q_rot0, k_rot0, cos, sin)
        k_rot_h = k_rot.expand(*k_pass.shape[:-1], -1)
        q = torch.cat((q_pass, q_rot), dim=-1)
        k = torch.cat((k_pass, k_rot_h), dim=-1)
        attn_out, attn_w = mod.eager_attention_forward(attn, q, k, v, mask, scaling=attn.scaling, dropout=0.0)
        attn_out = attn_out.reshape(1, T, -1).contiguous()
        y = attn.o_proj(attn_out)
        equal_or_die(y, out_module, f"{name}: output")
        equal_or_die(attn_out, cap_o.args[0], f"{name}: attn_output")
        equal_or_die(attn_w, w_module, f"{name}: attn_weights")

        # rope_interleave: eigenformer's in-place interleaved rotation is HF's result reordered.
        half = dr // 2
        ch, sh = cos[..., :half].unsqueeze(1), sin[..., :half].unsqueeze(1)
        if config.rope_interleave:
            for ours_in, hf in ((q_rot0, q_rot), (k_rot0, k_rot)):
                ours = rotate_every_two_inplace_layout(ours_in, ch, sh)
                equal_or_die(ours[..., 0::2], hf[..., :half], f"{name}: interleave mapping (evens)")
                equal_or_die(ours[..., 1::2], hf[..., half:], f"{name}: interleave mapping (odds)")

        # Absorption in float64: latent rows [c | k_rot], queries [q_nope W_UK | q_rot], out (p c) W_UV^T.
        Wkv = attn.kv_b_proj.weight.double().view(H, dn + dv, r)
        c64 = c_norm[0].double()                         # [T, r]
        kr64 = k_rot[0, 0].double()                      # [T, dr] (HF order; q_rot has the same order)
        q_lat = torch.einsum("hsd,hdc->hsc", q_pass[0].double(), Wkv[:, :dn])  # [H, T, r]
        scores = (q_lat @ c64.T + q_rot[0].double() @ kr64.T) * attn.scaling + mask[0].double()
        p = torch.softmax(scores, dim=-1)
        o = torch.einsum("hsc,hdc->hsd", p @ c64, Wkv[:, dn:])  # [H, T, dv]
        y_abs = torch.nn.functional.linear(o.transpose(0, 1).reshape(T, H * dv), attn.o_proj.weight.double(),
                                           None if attn.o_proj.bias is None else attn.o_proj.bias.double())
        err = (y_abs - out_module[0].double()).abs().max().item()
        assert err <= 1e-5 * (1 + out_module.abs().max().item()), f"{name}: absorbed form differs by {err}"

    rs = config.rope_scaling
    derived = {
        "num_heads": H, "q_lora_rank": int(config.q_lora_rank or 0), "kv_lora_rank": r, "qk_nope_head_dim": dn,
        "qk_rope_head_dim": dr, "v_head_dim": dv, "qk_head_dim": dq, "scaling": float(attn.scaling),
        "causal": True, "layer_idx": 0, "rope_type": rotary.rope_type,
        "rope_attention_scaling": float(rotary.attention_scaling), "rope_interleave": bool(config.rope_interleave),
        "attention_bias": bool(config.attention_bias),
        "softmax_mscale": float(mod.yarn_get_mscale(rs["factor"], rs["mscale_all_dim"]))
        if rs is not None and rs.get("mscale_all_dim") else 1.0,
        "absorbed_float64_max_abs_diff": err,
    }
    tensors = [(k_, v_.detach()) for k_, v_ in attn.state_dict().items()]
    tensors.append(("input.hidden_states", x[0]))
    tensors.append(("input.position_ids", position_ids[0].to(torch.int64)))
    tensors += [
        ("intermediate.query_states", rows(q)),                  # [T, H * dq], rope dims in HF order
        ("intermediate.key_states", rows(k)),                    # [T, H * dq]
        ("intermediate.value_states", rows(v)),                  # [T, H * dv]
        ("intermediate.compressed_kv_normed", c_norm[0]),        # [T, r]
        ("intermediate.k_rot", k_rot[0, 0].contiguous()),        # [T, dr], HF order
        ("intermediate.attn_output", attn_out[0]),               # [T, H * dv]
        ("output.hidden_states", out_module[0]),                 # [T, hidden]
    ]
    source = f"transformers.models.deepseek_v3.modeling_deepseek_v3.DeepseekV3Attention ({VERSIONS})"
    return tensors, source, config, derived


def cases():
    small = dict(hidden_size=32, num_attention_heads=4, num_key_value_heads=4, kv_lora_rank=24, qk_nope_head_dim=8,
                 qk_rope_head_dim=8, v_head_dim=12, rope_theta=10000.0)
    return [
        ("mla_q_lora_yarn_interleave", lambda: mla_case("mla_q_lora_yarn_interleave", 201, 11, dict(
            small, q_lora_rank=16, rope_interleave=True, attention_bias=False, max_position_embeddings=64,
            rope_scaling={"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 16,
                          "beta_fast": 32.0, "beta_slow": 1.0, "mscale": 1.0, "mscale_all_dim": 0.8}))),
        ("mla_q_proj_yarn_half_bias", lambda: mla_case("mla_q_proj_yarn_half_bias", 202, 9, dict(
            small, q_lora_rank=None, rope_interleave=False, attention_bias=True, max_position_embeddings=64,
            rope_scaling={"rope_type": "yarn", "factor": 8.0, "original_max_position_embeddings": 8,
                          "mscale_all_dim": 0.707}))),
        ("mla_q_proj_v2lite_yarn_interleave", lambda: mla_case("mla_q_proj_v2lite_yarn_interleave", 203, 10, dict(
            small, q_lora_rank=None, rope_interleave=True, attention_bias=False, max_position_embeddings=320,
            rope_scaling={"type": "yarn", "factor": 40.0, "original_max_position_embeddings": 8,
                          "beta_fast": 32.0, "beta_slow": 1.0, "mscale": 0.707, "mscale_all_dim": 0.707}))),
        ("mla_q_lora_default_rope_bias_offset", lambda: mla_case("mla_q_lora_default_rope_bias_offset", 204, 8, dict(
            small, q_lora_rank=16, rope_interleave=True, attention_bias=True, max_position_embeddings=64),
            position_ids=torch.arange(3, 11)[None, :])),
    ]


def build(name, make):
    tensors, source, config, derived = make()
    meta = config_metadata(config)
    meta.update({"derived." + k: meta_value(v) for k, v in derived.items()})
    meta["layer"] = "mla"
    meta["case"] = name
    meta["source"] = source
    meta["generator"] = "tools/make_golden_mla.py"
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
    total, bad = 0, 0
    for name, make in cases():
        tensors, meta = build(name, make)
        n, same = write_or_check(args.out, name, tensors, meta, args.check,
                                 f"(absorbed float64 max |diff| {meta['derived.absorbed_float64_max_abs_diff']})")
        total += n
        bad += not same
    print(f"{total} bytes in total ({VERSIONS}, safetensors {safetensors.__version__}, numpy {np.__version__})")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

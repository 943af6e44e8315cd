#!/usr/bin/env python3
"""Regenerate tests/data/golden/position: golden fixtures for RoPE (all rope types and layouts),
ALiBi slopes and xPos, produced by the reference modules themselves:

  * Hugging Face transformers (LlamaRotaryEmbedding + apply_rotary_pos_emb for rope types default,
    linear, dynamic, yarn and llama3; GPTNeoXRotaryEmbedding + its partial-rotary apply;
    GPT-J's create_sinusoidal_positions + apply_rotary_pos_emb; Bloom's build_alibi_tensor);
  * torchscale (XPOS, torchscale/component/xpos_relative_position.py).

Each file is a safetensors file whose "__metadata__" holds the configuration (string values) and
the producing package versions; the tensors are the inputs and outputs, in eigenformer's layout
(rows = tokens, columns = n_heads * head_dim). tests/test_position.cpp reads them.

Usage (from the repository root, with the pinned environment of tools/requirements.txt):

    python3 -m venv .venv
    .venv/bin/pip install --no-deps -r tools/requirements.txt
    .venv/bin/python tools/make_golden_position.py [output_dir]

The output is deterministic (fixed seeds, CPU, float32).
"""

import json
import os
import struct
import sys

import numpy as np
import torch
import transformers
from safetensors.torch import save_file
from transformers import GPTNeoXConfig, LlamaConfig
from transformers.models.bloom.modeling_bloom import build_alibi_tensor
from transformers.models.gpt_neox.modeling_gpt_neox import GPTNeoXRotaryEmbedding
from transformers.models.gpt_neox.modeling_gpt_neox import apply_rotary_pos_emb as neox_apply
from transformers.models.gptj.modeling_gptj import apply_rotary_pos_emb as gptj_apply
from transformers.models.gptj.modeling_gptj import create_sinusoidal_positions
from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb as llama_apply

import torchscale
from torchscale.component.xpos_relative_position import XPOS

try:
    from importlib.metadata import version as pkg_version
except ImportError:  # pragma: no cover
    pkg_version = None

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "tests", "data", "golden", "position")

torch.set_num_threads(1)
torch.set_grad_enabled(False)
transformers.logging.set_verbosity_error()  # yarn's config warnings are expected here

VERSIONS = {
    "torch": torch.__version__,
    "transformers": transformers.__version__,
    "torchscale": pkg_version("torchscale") if pkg_version else "?",
}

README_ROWS = []


def save(name, tensors, meta, producer):
    meta = {k: str(v) for k, v in meta.items()}
    meta["producer"] = producer
    meta.update({f"version_{k}": v for k, v in VERSIONS.items()})
    tensors = {k: v.contiguous() for k, v in tensors.items()}
    path = os.path.join(OUT, name)
    save_file(tensors, path, metadata=meta)
    canonicalize_header(path)
    os.chmod(path, 0o644)
    skip = {"producer", "kind"} | {k for k in meta if k.startswith("version_")}
    config = ", ".join(f"{k}={v}" for k, v in meta.items() if k not in skip)
    if "positions" in tensors:
        config += ", positions=" + str(tensors["positions"].tolist())
    README_ROWS.append((name, producer, config, os.path.getsize(path)))


def canonicalize_header(path):
    """The safetensors writer emits the header's keys in hash order (a new order every run);
    rewrite the header with sorted keys, same bytes otherwise, so the files are reproducible."""
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8 : 8 + n])
    header = {k: (dict(sorted(v.items())) if k == "__metadata__" else v) for k, v in sorted(header.items())}
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    assert len(text) <= n, "canonical header longer than the original"
    text += b" " * (n - len(text))
    with open(path, "wb") as f:
        f.write(blob[:8] + text + blob[8 + n :])


def f64repr(x):
    """Exact decimal text of a Python float (repr round-trips)."""
    return repr(float(x))


def rng_x(seed, rows, cols):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(rows, cols, generator=g, dtype=torch.float32)


# ---------------------------------------------------------------------------------------------
# RoPE through LlamaRotaryEmbedding + llama apply_rotary_pos_emb (half layout, full rotary dim)
# ---------------------------------------------------------------------------------------------

def llama_case(name, seed, head_dim, n_heads, positions, theta, max_pos, rope_scaling):
    cfg = LlamaConfig(
        hidden_size=head_dim * n_heads,
        num_attention_heads=n_heads,
        num_key_value_heads=n_heads,
        head_dim=head_dim,
        rope_theta=theta,
        max_position_embeddings=max_pos,
        rope_scaling=rope_scaling,
    )
    rope = LlamaRotaryEmbedding(cfg)  # fresh module: dynamic NTK state starts at max_pos
    T = len(positions)
    x = rng_x(seed, T, n_heads * head_dim)
    q = x.view(1, T, n_heads, head_dim).transpose(1, 2)  # [B, H, T, hd]
    pid = torch.tensor([positions], dtype=torch.int64)
    cos, sin = rope(q, pid)  # [1, T, hd]
    out, _ = llama_apply(q, q, cos, sin)
    out = out.transpose(1, 2).reshape(T, n_heads * head_dim)
    half = head_dim // 2
    rs = rope_scaling or {}
    meta = {
        "kind": "rope",
        "head_dim": head_dim,
        "rotary_dim": head_dim,
        "n_heads": n_heads,
        "theta": f64repr(theta),
        "layout": "half",
        "rope_type": rs.get("rope_type", "default"),
        "max_position_embeddings": max_pos,
        "attention_scaling": f64repr(rope.attention_scaling),
    }
    for k, v in rs.items():
        if k != "rope_type":
            meta[k] = f64repr(v) if isinstance(v, float) else v
    save(
        name,
        {
            "x": x,
            "positions": pid[0],
            "inv_freq": rope.inv_freq.float(),
            "cos": cos[0, :, :half].float(),
            "sin": sin[0, :, :half].float(),
            "out": out,
        },
        meta,
        "transformers LlamaRotaryEmbedding + models.llama.apply_rotary_pos_emb",
    )


# ---------------------------------------------------------------------------------------------
# Partial rotary through GPTNeoXRotaryEmbedding + gpt_neox apply_rotary_pos_emb (half layout)
# ---------------------------------------------------------------------------------------------

def neox_case(name, seed, head_dim, n_heads, rotary_pct, positions, theta, max_pos):
    cfg = GPTNeoXConfig(
        hidden_size=head_dim * n_heads,
        num_attention_heads=n_heads,
        rotary_pct=rotary_pct,
        rotary_emb_base=theta,
        max_position_embeddings=max_pos,
    )
    rope = GPTNeoXRotaryEmbedding(cfg)
    T = len(positions)
    x = rng_x(seed, T, n_heads * head_dim)
    q = x.view(1, T, n_heads, head_dim).transpose(1, 2)
    pid = torch.tensor([positions], dtype=torch.int64)
    cos, sin = rope(q, pid)  # [1, T, rotary_ndims]
    out, _ = neox_apply(q, q, cos, sin)
    out = out.transpose(1, 2).reshape(T, n_heads * head_dim)
    rotary_dim = int(head_dim * rotary_pct)
    assert cos.shape[-1] == rotary_dim
    save(
        name,
        {
            "x": x,
            "positions": pid[0],
            "inv_freq": rope.inv_freq.float(),
            "cos": cos[0, :, : rotary_dim // 2].float(),
            "sin": sin[0, :, : rotary_dim // 2].float(),
            "out": out,
        },
        {
            "kind": "rope",
            "head_dim": head_dim,
            "rotary_dim": rotary_dim,
            "partial_rotary_factor": f64repr(rotary_pct),
            "n_heads": n_heads,
            "theta": f64repr(theta),
            "layout": "half",
            "rope_type": "default",
            "max_position_embeddings": max_pos,
            "attention_scaling": f64repr(rope.attention_scaling),
        },
        "transformers GPTNeoXRotaryEmbedding + models.gpt_neox.apply_rotary_pos_emb (rotary_pct)",
    )


# ---------------------------------------------------------------------------------------------
# GPT-J: interleaved pairs, partial rotary_dim, theta 10000 (GPTJAttention.forward's rope steps)
# ---------------------------------------------------------------------------------------------

def gptj_case(name, seed, head_dim, n_heads, rotary_dim, positions, max_pos):
    embed_positions = create_sinusoidal_positions(max_pos, rotary_dim)  # [max_pos, rotary_dim]
    T = len(positions)
    x = rng_x(seed, T, n_heads * head_dim)
    key = x.view(1, T, n_heads, head_dim)  # GPT-J keeps [B, T, H, hd] here
    pid = torch.tensor([positions], dtype=torch.int64)
    ep = embed_positions.repeat(pid.shape[0], 1, 1)
    repeated = pid.unsqueeze(-1).repeat(1, 1, ep.shape[-1])
    sincos = torch.gather(ep, 1, repeated).to(key.dtype)
    sin, cos = torch.split(sincos, sincos.shape[-1] // 2, dim=-1)  # [1, T, rotary_dim / 2]
    k_rot = key[:, :, :, :rotary_dim]
    k_pass = key[:, :, :, rotary_dim:]
    k_rot = gptj_apply(k_rot, sin, cos)
    out = torch.cat([k_rot, k_pass], dim=-1).reshape(T, n_heads * head_dim)
    inv_freq = 1.0 / (10000 ** (torch.arange(0, rotary_dim, 2, dtype=torch.int64) / rotary_dim))
    save(
        name,
        {
            "x": x,
            "positions": pid[0],
            "inv_freq": inv_freq.float(),
            "cos": cos[0].float(),
            "sin": sin[0].float(),
            "out": out,
        },
        {
            "kind": "rope",
            "head_dim": head_dim,
            "rotary_dim": rotary_dim,
            "n_heads": n_heads,
            "theta": f64repr(10000.0),
            "layout": "interleaved",
            "rope_type": "default",
            "max_position_embeddings": max_pos,
            "attention_scaling": f64repr(1.0),
        },
        "transformers models.gptj create_sinusoidal_positions + apply_rotary_pos_emb (GPTJAttention steps)",
    )


# ---------------------------------------------------------------------------------------------
# ALiBi slopes from Bloom's build_alibi_tensor
# ---------------------------------------------------------------------------------------------

ALIBI_HEADS = list(range(1, 17)) + [20, 24, 32, 40, 64, 80, 96]


def alibi_case(name):
    tensors = {}
    for n in ALIBI_HEADS:
        mask = torch.ones(1, 2, dtype=torch.int64)
        alibi = build_alibi_tensor(mask, n, torch.float32)  # [n, 1, 2] = slope * key position
        tensors[f"slopes_{n}"] = alibi[:, 0, 1].clone()
    # The full bias for a short sequence with a padded first token, 12 heads.
    mask = torch.tensor([[0, 1, 1, 1, 1, 1, 1]], dtype=torch.int64)
    tensors["alibi_12_padded"] = build_alibi_tensor(mask, 12, torch.float32)[:, 0, :].clone()
    save(
        name,
        tensors,
        {"kind": "alibi", "heads": ",".join(str(n) for n in ALIBI_HEADS)},
        "transformers models.bloom.build_alibi_tensor",
    )


# ---------------------------------------------------------------------------------------------
# xPos from torchscale
# ---------------------------------------------------------------------------------------------

def xpos_case(name, seed, head_dim, n_heads, scale_base, calls):
    """calls: list of (tag, length, offset, downscale)."""
    xpos = XPOS(head_dim, scale_base)
    # fixed_pos_embedding's frequencies: its own expression (xpos_relative_position.py), evaluated on
    # a tensor of the same size, so PyTorch takes the same pow path and returns the same bits.
    dim = head_dim // 2
    inv_freq = 1.0 / (10000 ** (torch.arange(0, dim) / dim))
    tensors = {"scale": xpos.scale.float().clone(), "inv_freq": inv_freq.float()}
    tags = []
    for i, (tag, length, offset, downscale) in enumerate(calls):
        x = rng_x(seed + i, length, n_heads * head_dim)
        xt = x.view(length, n_heads, head_dim).transpose(0, 1).contiguous()  # [B*H, L, hd]
        y = xpos(xt, offset=offset, downscale=downscale)
        tensors[f"{tag}.x"] = x
        tensors[f"{tag}.out"] = y.transpose(0, 1).reshape(length, n_heads * head_dim).contiguous()
        tensors[f"{tag}.offset"] = torch.tensor([offset], dtype=torch.int64)
        tensors[f"{tag}.downscale"] = torch.tensor([int(downscale)], dtype=torch.int64)
        tags.append(tag)
    save(
        name,
        tensors,
        {
            "kind": "xpos",
            "head_dim": head_dim,
            "n_heads": n_heads,
            "scale_base": f64repr(scale_base),
            "cases": ",".join(tags),
        },
        "torchscale component.xpos_relative_position.XPOS",
    )


def main():
    os.makedirs(OUT, exist_ok=True)
    for f in os.listdir(OUT):
        if f.endswith(".safetensors"):
            os.remove(os.path.join(OUT, f))
    P = [0, 1, 2, 7, 31, 100, 1000, 2047]  # ordinary positions
    llama_case("rope_default.safetensors", 1, 64, 2, P, 10000.0, 2048, None)
    llama_case("rope_linear.safetensors", 2, 64, 1, P + [6000, 8191], 10000.0, 8192,
               {"rope_type": "linear", "factor": 4.0})
    # dynamic NTK: seq_len = max(position) + 1 = 200 <= 256 (original frequencies) ...
    llama_case("rope_dynamic_short.safetensors", 3, 64, 1, [0, 1, 5, 50, 199], 10000.0, 256,
               {"rope_type": "dynamic", "factor": 2.0})
    # ... and 1001 > 256 (theta grows; HF computes the new base in float32 on this path).
    llama_case("rope_dynamic_long.safetensors", 4, 64, 1, [0, 3, 255, 256, 700, 1000], 10000.0, 256,
               {"rope_type": "dynamic", "factor": 2.0})
    llama_case("rope_yarn.safetensors", 5, 64, 1, P + [4095], 10000.0, 4096,
               {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 1024})
    llama_case("rope_yarn_attention_factor.safetensors", 6, 64, 1, P, 1000000.0, 8192,
               {"rope_type": "yarn", "factor": 8.0, "original_max_position_embeddings": 1024,
                "attention_factor": 0.75, "beta_fast": 16.0, "beta_slow": 2.0, "truncate": False})
    # DeepSeek-V2/V3 style: mscale / mscale_all_dim, no original_max_position_embeddings (falls back
    # to max_position_embeddings).
    llama_case("rope_yarn_mscale.safetensors", 7, 64, 1, P + [3000], 10000.0, 4096,
               {"rope_type": "yarn", "factor": 40.0, "mscale": 1.0, "mscale_all_dim": 0.707})
    llama_case("rope_llama3.safetensors", 8, 64, 1, P + [9000, 65000, 131071], 500000.0, 131072,
               {"rope_type": "llama3", "factor": 8.0, "original_max_position_embeddings": 8192,
                "low_freq_factor": 1.0, "high_freq_factor": 4.0})
    neox_case("rope_neox_partial025.safetensors", 9, 64, 1, 0.25, P, 10000.0, 2048)
    neox_case("rope_neox_partial05.safetensors", 10, 16, 3, 0.5, P, 10000.0, 2048)
    gptj_case("rope_gptj.safetensors", 11, 64, 1, 32, P, 2048)
    alibi_case("alibi_bloom.safetensors")
    xpos_case("xpos_base512.safetensors", 20, 64, 1, 512,
              [("q0", 5, 0, False), ("k0", 5, 0, True), ("qdec", 1, 9, False), ("kmid", 3, 5, True),
               ("qlong", 2, 3000, False)])
    xpos_case("xpos_base8.safetensors", 30, 16, 2, 8,
              [("q0", 7, 0, False), ("k0", 7, 0, True), ("qdec", 1, 40, False), ("koff", 4, 11, True)])
    write_readme()


def write_readme():
    lines = [
        "# Golden fixtures: positional encodings",
        "",
        "Generated by `tools/make_golden_position.py` (do not edit by hand). Read by",
        "`tests/test_position.cpp`, which skips a check whose file is missing.",
        "",
        "Produced with " + ", ".join(f"{k} {v}" for k, v in VERSIONS.items()) +
        ", numpy " + np.__version__ + ", on CPU in float32 (pins: `tools/requirements.txt`).",
        "",
        "Regenerate from the repository root:",
        "",
        "```sh",
        "python3 -m venv .venv",
        ".venv/bin/pip install --no-deps -r tools/requirements.txt",
        ".venv/bin/python tools/make_golden_position.py",
        "```",
        "",
        "Each file's `__metadata__` holds the configuration (all values are strings: Python `repr`",
        "of floats, so they round-trip exactly) and the producing package versions; tensors are in",
        "eigenformer's layout, rows = tokens, columns = n_heads * head_dim.",
        "",
        "RoPE files: `x` [T, n_heads*head_dim] f32, `positions` [T] i64, `inv_freq` [rotary_dim/2] f32",
        "(the module's buffer after the forward call), `cos`, `sin` [T, rotary_dim/2] f32 (HF's tables,",
        "attention scaling included; the second half of HF's [T, rotary_dim] table repeats the first),",
        "`out` [T, n_heads*head_dim] f32 (the rotated queries).",
        "",
        "ALiBi file: `slopes_<n>` [n] f32 (Bloom's slopes for n heads, read back as alibi[:, 0, 1] =",
        "slope * key position 1), `alibi_12_padded` [12, 7] f32 (the bias for a mask 0111111).",
        "",
        "xPos files: `scale` [head_dim/2] f32 (the module's buffer), `inv_freq` [head_dim/2] f32",
        "(fixed_pos_embedding's frequencies), and per call `<tag>.x`, `<tag>.out` [length,",
        "n_heads*head_dim] f32, `<tag>.offset`, `<tag>.downscale` [1] i64.",
        "",
        "| file | produced by | configuration (metadata) | bytes |",
        "| --- | --- | --- | --- |",
    ]
    for name, producer, config, size in README_ROWS:
        lines.append(f"| `{name}` | {producer} | {config} | {size} |")
    lines.append("")
    with open(os.path.join(OUT, "README.md"), "w") as f:
        f.write("\n".join(lines))


if __name__ == "__main__":
    main()

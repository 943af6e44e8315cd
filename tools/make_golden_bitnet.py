#!/usr/bin/env python3
"""Golden BitNet b1.58 fixtures from Hugging Face transformers' own BitNet code.

Writes tests/data/golden/bitnet/<case>.safetensors (see tests/data/golden/bitnet/README.md for the
tensor names). Usage, from the repository root:

    .venv/bin/python tools/make_golden_bitnet.py [--out DIR] [--check]

--check regenerates into memory and compares with the files on disk byte for byte (exit 1 on any
difference) instead of writing.

What is used from transformers (CPU, float32, no network):
  - integrations/bitnet.py: pack_weights / unpack_weights (the packed checkpoint layout), BitLinear
    (packed uint8 weight + weight_scale, the "bitlinear" linear class), AutoBitLinear (online: quantizes
    its float weight with WeightQuant at every call; offline: a packed weight unpacked by its
    load_state_dict hook, output multiplied by weight_scale), BitLinear.activation_quant;
  - models/bitnet/modeling_bitnet.py: BitNetModel with one BitNetDecoderLayer (eager attention), whose
    nn.Linear projections are swapped for BitLinear / AutoBitLinear modules built with the arguments
    of _replace_with_bitnet_linear (which itself needs accelerate, not installed here).
torch.compile is disabled (TORCHDYNAMO_DISABLE=1): unpack_weights and activation_quant run eagerly,
same ops. The absmean ternarization is WeightQuant.forward's own arithmetic, step by step, and the
script asserts that it gives exactly the weights WeightQuant produces.
"""

import os

os.environ["TORCHDYNAMO_DISABLE"] = "1"  # before torch is imported

import argparse
import json
import math
import sys

import numpy as np
import safetensors
import torch
import transformers
from torch import nn
from transformers.integrations import bitnet as hf_bitnet
from transformers.models.bitnet import modeling_bitnet
from transformers.models.bitnet.configuration_bitnet import BitNetConfig

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from golden_common import write_or_check  # noqa: E402  (the shared deterministic writer)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT = os.path.join(REPO, "tests", "data", "golden", "bitnet")
VERSIONS = f"transformers {transformers.__version__}, torch {torch.__version__}"

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)
transformers.logging.set_verbosity_error()

# ------------------------------------------------------------------------------------------------
# Quantization steps (WeightQuant.forward / ActQuant.forward arithmetic)
# ------------------------------------------------------------------------------------------------


def ternarize(w):
    """WeightQuant.forward's arithmetic, kept apart: (ternary int8, s = 1 / clamp(mean|w|, 1e-5), mean)."""
    w = w.float()
    mean = w.abs().mean().clamp_(min=1e-5)
    s = 1.0 / mean
    t = (w * s).round().clamp(-1, 1)
    # WeightQuant itself returns t / s: the same weights
    assert torch.equal(hf_bitnet.WeightQuant.apply(w), t / s)
    return t.to(torch.int8), s.reshape(1), mean.reshape(1)


def pack(t):
    packed = hf_bitnet.pack_weights(t.clone())  # pack_weights adds 1 to its argument in place
    assert packed.dtype == torch.uint8
    back = hf_bitnet.unpack_weights(packed, dtype=torch.float32)[: t.shape[0]]
    assert torch.equal(back, t.float()), "unpack_weights(pack_weights(t)) != t"
    return packed


def make_bitlinear(in_f, out_f, bias, t, s, b, rms=None):
    """transformers BitLinear (linear_class "bitlinear") holding the packed weights."""
    m = hf_bitnet.BitLinear(in_f, out_f, bias=bias, dtype=torch.float32,
                            use_rms_norm=rms is not None, rms_norm_eps=1e-6)
    with torch.no_grad():
        m.weight.copy_(pack(t))
        m.weight_scale.copy_(s)
        if bias:
            m.bias.copy_(b)
        if rms is not None:
            m.rms_norm.weight.copy_(rms)
    return m


def make_autobitlinear(in_f, out_f, bias, w, b, online, packed=None, scale=None, rms=None):
    m = hf_bitnet.AutoBitLinear(in_f, out_f, bias=bias, dtype=torch.float32, online_quant=online,
                                use_rms_norm=rms is not None, rms_norm_eps=1e-6)
    if online:
        with torch.no_grad():
            m.weight.copy_(w)
            if bias:
                m.bias.copy_(b)
            if rms is not None:
                m.rms_norm.weight.copy_(rms)
    else:
        sd = {"weight": packed, "weight_scale": scale}
        if bias:
            sd["bias"] = b
        if rms is not None:
            sd["rms_norm.weight"] = rms
        m.load_state_dict(sd)  # the load hook unpacks the uint8 weight
    return m


# ------------------------------------------------------------------------------------------------
# Cases
# ------------------------------------------------------------------------------------------------


def linear_case(gen, in_f, out_f, T, bias, rms_norm, hf_module=True):
    """One linear layer in every form. Tensor names (prefixes are layer prefixes for BitLinear::load):
    dense.weight F32 [out, in] (+ dense.bias), packed.weight U8 [ceil(out/4), in] + packed.weight_scale
    F32 [1] (divisor, "bitlinear"), auto.weight U8 + auto.weight_scale F32 [1] (multiplier,
    "autobitlinear" offline), ternary I8 [out, in], x F32 [T, in], x_quant I8 [T, in], x_scale F32 [T],
    y_bitlinear / y_online / y_offline F32 [T, out]; with rms_norm: <prefix>.rms_norm.weight and
    x_normed (the input after the norm)."""
    w = torch.randn(out_f, in_f, generator=gen) * (1.0 / math.sqrt(in_f))
    b = torch.randn(out_f, generator=gen) * 0.5 if bias else None
    rms = (1.0 + 0.2 * torch.randn(in_f, generator=gen)) if rms_norm else None
    x = torch.randn(T, in_f, generator=gen) * 2.0
    if T >= 3:
        x[1] = 0.0                # an all-zero token: scale 127 / 1e-5, output 0 (+ bias)
        x[2] *= 1e-7              # max|x| below the 1e-5 clamp
    if T >= 4:
        x[3, 0] = 40.0            # one large outlier
    t, s, mean = ternarize(w)
    packed = pack(t)
    tensors = [("dense.weight", w)]
    if bias:
        tensors.append(("dense.bias", b))
    if rms_norm:
        tensors.append(("dense.rms_norm.weight", rms))
    tensors += [("packed.weight", packed), ("packed.weight_scale", s)]
    if bias:
        tensors.append(("packed.bias", b))
    if rms_norm:
        tensors.append(("packed.rms_norm.weight", rms))
    tensors += [("auto.weight", packed), ("auto.weight_scale", mean)]
    if bias:
        tensors.append(("auto.bias", b))
    if rms_norm:
        tensors.append(("auto.rms_norm.weight", rms))
    with torch.no_grad():
        xin = x
        if rms_norm:
            norm = modeling_bitnet.BitNetRMSNorm(in_f, eps=1e-6)  # = LlamaRMSNorm, as BitLinear's
            norm.weight.copy_(rms)
            xin = norm(x)
        q, xs = hf_bitnet.BitLinear.activation_quant(None, xin)
        if hf_module:
            y_bit = make_bitlinear(in_f, out_f, bias, t, s, b, rms)(x)
        else:  # out % 4 != 0: BitLinear's buffer [out // 4, in] cannot hold the weights; its op sequence
            wq = hf_bitnet.unpack_weights(packed, dtype=torch.float32)[:out_f]
            y_bit = hf_bitnet.BitLinear.post_quant_process(None, torch.nn.functional.linear(q.float(), wq), s, xs)
            if bias:
                y_bit = y_bit + b
        y_on = make_autobitlinear(in_f, out_f, bias, w, b, True, rms=rms)(x)
        if hf_module:
            y_off = make_autobitlinear(in_f, out_f, bias, w, b, False, packed, mean, rms)(x)
        else:  # AutoBitLinear.forward's op sequence on the unpacked rows (its load hook would give 4 R rows)
            wq = hf_bitnet.unpack_weights(packed, dtype=torch.float32)[:out_f]
            y_off = torch.nn.functional.linear(hf_bitnet.ActQuant.apply(xin), wq, b) * mean
    tensors += [("ternary", t), ("x", x), ("x_quant", q), ("x_scale", xs.reshape(T))]
    if rms_norm:
        tensors.append(("x_normed", xin))
    tensors += [("y_bitlinear", y_bit), ("y_online", y_on), ("y_offline", y_off)]
    meta = {"in_features": str(in_f), "out_features": str(out_f), "tokens": str(T), "bias": json.dumps(bias),
            "rms_norm": json.dumps(rms_norm), "rms_norm_eps": "1e-06", "y_bitlinear_module": json.dumps(hf_module)}
    return tensors, meta


def decoder_case(gen, packed_weights):
    """One BitNetDecoderLayer inside a one-layer BitNetModel (eager), every projection a BitLinear
    ("bitlinear", packed uint8 weights, the state dict stored) or an online AutoBitLinear (float weights
    stored, quantized at every call). x = inputs_embeds [T, hidden]; y = the layer's output (forward
    hook). Checkpoint names under model.layers.0."""
    T = 9
    config = BitNetConfig(vocab_size=16, hidden_size=64, intermediate_size=200, num_hidden_layers=1,
                          num_attention_heads=4, num_key_value_heads=2, hidden_act="relu2",
                          max_position_embeddings=64, rms_norm_eps=1e-5, rope_theta=500000.0,
                          attn_implementation="eager")
    model = modeling_bitnet.BitNetModel(config).eval()
    layer = model.layers[0]
    with torch.no_grad():
        for name, p in sorted(layer.named_parameters()):
            if p.dim() == 2:
                p.copy_(torch.randn(p.shape, generator=gen) * (1.0 / math.sqrt(p.shape[1])))
            else:  # RMSNorm weights
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=gen))
    state = {}
    for parent_name, parent in [("self_attn", layer.self_attn), ("mlp", layer.mlp)]:
        for child_name, child in list(parent.named_children()):
            if not isinstance(child, nn.Linear):
                continue
            w = child.weight.detach().clone()
            prefix = f"model.layers.0.{parent_name}.{child_name}"
            if packed_weights:
                t, s, _ = ternarize(w)
                new = make_bitlinear(child.in_features, child.out_features, False, t, s, None)
                state[prefix + ".weight"] = new.weight.detach().clone()
                state[prefix + ".weight_scale"] = new.weight_scale.detach().clone()
            else:
                new = make_autobitlinear(child.in_features, child.out_features, False, w, None, True)
                state[prefix + ".weight"] = w
            setattr(parent, child_name, new)
    for name, p in layer.named_parameters():  # the norms
        state["model.layers.0." + name] = p.detach().clone()
    x = torch.randn(1, T, config.hidden_size, generator=gen)
    captured = {}
    handle = layer.register_forward_hook(lambda m, a, out: captured.setdefault("y", out[0] if isinstance(out, tuple) else out))
    with torch.no_grad():
        model(inputs_embeds=x)
    handle.remove()
    y = captured["y"]
    tensors = [(k, state[k]) for k in sorted(state)] + [("x", x[0]), ("y", y[0])]
    keys = ["hidden_size", "intermediate_size", "num_attention_heads", "num_key_value_heads", "rms_norm_eps",
            "rope_theta", "hidden_act", "max_position_embeddings"]
    meta = {k: (getattr(config, k) if isinstance(getattr(config, k), str) else json.dumps(getattr(config, k)))
            for k in keys}
    meta["linear_class"] = "bitlinear" if packed_weights else "autobitlinear (online)"
    meta["tokens"] = str(T)
    return tensors, meta


CASES = {
    "bitlinear_in200_out20": lambda g: linear_case(g, 200, 20, 5, False, False),
    "bitlinear_bias_in33_out12": lambda g: linear_case(g, 33, 12, 4, True, False),
    "bitlinear_out10_not_multiple_of_4": lambda g: linear_case(g, 170, 10, 3, False, False, hf_module=False),
    "bitlinear_use_rms_norm": lambda g: linear_case(g, 96, 8, 3, True, True),
    "decoder_layer_packed": lambda g: decoder_case(g, True),
    "decoder_layer_online": lambda g: decoder_case(g, False),
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=DEFAULT_OUT)
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    bad = 0
    for i, (case, fn) in enumerate(CASES.items()):
        gen = torch.Generator().manual_seed(8000 + i)
        tensors, meta = fn(gen)
        meta = dict(meta)
        meta["generated_by"] = "tools/make_golden_bitnet.py"
        meta["versions"] = VERSIONS
        bad += not write_or_check(args.out, case, tensors, meta, args.check)[1]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

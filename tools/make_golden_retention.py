#!/usr/bin/env python3
"""Golden RetNet fixtures from torchscale 0.3.0's own MultiScaleRetention and RetNet DecoderLayer.

Writes tests/data/golden/retention/<case>.safetensors, read by tests/test_retention_golden.cpp.
Usage, from the repository root:

    .venv/bin/python tools/make_golden_retention.py [--out DIR] [--check]

--check regenerates into memory and compares with the files on disk byte for byte (exit 1 on any
difference) instead of writing.

Each file holds, under torchscale's checkpoint names (the module's state_dict with the prefix a
RetNetDecoder gives it: `layers.0.retention.` for a retention case, `layers.0.` for a layer case):
  - the weights (float32; projections from the module's own reset_parameters under a fixed seed,
    so the pre-norm outputs are as small as in a freshly initialised model and the group-norm eps
    matters; RMSNorm weights of a layer case set to 1 + 0.1 N(0, 1) so a missing load shows);
  - `input` [T, embed_dim] ~ N(0, 1);
  - `output.parallel`   the forward in the parallel form (RetNetRelPos(T));
  - `output.recurrent`  the forward one token at a time with an incremental_state
                        (RetNetRelPos(t + 1, activate_recurrent=True));
  - `output.chunkwise<B>` the chunkwise form with recurrent_chunk_size B; when B does not divide T the
                        input is padded with zero rows to a multiple of B and the output cut back to T,
                        as RetNetDecoder.forward does;
  - metadata: the RetNetConfig fields used, T, the chunk sizes, the versions.
torchscale's retnet.py imports fairscale (checkpoint_wrapper, wrap) and its droppath.py imports timm
(drop_path); neither is used here (no activation checkpointing, no FSDP, drop_path_rate 0), so when
they are not installed they are replaced by stubs that raise if called.
"""

import argparse
import importlib
import os
import sys
import types

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from golden_common import write_or_check  # noqa: E402  (the shared deterministic writer)


def _stub_missing(name, **attrs):
    try:
        importlib.import_module(name)
    except ImportError:
        m = types.ModuleType(name)
        m.__dict__.update(attrs)
        sys.modules[name] = m


def _unavailable(*args, **kwargs):
    raise RuntimeError("stubbed dependency called")


_stub_missing("fairscale")
_stub_missing("fairscale.nn", checkpoint_wrapper=_unavailable, wrap=_unavailable)
_stub_missing("timm")
_stub_missing("timm.models")
_stub_missing("timm.models.layers", drop_path=_unavailable)

from importlib.metadata import version  # noqa: E402

from torchscale.architecture.config import RetNetConfig  # noqa: E402
from torchscale.architecture.retnet import DecoderLayer, RetNetRelPos  # noqa: E402
from torchscale.component.multiscale_retention import MultiScaleRetention  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT = os.path.join(REPO, "tests", "data", "golden", "retention")
VERSIONS = f"torchscale {version('torchscale')}, torch {torch.__version__}"

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)


def make_args(c, chunk):
    return RetNetConfig(
        decoder_embed_dim=c["embed_dim"],
        decoder_value_embed_dim=c["value_dim"],
        decoder_retention_heads=c["heads"],
        decoder_ffn_embed_dim=c.get("ffn_dim", 64),
        layernorm_eps=c["eps"],
        activation_fn=c.get("activation_fn", "gelu"),
        recurrent_chunk_size=chunk,
    )


def run_forms(module, x, c, call):
    """call(module, x, rel_pos, chunkwise, incremental_state) -> output. Returns name -> [T, E]."""
    T = x.size(1)
    out = {}
    with torch.no_grad():
        rel = RetNetRelPos(make_args(c, 512))
        out["output.parallel"] = call(module, x, rel(T), False, None)
        state = {}
        steps = []
        for t in range(T):
            steps.append(call(module, x[:, t : t + 1], rel(t + 1, activate_recurrent=True), False, state))
        out["output.recurrent"] = torch.cat(steps, dim=1)
        for B in c["chunks"]:
            relc = RetNetRelPos(make_args(c, B))
            pad = (B - T % B) % B
            xp = F.pad(x, (0, 0, 0, pad))
            y = call(module, xp, relc(T + pad, chunkwise_recurrent=True), True, None)
            out[f"output.chunkwise{B}"] = y[:, :T]
    return {k: v[0].contiguous() for k, v in out.items()}


def call_retention(m, x, rel, chunkwise, state):
    return m(x, rel, chunkwise_recurrent=chunkwise, incremental_state=state)


def call_layer(m, x, rel, chunkwise, state):
    y, _ = m(x, incremental_state=state, chunkwise_recurrent=chunkwise, retention_rel_pos=rel)
    return y


def build(name, c):
    torch.manual_seed(c["seed"])
    args = make_args(c, 512)
    if c["kind"] == "retention":
        module = MultiScaleRetention(args, c["embed_dim"], c["value_dim"], c["heads"]).eval()
        if c.get("qk_gain", 1) != 1:  # larger scores: |sum qk| > 1, so the abs-sum normalisation acts
            with torch.no_grad():
                module.q_proj.weight.mul_(c["qk_gain"])
                module.k_proj.weight.mul_(c["qk_gain"])
        prefix, call = "layers.0.retention.", call_retention
    else:
        module = DecoderLayer(args, depth=0).eval()
        with torch.no_grad():
            for n, p in sorted(module.named_parameters()):
                if n.endswith("layer_norm.weight"):
                    p.copy_(1 + 0.1 * torch.randn(p.shape))
        prefix, call = "layers.0.", call_layer
    x = torch.randn(1, c["T"], c["embed_dim"])
    outputs = run_forms(module, x, c, call)
    tensors = [(prefix + n, p.detach().clone()) for n, p in sorted(module.state_dict().items())]
    tensors.append(("input", x[0].contiguous()))
    tensors += sorted(outputs.items())
    meta = {
        "kind": c["kind"],
        "prefix": prefix.rstrip("."),
        "decoder_embed_dim": str(c["embed_dim"]),
        "decoder_value_embed_dim": str(c["value_dim"]),
        "decoder_retention_heads": str(c["heads"]),
        "layernorm_eps": repr(c["eps"]),
        "T": str(c["T"]),
        "chunk_sizes": ",".join(str(b) for b in c["chunks"]),
        "versions": VERSIONS,
    }
    if c.get("qk_gain", 1) != 1:
        meta["qk_gain"] = str(c["qk_gain"])
    if c["kind"] == "layer":
        meta["decoder_ffn_embed_dim"] = str(c["ffn_dim"])
        meta["activation_fn"] = c["activation_fn"]
    return tensors, meta


def cases():
    return [
        # value_dim = 2 embed_dim (RetNet's ratio), 2 heads of dk 8 / dv 16; chunks 4 (pads 11 to 12) and 3.
        ("retention_h2", dict(kind="retention", embed_dim=16, value_dim=32, heads=2, eps=1e-6, T=11, chunks=[3, 4],
                              seed=1)),
        # 4 heads of dk 8 / dv 6, chunk 8 divides T, chunk 5 does not.
        ("retention_h4", dict(kind="retention", embed_dim=32, value_dim=24, heads=4, eps=1e-6, T=16, chunks=[5, 8],
                              seed=2)),
        # A large group-norm eps and q/k weights x16 (scores beyond the clamp at 1), so the three forms
        # differ visibly (torchscale issue #40) and each is checked against its own torchscale output.
        ("retention_eps", dict(kind="retention", embed_dim=16, value_dim=16, heads=2, eps=1e-3, T=12, chunks=[5],
                               qk_gain=16, seed=5)),
        # A whole decoder layer with the RetNetConfig default activation (gelu) ...
        ("layer_gelu", dict(kind="layer", embed_dim=16, value_dim=32, heads=2, eps=1e-6, ffn_dim=32,
                            activation_fn="gelu", T=10, chunks=[4], seed=3)),
        # ... and with swish (the paper's FFN), layernorm_eps 1e-5.
        ("layer_swish", dict(kind="layer", embed_dim=16, value_dim=16, heads=2, eps=1e-5, ffn_dim=24,
                             activation_fn="swish", T=9, chunks=[2], seed=4)),
    ]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=DEFAULT_OUT)
    ap.add_argument("--check", action="store_true", help="compare with the files on disk instead of writing")
    args = ap.parse_args()
    assert sys.byteorder == "little"
    total, bad = 0, 0
    for name, c in cases():
        tensors, meta = build(name, c)
        n, same = write_or_check(args.out, name, tensors, meta, args.check)
        total += n
        bad += not same
    print(f"{total} bytes in total ({VERSIONS})")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

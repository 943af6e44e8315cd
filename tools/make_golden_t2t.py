#!/usr/bin/env python3
"""Golden fixtures for MemoryCompressedAttention from tensor2tensor's OWN functions.

Writes tests/data/golden/t2t/<case>.safetensors (naming and cases: tests/data/golden/t2t/README.md).
The reference is the real tensor2tensor code, called (not copied):
  compressed:  tensor2tensor.layers.common_attention.multihead_self_attention_reduced(
                   x, factor=3, multihead_params=..., reduction_type="conv", add_mask=True)
  local_block: tensor2tensor.layers.common_attention.multihead_attention(
                   x, None, None, ..., attention_type="local_mask_right", block_length=B)
               (which calls masked_local_attention_1d).

Run from the repository root, in its own venv (TensorFlow is not in the project's .venv):

    python3 -m venv .venv-t2t
    .venv-t2t/bin/pip install tensorflow-cpu==2.15.1 safetensors
    .venv-t2t/bin/pip install --no-deps tensor2tensor==1.15.7
    .venv-t2t/bin/python tools/make_golden_t2t.py            # writes the files
    .venv-t2t/bin/python tools/make_golden_t2t.py --check    # byte-for-byte compare, exit 1 on a difference

Generated with: tensorflow-cpu 2.15.1 (graph mode: tf.compat.v1.disable_v2_behavior()), tensor2tensor
1.15.7 (installed --no-deps), numpy 1.26.4, safetensors 0.8.0, Python 3.11. (TF 2.15 is the last
release whose tf.compat.v1.layers still works without the separate tf_keras package.)

Shims (module objects put in sys.modules before tensor2tensor is imported; each raises on ANY
attribute access, so a real use could not pass silently):
  tensorflow_probability  imported at the top of common_layers.py / common_attention.py; used there
                          only by KL-divergence and sampling helpers, never by the two functions.
  tensorflow_addons       imported by tensor2tensor/utils/contrib.py when tf.contrib is missing (TF 2);
  tf_slim                 used only by contrib.opt() / contrib.slim() / contrib.layers(), which the
                          two functions never call (conv_elems_1d uses common_attention.layers(),
                          i.e. tf.compat.v1.layers in graph mode).
Nothing else is stubbed or patched; all other imports (six, absl, numpy, TF) are the real packages.

How a case is made: a fresh tf.Graph, input x [1, T, D] float64 constant; the t2t function builds
its variables (dense kernels q, k, v, output_transform [in, out], no bias; compressed mode also the
conv2d kernel [1, f, in, out] and bias [out]); in a single-threaded session the variables are
initialised, then overwritten (Variable.load) with seeded values: dense N(0, 2 / D), conv kernel
N(0, 1 / (D f)), conv bias N(0, 0.25), x N(0, 1), all rounded to float32 values first (so the
float32 layer sees exactly the reference's inputs). The whole computation runs in float64. After the
run every variable is read back from the graph and must equal what was loaded; the output must also
equal (to 1e-12) an independent numpy float64 evaluation of the documented semantics, which guards
the fixture against a mis-wired case. Files are written with a small deterministic writer (sorted
metadata, header padded to 8 bytes; the same conventions as tools/golden_common.py, which needs
torch and is therefore not imported here) and re-read with safetensors.numpy.
"""

import argparse
import json
import os
import struct
import sys
import types


class _Shim(types.ModuleType):
    """A stand-in for an optional dependency that tensor2tensor imports but these functions never use."""

    def __getattr__(self, attr):
        if attr.startswith("__"):
            raise AttributeError(attr)
        raise RuntimeError(f"shim module {self.__name__!r} was used ({attr}); install the real package")


SHIMS = ("tensorflow_probability", "tensorflow_addons", "tf_slim")
for _name in SHIMS:
    sys.modules[_name] = _Shim(_name)

import numpy as np  # noqa: E402
import safetensors  # noqa: E402
import safetensors.numpy  # noqa: E402
import tensorflow as tf2  # noqa: E402
import tensorflow.compat.v1 as tf  # noqa: E402

tf.disable_v2_behavior()
tf.logging.set_verbosity(tf.logging.ERROR)

from importlib.metadata import version as pkg_version  # noqa: E402

from tensor2tensor.layers import common_attention  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT = os.path.join(REPO, "tests", "data", "golden", "t2t")
VERSIONS = (f"tensor2tensor {pkg_version('tensor2tensor')}, tensorflow-cpu {tf2.__version__}, "
            f"numpy {np.__version__}, Python {sys.version_info.major}.{sys.version_info.minor}")

# (case, mode, T, hidden, heads, factor, block_length, seed)
CASES = [
    ("compressed_t20", "compressed", 20, 16, 4, 3, 0, 1),  # T % 3 == 2: conv drops 2 rows
    ("compressed_t21", "compressed", 21, 16, 4, 3, 0, 2),  # T % 3 == 0
    ("compressed_t4_h2", "compressed", 4, 16, 2, 3, 0, 3),  # memory = [x_0, one conv row]
    ("local_block4_t19", "local_block", 19, 16, 4, 0, 4, 4),  # 19 % 4 == 3: last block padded
    ("local_block8_t30", "local_block", 30, 16, 4, 0, 8, 5),  # 30 % 8 == 6, 4 blocks
    ("local_block8_t13", "local_block", 13, 16, 4, 0, 8, 6),  # T < 2 * block_length: t2t uses one block
]

_DT = {np.dtype("float32"): "F32", np.dtype("float64"): "F64", np.dtype("int64"): "I64"}


def safetensors_bytes(tensors, metadata):
    header = {"__metadata__": {k: metadata[k] for k in sorted(metadata)}}
    blobs, off = [], 0
    for name, a in tensors:
        b = np.ascontiguousarray(a).astype(a.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": _DT[a.dtype], "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    h += b" " * ((8 - len(h) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(blobs)


def run_t2t(mode, x64, D, H, factor, block, rng):
    """Builds the t2t graph, loads seeded weights, runs it. Returns (output [T, D], {var name: value})."""
    g = tf.Graph()
    with g.as_default():
        x = tf.constant(x64[None], dtype=tf.float64)
        params = dict(total_key_depth=D, total_value_depth=D, num_heads=H, dropout_rate=0.0)
        if mode == "compressed":
            y = common_attention.multihead_self_attention_reduced(
                x, factor=factor, multihead_params=params, nonlinearity="none", reduction_type="conv",
                add_mask=True)
        else:
            y = common_attention.multihead_attention(
                x, None, None, output_depth=D, attention_type="local_mask_right", block_length=block,
                **params)
        variables = tf.global_variables()
        cfg = tf.ConfigProto(intra_op_parallelism_threads=1, inter_op_parallelism_threads=1)
        with tf.Session(graph=g, config=cfg) as sess:
            sess.run(tf.global_variables_initializer())
            loaded = {}
            for var in sorted(variables, key=lambda v: v.name):
                name = var.name[:-2] if var.name.endswith(":0") else var.name
                shape = tuple(var.shape.as_list())
                assert var.dtype.base_dtype == tf.float64, (name, var.dtype)
                if name.endswith("conv2d/kernel"):
                    val = rng.normal(0.0, (1.0 / (shape[1] * shape[2])) ** 0.5, shape)
                elif name.endswith("conv2d/bias"):
                    val = rng.normal(0.0, 0.5, shape)
                elif name.endswith("/kernel") and len(shape) == 2:
                    val = rng.normal(0.0, (2.0 / shape[0]) ** 0.5, shape)
                else:
                    raise AssertionError(f"unexpected variable {name} {shape}")
                val = val.astype(np.float32).astype(np.float64)
                var.load(val, sess)
                loaded[name] = val
            out = sess.run(y)[0]
            for var in variables:  # read back from the graph: what the run really used
                name = var.name[:-2]
                assert np.array_equal(sess.run(var), loaded[name]), name
    return out, loaded


def naive(mode, x, w, D, H, factor, block):
    """Independent float64 evaluation of the semantics the C++ layer implements (cross-check only)."""
    T, d = x.shape[0], D // H
    pick = lambda suffix: next(v for k, v in w.items() if k.endswith(suffix))  # noqa: E731
    if mode == "compressed":
        ker, b = pick("conv2d/kernel"), pick("conv2d/bias")
        M = 1 + T // factor
        mem = np.zeros((M, D))
        mem[0] = x[0]
        for m in range(1, M):
            mem[m] = b + sum(x[(m - 1) * factor + t] @ ker[0, t] for t in range(factor))
        vis = lambda i, j: j * factor <= i  # noqa: E731
    else:
        mem = x
        vis = lambda i, j: j <= i and (T < 2 * block or j >= (i // block - 1) * block)  # noqa: E731
    q = x @ pick("/q/kernel") * d ** -0.5
    k, v = mem @ pick("/k/kernel"), mem @ pick("/v/kernel")
    ctx = np.zeros((T, D))
    for h in range(H):
        sl = slice(h * d, (h + 1) * d)
        for i in range(T):
            keys = [j for j in range(mem.shape[0]) if vis(i, j)]
            s = q[i, sl] @ k[keys, sl].T
            p = np.exp(s - s.max())
            ctx[i, sl] = (p / p.sum()) @ v[keys, sl]
    return ctx @ pick("output_transform/kernel")


def make_case(case, mode, T, D, H, factor, block, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 1.0, (T, D)).astype(np.float32).astype(np.float64)
    y, w = run_t2t(mode, x, D, H, factor, block, rng)
    err = np.abs(y - naive(mode, x, w, D, H, factor, block)).max()
    assert err < 1e-12, (case, err)
    tensors = [("input.x", x.astype(np.float32))]
    tensors += [(k, w[k].astype(np.float32)) for k in sorted(w)]  # exact: values are float32 values
    tensors.append(("output.y", y))  # F64, the reference's own precision
    if mode == "compressed":
        fn = "tensor2tensor.layers.common_attention.multihead_self_attention_reduced"
        call = f'factor={factor}, reduction_type="conv", add_mask=True, nonlinearity="none"'
    else:
        fn = "tensor2tensor.layers.common_attention.multihead_attention -> masked_local_attention_1d"
        call = f'attention_type="local_mask_right", block_length={block}'
    meta = {
        "layer": "memory_compressed_attention",
        "case": case,
        "generator": "tools/make_golden_t2t.py",
        "source": f"{fn} ({VERSIONS}; graph mode, float64)",
        "shims": ", ".join(SHIMS) + " (never used; see the script header)",
        "mode": mode,
        "hidden": str(D),
        "num_heads": str(H),
        "factor": str(factor if mode == "compressed" else 0),
        "block_length": str(block if mode == "local_block" else 0),
        "t2t_call": call,
        "t2t_multihead_params": json.dumps(dict(total_key_depth=D, total_value_depth=D, num_heads=H,
                                                dropout_rate=0.0), sort_keys=True),
        "naive_float64_max_abs_diff": f"{err:.3e}",
    }
    return tensors, meta


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=DEFAULT_OUT)
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    bad = 0
    for c in CASES:
        tensors, meta = make_case(*c)
        data = safetensors_bytes(tensors, meta)
        path = os.path.join(args.out, c[0] + ".safetensors")
        if args.check:
            with open(path, "rb") as f:
                same = f.read() == data
            bad += not same
            print(f"{'same' if same else 'DIFFERENT'}  {path}")
            continue
        with open(path, "wb") as f:
            f.write(data)
        back = safetensors.numpy.load_file(path)
        assert sorted(back) == sorted(n for n, _ in tensors)
        for n, a in tensors:
            assert back[n].dtype == a.dtype and np.array_equal(back[n], a), (path, n)
        with safetensors.safe_open(path, framework="np") as f:
            assert f.metadata() == meta, path
        print(f"{len(data):7d} bytes  {path}  (vs naive float64: {meta['naive_float64_max_abs_diff']})")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

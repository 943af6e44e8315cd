"""Shared by the tools/make_golden*.py scripts: a deterministic safetensors writer (sorted metadata,
fixed tensor order, header padded to 8 bytes; safetensors.torch.save_file orders __metadata__
differently on every run), its read-back check, metadata values, and the write-or-compare loop."""

import json
import os
import struct

import numpy as np
import torch
from safetensors import safe_open

_DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64",
           torch.int64: "I64", torch.int32: "I32", torch.uint8: "U8", torch.int8: "I8", torch.bool: "BOOL"}


def tensor_bytes(t):
    """The little-endian bytes of a tensor as safetensors stores them."""
    t = t.detach().contiguous().cpu()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().astype("<i2").tobytes()
    if t.dtype == torch.bool:
        return t.numpy().astype(np.uint8).tobytes()
    a = t.numpy()
    return a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()


def safetensors_bytes(tensors, metadata):
    """tensors: list of (name, tensor) in file order; metadata: dict str -> str."""
    header = {"__metadata__": {k: metadata[k] for k in sorted(metadata)}}
    blobs, offset = [], 0
    for name, t in tensors:
        b = tensor_bytes(t)
        header[name] = {"dtype": _DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    h = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    h += b" " * ((8 - len(h) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(blobs)


def verify_file(path, tensors, metadata):
    """Reads a written file back with the safetensors package and compares everything."""
    with safe_open(path, framework="pt") as f:
        assert f.metadata() == metadata, path
        assert sorted(f.keys()) == sorted(n for n, _ in tensors), path
        for name, t in tensors:
            assert torch.equal(f.get_tensor(name), t.contiguous()), (path, name)


def meta_value(v):
    """Config values as metadata strings: strings raw, everything else JSON text (as HF's to_dict)."""
    if isinstance(v, str):
        return v
    return json.dumps(v, sort_keys=True)


def write_or_check(out_dir, name, tensors, metadata, check, note=""):
    """Writes <out_dir>/<name>.safetensors (and verifies it), or with check compares it byte for byte
    with the file on disk. Returns (bytes, same) where same is False only for a differing file."""
    os.makedirs(out_dir, exist_ok=True)
    data = safetensors_bytes(tensors, metadata)
    path = os.path.join(out_dir, name + ".safetensors")
    if check:
        with open(path, "rb") as f:
            same = f.read() == data
        print(f"{'same' if same else 'DIFFERENT'}  {path}")
        return len(data), same
    with open(path, "wb") as f:
        f.write(data)
    verify_file(path, tensors, metadata)
    print(f"{len(data):7d} bytes  {path}{'  ' + note if note else ''}")
    return len(data), True

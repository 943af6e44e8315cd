"""A PyTorch (CPU) transcription of unilm YOCO, for tools/make_golden.py.

The unilm YOCO package is not pip-installable (it needs fairseq's model-parallel layers, flash_attn and
Triton kernels that only run on CUDA), so the golden cases of `gated_retention` and `yoco` come from
this transcription of its source, NOT from the original package. Transcribed from
github.com/microsoft/unilm at commit 7402b0eefe7eee5863c7b2c164a7b13cdc6425e6 (REFERENCE below):

  YOCO/yoco/models/decoder/gate_retention.py       GateRetention
  YOCO/yoco/models/decoder/kernel/gate_recurrent.py chunk_gate_retention, cross_chunk, inner_chunk,
                                                    recurrent_gate_retention, parallel_gate_retention,
                                                    naive_kv_recurrent (used for chunk_gate_recurrent)
  YOCO/yoco/models/decoder/yoco.py                 DecoderLayer, SelfDecoder, CrossDecoder, YOCO
  YOCO/yoco/models/decoder/cross_attention.py      CrossAttention
  YOCO/yoco/models/decoder/sliding_window_attention.py  SlidingWindowAttention (file at commit
                                                    53ed1159c596f33af5b228f6041f6d7ffee963c0)
  YOCO/yoco/models/decoder/feedforward_network.py  FeedForwardNetwork
  YOCO/yoco/models/decoder/rms_norm.py             RMSNorm
  YOCO/yoco/models/decoder/kernel/swiglu.py        swiglu (the jiterator formula)
  YOCO/yoco/models/decoder/kernel/rotary.py        apply_rotary_emb, interleaved=True (the Triton formula)

Substitutions (the only departures from the source, each computing the same function on a CPU):
  - ColumnParallelLinear / RowParallelLinear (model_parallel_size 1) -> nn.Linear(bias=False), same
    weight layout [out, in] and module names;
  - the Triton rotary kernel -> its formula in PyTorch (float32); the Triton ChunkGateRecurrent ->
    the file's own naive_kv_recurrent (its reference loop), on the CPU;
  - flash_attn_func(q, k, v, causal=True[, window_size=(left, 0)]) -> eager softmax(q k^T / sqrt(head_dim)) v
    with flash-attn 2's causal mask for seqlen_q != seqlen_k (aligned to the bottom-right corner: query i
    sees keys j <= i + seqlen_k - seqlen_q), its local window (also keys j >= i + seqlen_k - seqlen_q - left)
    and its GQA head mapping (query head h reads kv head h // (n_heads / n_kv_heads));
  - the chunk size (256 in the source, both SelfDecoder.block_size and the chunk_size=256 argument of
    chunk_gate_retention in GateRetention.forward) is a parameter `block_size` here, so that small
    cases have several chunks; the default is 256;
  - YOCO.forward without embed_tokens / embed_scale and output_projection: it takes the embedded tokens
    and returns layer_norm of the last hidden states (what eigenformer's YOCO covers);
  - the sliding-window cache (incremental_state prev_key / prev_value) is allocated with the batch as
    given instead of args.max_batch_size; no checkpoint_activations, batch as given.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

REFERENCE = ("microsoft/unilm@7402b0eefe7eee5863c7b2c164a7b13cdc6425e6 YOCO/yoco/models/decoder/"
             "{gate_retention.py, kernel/gate_recurrent.py, yoco.py, cross_attention.py, feedforward_network.py, "
             "rms_norm.py, kernel/swiglu.py, kernel/rotary.py}, sliding_window_attention.py@53ed1159c596")


class YOCOArgs:
    def __init__(self, dim, n_layers, hidden_dim, n_self_heads, n_attn_heads, n_attn_kv_heads, max_seq_len=-1,
                 rope_theta=10000.0, norm_eps=1e-5, block_size=256, sliding_window=None):
        self.dim, self.n_layers, self.hidden_dim = dim, n_layers, hidden_dim
        self.n_self_heads, self.n_attn_heads, self.n_attn_kv_heads = n_self_heads, n_attn_heads, n_attn_kv_heads
        self.max_seq_len, self.rope_theta, self.norm_eps = max_seq_len, rope_theta, norm_eps
        self.model_parallel_size = 1
        self.sliding_window = sliding_window
        self.block_size = block_size  # the source's 256 (see the module docstring)


# --- rms_norm.py ---------------------------------------------------------------------------------

class RMSNorm(nn.Module):
    def __init__(self, dim, eps=1e-6, elementwise_affine=True):
        super().__init__()
        self.dim, self.eps, self.elementwise_affine = dim, eps, elementwise_affine
        if elementwise_affine:
            self.weight = nn.Parameter(torch.ones(dim))
        else:
            self.register_parameter("weight", None)

    def _norm(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)

    def forward(self, x):
        output = self._norm(x.float()).type_as(x)
        if self.weight is not None:
            output = output * self.weight
        return output


# --- kernel/swiglu.py, kernel/rotary.py ------------------------------------------------------------

def swiglu(x, y):
    """swiglu_fwd: float(x) * float(y) / (1 + exp(-float(x)))."""
    xf, yf = x.float(), y.float()
    return (xf * yf / (1.0 + torch.exp(-xf))).to(x.dtype)


def apply_rotary_emb(x, cos, sin, interleaved=False):
    """rotary_kernel with INTERLEAVED: out[2j] = x[2j] cos_j - x[2j+1] sin_j, out[2j+1] = x[2j+1] cos_j +
    x[2j] sin_j, in float32; x [b, s, h, d], cos/sin [s, rotary_dim / 2] (rotary_dim = d here)."""
    assert interleaved
    b, s, h, d = x.shape
    r = cos.shape[-1] * 2
    xf = x.float()
    x0, x1 = xf[..., 0:r:2], xf[..., 1:r:2]
    c, sn = cos.float()[None, :s, None, :], sin.float()[None, :s, None, :]
    out = xf.clone()
    out[..., 0:r:2] = x0 * c - x1 * sn
    out[..., 1:r:2] = x1 * c + x0 * sn
    return out.to(x.dtype)


# --- kernel/gate_recurrent.py --------------------------------------------------------------------

def naive_kv_recurrent(kv, cross_decay, last_kv=None):
    BSZ, NUM_HEAD, NUM_BLOCK, D_MODEL_K, D_MODEL_V = kv.shape
    kv_recurrent = []
    kv_state = torch.zeros(BSZ, NUM_HEAD, D_MODEL_K, D_MODEL_V, dtype=kv.dtype) if last_kv is None else last_kv
    for i in range(NUM_BLOCK):
        kv_recurrent.append(kv_state)
        kv_state = kv_state * cross_decay[:, :, i, None, None] + kv[:, :, i]
    return torch.stack(kv_recurrent, dim=2)


chunk_gate_recurrent = naive_kv_recurrent  # ChunkGateRecurrent.forward computes the same on CUDA


def cross_chunk(q, k, v, g, last_hidden_state=None):
    kv = k.transpose(-1, -2) @ (v * (-g + g[:, :, :, -1, None]).exp()[..., None].to(v.dtype))
    cross_decay = g[:, :, :, -1].exp().to(kv.dtype)
    S = chunk_gate_recurrent(kv, cross_decay, last_hidden_state)
    cross = (q * g[..., None].exp().to(q.dtype)) @ S
    return cross


def inner_chunk(q, k, v, g):
    attn = q @ k.transpose(-1, -2)
    causal_mask = torch.full([q.shape[-2], q.shape[-2]], float("-inf"), device=q.device).triu(1).type_as(q)
    attn = attn * (g[..., None] - g[..., None, :] + causal_mask).exp().to(attn.dtype)
    inner = attn @ v
    return inner


def chunk_gate_retention(q, k, v, g, chunk_size=64, last_hidden_state=None):
    bsz, num_head, tgt_len, key_dim = q.shape
    head_dim = v.shape[-1]
    num_chunk = tgt_len // chunk_size
    q = q.reshape(bsz, num_head, num_chunk, chunk_size, key_dim)
    k = k.reshape(bsz, num_head, num_chunk, chunk_size, key_dim) * (key_dim ** -0.5)
    v = v.reshape(bsz, num_head, num_chunk, chunk_size, head_dim)
    g = g.reshape(bsz, num_head, num_chunk, chunk_size)
    g = g.float().cumsum(-1)
    cross = cross_chunk(q, k, v, g, last_hidden_state=last_hidden_state)
    inner = inner_chunk(q, k, v, g)
    o = cross + inner
    return o.view(bsz, num_head, tgt_len, head_dim)


def recurrent_gate_retention(q, k, v, g, incremental_state):
    bsz, num_head, _, key_dim = q.shape
    k *= key_dim ** -0.5
    g = g.view(bsz, num_head, 1, 1).float().exp()
    kv = k.transpose(-1, -2) * v
    if "last_hidden_state" in incremental_state:
        prev_kv = incremental_state["last_hidden_state"]
        kv += prev_kv * g.to(prev_kv.dtype)
    incremental_state["last_hidden_state"] = kv
    o = q @ kv
    return o


def parallel_gate_retention(q, k, v, g):
    k = k * (q.shape[-1] ** -0.5)
    causal_mask = torch.full([q.shape[-2], q.shape[-2]], float("-inf"), device=q.device).triu(1).type_as(q)
    g = g.float().cumsum(-1)
    mask = g[..., None] - g[..., None, :] + causal_mask
    mask = mask.exp()
    attn = q @ k.transpose(-1, -2)
    attn = attn * mask.to(attn.dtype)
    return attn @ v


# --- gate_retention.py ---------------------------------------------------------------------------

class GateRetention(nn.Module):
    def __init__(self, args, gate_logit_normalizer=16):
        super().__init__()
        self.args = args
        self.embed_dim = args.dim
        self.num_heads = args.n_self_heads // args.model_parallel_size
        self.head_dim = args.dim // args.n_self_heads
        self.q_proj = nn.Linear(args.dim, args.dim, bias=False)
        self.k_proj = nn.Linear(args.dim, args.dim, bias=False)
        self.v_proj = nn.Linear(args.dim, args.dim, bias=False)
        self.g_proj = nn.Linear(args.dim, args.dim, bias=False)
        self.gt_proj = nn.Linear(args.dim, args.n_self_heads, bias=False)
        self.out_proj = nn.Linear(args.dim, args.dim, bias=False)
        self.subln = RMSNorm(self.head_dim, elementwise_affine=False, eps=args.norm_eps)
        self.gate_logit_normalizer = gate_logit_normalizer

    def forward(self, x, rel_pos, incremental_state=None, is_prefilling=False):
        bsz, tgt_len, _ = x.size()
        q, k, v, g, gt = self.q_proj(x), self.k_proj(x), self.v_proj(x), self.g_proj(x), self.gt_proj(x)
        qr = q.view(bsz, tgt_len, self.num_heads, self.head_dim)
        kr = k.view(bsz, tgt_len, self.num_heads, self.head_dim)
        v = v.view(bsz, tgt_len, self.num_heads, self.head_dim).transpose(1, 2)
        gt = gt.view(bsz, tgt_len, self.num_heads).transpose(1, 2)
        qr = apply_rotary_emb(qr, *rel_pos, interleaved=True).transpose(1, 2)
        kr = apply_rotary_emb(kr, *rel_pos, interleaved=True).transpose(1, 2)
        gt = F.logsigmoid(gt) / self.gate_logit_normalizer
        chunk = self.args.block_size  # the source: chunk_size=256
        if incremental_state is not None and not is_prefilling:
            o = recurrent_gate_retention(qr, kr, v, gt, incremental_state)
        else:
            if incremental_state is not None:
                index_mask = incremental_state["index_mask"]
                gt_sum = gt.float().masked_fill(index_mask, 0).sum(dim=-1, keepdim=True)
                gt_mask = (gt_sum - gt.float().cumsum(dim=-1)).exp().masked_fill(index_mask, 0)
                next_hidden_state = (kr.transpose(-1, -2) * (self.head_dim ** -0.5)) @ (
                    v * gt_mask.to(v.dtype).unsqueeze(-1))
                if "last_hidden_state" in incremental_state:
                    last_hidden_state = incremental_state["last_hidden_state"]
                    next_hidden_state += (last_hidden_state * gt_sum.exp().unsqueeze(-1).to(v.dtype)
                                          if last_hidden_state is not None else 0)
                else:
                    last_hidden_state = None
                incremental_state["last_hidden_state"] = next_hidden_state
                o = chunk_gate_retention(qr, kr, v, gt, chunk_size=chunk, last_hidden_state=last_hidden_state)
            else:
                o = chunk_gate_retention(qr, kr, v, gt, chunk_size=chunk)
        o = self.subln(o).transpose(1, 2).reshape(bsz, tgt_len, self.num_heads * self.head_dim)
        o = swiglu(g, o)
        o = self.out_proj(o)
        return o


# --- cross_attention.py, feedforward_network.py --------------------------------------------------

def flash_attn_func(q, k, v, causal=True, window_size=(-1, -1)):
    """Eager flash_attn_func: q [b, sq, h, d], k/v [b, sk, hk, d]; softmax_scale d^-0.5; causal aligned
    to the bottom-right corner (flash-attn >= 2.1); window_size[0] >= 0: query i also needs
    j >= i + sk - sq - window_size[0]; GQA: query head h reads kv head h // (h / hk)."""
    b, sq, h, d = q.shape
    sk, hk = k.shape[1], k.shape[2]
    rep = h // hk
    kx = k.repeat_interleave(rep, dim=2).transpose(1, 2).float()
    vx = v.repeat_interleave(rep, dim=2).transpose(1, 2).float()
    s = (q.transpose(1, 2).float() @ kx.transpose(-1, -2)) * (d ** -0.5)
    if causal:
        i = torch.arange(sq)[:, None]
        j = torch.arange(sk)[None, :]
        s = s.masked_fill(j > i + (sk - sq), float("-inf"))
    if window_size[0] >= 0:
        i = torch.arange(sq)[:, None]
        j = torch.arange(sk)[None, :]
        s = s.masked_fill(j < i + (sk - sq) - window_size[0], float("-inf"))
    p = torch.softmax(s, dim=-1)
    return (p @ vx).transpose(1, 2).to(q.dtype)


class CrossAttention(nn.Module):
    def __init__(self, args):
        super().__init__()
        self.args = args
        self.embed_dim = args.dim
        self.num_heads = args.n_attn_heads // args.model_parallel_size
        self.num_kv_heads = args.n_attn_kv_heads // args.model_parallel_size
        self.head_dim = args.dim // args.n_attn_heads
        self.q_proj = nn.Linear(args.dim, args.dim, bias=False)
        self.out_proj = nn.Linear(args.dim, args.dim, bias=False)

    def forward(self, x, key, value, rel_pos):
        bsz, tgt_len, _ = x.size()
        q = self.q_proj(x)
        q = q.view(bsz, tgt_len, self.num_heads, self.head_dim)
        q = apply_rotary_emb(q, *rel_pos, interleaved=True)
        attn = flash_attn_func(q, key, value, causal=True)
        attn = attn.reshape(bsz, tgt_len, self.head_dim * self.num_heads)
        return self.out_proj(attn)


# --- sliding_window_attention.py ------------------------------------------------------------------

class SlidingWindowAttention(nn.Module):
    def __init__(self, args):
        super().__init__()
        self.args = args
        self.embed_dim = args.dim
        self.num_heads = args.n_self_heads // args.model_parallel_size
        self.window_size = args.sliding_window
        self.head_dim = args.dim // args.n_self_heads
        self.q_proj = nn.Linear(args.dim, args.dim, bias=False)
        self.k_proj = nn.Linear(args.dim, args.dim, bias=False)
        self.v_proj = nn.Linear(args.dim, args.dim, bias=False)
        self.out_proj = nn.Linear(args.dim, args.dim, bias=False)

    def forward(self, x, rel_pos, start_pos=0, incremental_state=None):
        bsz, tgt_len, _ = x.size()
        q = self.q_proj(x).view(bsz, tgt_len, self.num_heads, self.head_dim)
        k = self.k_proj(x).view(bsz, tgt_len, self.num_heads, self.head_dim)
        v = self.v_proj(x).view(bsz, tgt_len, self.num_heads, self.head_dim)
        q = apply_rotary_emb(q, *rel_pos, interleaved=True)
        k = apply_rotary_emb(k, *rel_pos, interleaved=True)
        if incremental_state is not None:
            if "prev_key" not in incremental_state:
                shape = (bsz, self.window_size, self.num_heads, self.head_dim)
                incremental_state["prev_key"] = torch.empty(shape, dtype=x.dtype)
                incremental_state["prev_value"] = torch.empty(shape, dtype=x.dtype)
            key = torch.cat([incremental_state["prev_key"][:bsz, :start_pos], k], dim=1)
            value = torch.cat([incremental_state["prev_value"][:bsz, :start_pos], v], dim=1)
            if key.shape[1] > self.window_size:
                incremental_state["prev_key"][:bsz] = key[:, -self.window_size:]
                incremental_state["prev_value"][:bsz] = value[:, -self.window_size:]
            else:
                incremental_state["prev_key"][:bsz, start_pos:start_pos + tgt_len] = k
                incremental_state["prev_value"][:bsz, start_pos:start_pos + tgt_len] = v
        else:
            key, value = k, v
        attn = flash_attn_func(q, key, value, causal=True, window_size=(self.window_size - 1, 0))
        attn = attn.reshape(bsz, tgt_len, self.head_dim * self.num_heads)
        return self.out_proj(attn)


class FeedForwardNetwork(nn.Module):
    def __init__(self, embed_dim, ffn_dim, load_checkpoint=False):
        super().__init__()
        self.embed_dim = embed_dim
        self.fc1 = nn.Linear(embed_dim, ffn_dim, bias=False)
        self.gate = nn.Linear(embed_dim, ffn_dim, bias=False)
        self.fc2 = nn.Linear(ffn_dim, embed_dim, bias=False)

    def forward(self, x):
        x_shape = x.shape
        x = x.reshape(-1, x.size(-1))
        x = self.fc2(swiglu(self.fc1(x), self.gate(x)))
        return x.view(x_shape)


# --- yoco.py -------------------------------------------------------------------------------------

class DecoderLayer(nn.Module):
    def __init__(self, args, is_cross_layer=False):
        super().__init__()
        self.args = args
        self.is_cross_layer = is_cross_layer
        if is_cross_layer:
            self.mixer = CrossAttention(args)
        elif args.sliding_window is not None:
            self.mixer = SlidingWindowAttention(args)
        else:
            self.mixer = GateRetention(args)
        self.mixer_layer_norm = RMSNorm(args.dim, eps=args.norm_eps)
        self.ffn = FeedForwardNetwork(args.dim, args.hidden_dim)
        self.final_layer_norm = RMSNorm(args.dim, eps=args.norm_eps)

    def forward(self, x, start_pos=0, key=None, value=None, rel_pos=None, incremental_state=None,
                is_prefilling=False):
        residual = x
        x = self.mixer_layer_norm(x)
        if self.is_cross_layer:
            x = self.mixer(x, key, value, rel_pos=rel_pos)
        elif self.args.sliding_window is not None:
            x = self.mixer(x, rel_pos=rel_pos, start_pos=start_pos, incremental_state=incremental_state)
        else:
            x = self.mixer(x, rel_pos=rel_pos, incremental_state=incremental_state, is_prefilling=is_prefilling)
        x = x + residual
        residual = x
        x = self.final_layer_norm(x)
        x = self.ffn(x)
        return x + residual


def build_rel_pos_table(args, head_dim):
    angle = 1.0 / (args.rope_theta ** torch.linspace(0, 1, head_dim // 2, dtype=torch.float))
    index = torch.arange(args.max_seq_len).to(angle)
    return index[:, None] * angle


class SelfDecoder(nn.Module):
    def __init__(self, args):
        super().__init__()
        self.args = args
        self.layers = nn.ModuleList([DecoderLayer(args, is_cross_layer=False) for _ in range(args.n_layers // 2)])
        self.head_dim = args.dim // args.n_self_heads
        self.block_size = args.block_size  # the source: 256
        self._precomputed_freqs_cis = None

    def build_rel_pos(self, x, start_pos):
        if self._precomputed_freqs_cis is None:
            self._precomputed_freqs_cis = build_rel_pos_table(self.args, self.head_dim)
        cos = torch.cos(self._precomputed_freqs_cis[start_pos:start_pos + x.size(1)])
        sin = torch.sin(self._precomputed_freqs_cis[start_pos:start_pos + x.size(1)])
        return cos.to(x.dtype), sin.to(x.dtype)

    def get_index_mask(self, x, length, pad_length):
        return torch.arange(pad_length, device=x.device) >= length

    def forward(self, x, incremental_state=None, is_prefilling=False, start_pos=0):
        if is_prefilling and x.size(1) % self.block_size != 0 and self.args.sliding_window is None:
            padding_len = self.block_size - x.size(1) % self.block_size
            x = F.pad(x, (0, 0, 0, padding_len), value=0)
        else:
            padding_len = 0
        if incremental_state is not None and is_prefilling:
            index_mask = self.get_index_mask(x, x.size(1) - padding_len, x.size(1))
        rel_pos = self.build_rel_pos(x, start_pos)
        for idx, layer in enumerate(self.layers):
            if incremental_state is not None:
                if idx not in incremental_state:
                    incremental_state[idx] = {}
                if is_prefilling:
                    incremental_state[idx]["index_mask"] = index_mask
            x = layer(x, start_pos=start_pos, rel_pos=rel_pos,
                      incremental_state=incremental_state[idx] if incremental_state is not None else None,
                      is_prefilling=is_prefilling)
        return x[:, :x.size(1) - padding_len, :]


class CrossDecoder(nn.Module):
    def __init__(self, args):
        super().__init__()
        self.args = args
        self.num_heads = args.n_attn_kv_heads
        self.head_dim = args.dim // args.n_attn_heads
        self.k_proj = nn.Linear(args.dim, self.head_dim * args.n_attn_kv_heads, bias=False)
        self.v_proj = nn.Linear(args.dim, self.head_dim * args.n_attn_kv_heads, bias=False)
        self.kv_layer_norm = RMSNorm(args.dim, eps=args.norm_eps)
        self.layers = nn.ModuleList([DecoderLayer(args, is_cross_layer=True) for _ in range(args.n_layers // 2)])
        self._precomputed_freqs_cis = None

    def build_rel_pos(self, x, start_pos):
        if self._precomputed_freqs_cis is None:
            self._precomputed_freqs_cis = build_rel_pos_table(self.args, self.head_dim)
        cos = torch.cos(self._precomputed_freqs_cis[start_pos:start_pos + x.size(1)])
        sin = torch.sin(self._precomputed_freqs_cis[start_pos:start_pos + x.size(1)])
        return cos.to(x.dtype), sin.to(x.dtype)

    def forward(self, x, incremental_state=None, start_pos=0, skip_cross_decoder=False):
        bsz, seqlen, embed_dim = x.size()
        x_norm = self.kv_layer_norm(x)
        key, value = self.k_proj(x_norm), self.v_proj(x_norm)
        key = key.view(bsz, seqlen, self.num_heads, self.head_dim)
        value = value.view(bsz, seqlen, self.num_heads, self.head_dim)
        rel_pos = self.build_rel_pos(x, start_pos)
        key = apply_rotary_emb(key, *rel_pos, interleaved=True)
        if incremental_state is not None:
            if "prev_key" not in incremental_state:
                incremental_state["prev_key"] = torch.empty(bsz, self.args.max_seq_len, self.num_heads,
                                                            self.head_dim, dtype=x.dtype)
                incremental_state["prev_value"] = torch.empty(bsz, self.args.max_seq_len, self.num_heads,
                                                              self.head_dim, dtype=x.dtype)
            incremental_state["prev_key"][:, start_pos:start_pos + seqlen] = key
            incremental_state["prev_value"][:, start_pos:start_pos + seqlen] = value
            key = incremental_state["prev_key"][:, :start_pos + seqlen]
            value = incremental_state["prev_value"][:, :start_pos + seqlen]
        if skip_cross_decoder:
            return torch.zeros(bsz, 1, embed_dim, dtype=x.dtype)
        for layer in self.layers:
            x = layer(x, key=key, value=value, rel_pos=rel_pos)
        return x


class YOCO(nn.Module):
    """YOCO without embed_tokens / embed_scale and output_projection (see the module docstring)."""

    def __init__(self, args):
        super().__init__()
        self.args = args
        self.self_decoder = SelfDecoder(args)
        self.cross_decoder = CrossDecoder(args)
        self.layer_norm = RMSNorm(args.dim, eps=args.norm_eps)

    def forward(self, x, start_pos=0, incremental_state=None, is_prefilling=True, skip_cross_decoder=False):
        x = self.self_decoder(x, incremental_state=incremental_state, is_prefilling=is_prefilling,
                              start_pos=start_pos)
        x = self.cross_decoder(x, start_pos=start_pos, incremental_state=incremental_state,
                               skip_cross_decoder=skip_cross_decoder)
        return self.layer_norm(x)


def gate_retention_rel_pos(args, start_pos, length):
    """SelfDecoder.build_rel_pos for a bare GateRetention."""
    table = build_rel_pos_table(args, args.dim // args.n_self_heads)
    return torch.cos(table[start_pos:start_pos + length]), torch.sin(table[start_pos:start_pos + length])


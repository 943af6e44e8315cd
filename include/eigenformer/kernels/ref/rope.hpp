#pragma once
// Scalar reference twins of the rotary-embedding kernels (kernels/rope.hpp): plain loops over the
// textbook rotation of each pair (a, b) by an angle with cosine c and sine s,
//   a' = a c - b s,   b' = b c + a s,
// in the caller's precision (float, or double for test references).
//
// This is Hugging Face's `q * cos + rotate_half(q) * sin` (transformers models/llama/modeling_llama.py
// apply_rotary_pos_emb) for the half layout and GPT-J's `tensor * cos + rotate_every_two(tensor) * sin`
// (models/gptj/modeling_gptj.py) for the interleaved one; PyTorch rounds each product and the sum
// separately, as these twins do (every product is its own statement, so no FMA contraction).

#include <cstddef>

#include "../../config.hpp"

namespace eigenformer {
inline namespace EIGENFORMER_ABI_NAMESPACE {
namespace kernels {
namespace ref {

/// Half layout (GPT-NeoX, Llama `rotate_half`): pair i is (x[i], x[i + half]), i < half.
/// x: [2 * half], rotated in place; cos, sin: [half].
template <class T>
void rope_half(T* x, const T* cos, const T* sin, std::size_t half) {
  for (std::size_t i = 0; i < half; ++i) {
    const T a = x[i], b = x[i + half];
    const T ac = a * cos[i];
    const T bs = b * sin[i];
    const T bc = b * cos[i];
    const T as = a * sin[i];
    x[i] = ac - bs;
    x[i + half] = bc + as;
  }
}

/// Interleaved layout (GPT-J, RoFormer, DeepSeek-V2 checkpoints): pair i is (x[2i], x[2i + 1]).
/// x: [2 * half], rotated in place; cos, sin: [half].
template <class T>
void rope_interleaved(T* x, const T* cos, const T* sin, std::size_t half) {
  for (std::size_t i = 0; i < half; ++i) {
    const T a = x[2 * i], b = x[2 * i + 1];
    const T ac = a * cos[i];
    const T bs = b * sin[i];
    const T bc = b * cos[i];
    const T as = a * sin[i];
    x[2 * i] = ac - bs;
    x[2 * i + 1] = bc + as;
  }
}

}  // namespace ref
}  // namespace kernels
}  // namespace EIGENFORMER_ABI_NAMESPACE
}  // namespace eigenformer

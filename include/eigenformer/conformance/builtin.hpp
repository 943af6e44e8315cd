#pragma once
// The layers eigenformer-run and the conformance tests know: the one place a new layer registers.
//
// To add a layer: write `inline void register_<layer>(Registry&)` (see registry.hpp for the API and
// layers/dense.hpp for short examples) in conformance/layers/<family>.hpp, include it here and add
// one line to register_builtin_layers(). Its cases then run through eigenformer-run, appear in
// `eigenformer-run --list` (regenerate docs/conformance.md), and every golden case under
// tests/data/golden/run/ naming it is checked by tests/test_conformance.cpp.

#include "layers/attention.hpp"
#include "layers/bitnet.hpp"
#include "layers/dense.hpp"
#include "layers/kan.hpp"
#include "layers/mla.hpp"
#include "layers/retention.hpp"
#include "layers/sparse.hpp"
#include "layers/yoco.hpp"
#include "registry.hpp"

namespace eigenformer {
namespace conformance {
inline namespace EIGENFORMER_ABI_NAMESPACE {

inline void register_builtin_layers(Registry& r) {
  register_linear(r);
  register_mlp(r);
  register_rms_norm(r);
  register_layer_norm(r);
  register_embedding(r);
  register_attention(r);
  register_mla(r);
  register_sparse_attention(r);
  register_bit_linear(r);
  register_bitnet_layer(r);
  register_retention(r);
  register_retnet_layer(r);
  register_gated_retention(r);
  register_yoco(r);
  register_kan_linear(r);
  register_fast_kan_layer(r);
  register_cheby_kan_layer(r);
}

/// The registry with every built-in layer (built on first use; add your own layers to it before
/// running cases, or build a separate Registry).
inline Registry& registry() {
  static Registry r = [] {
    Registry x;
    register_builtin_layers(x);
    return x;
  }();
  return r;
}

}  // namespace EIGENFORMER_ABI_NAMESPACE
}  // namespace conformance
}  // namespace eigenformer

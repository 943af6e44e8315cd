#pragma once
// The layers eigenformer-run and the conformance tests know: the one place a new layer registers.
//
// To add a layer: write `inline void register_<layer>(Registry&)` (see registry.hpp for the API and
// layers/dense.hpp for short examples) in conformance/layers/<family>.hpp, include it here and add
// one line to register_builtin_layers(). Its cases then run through eigenformer-run, appear in
// `eigenformer-run --list` (regenerate docs/conformance.md), and every golden case under
// tests/data/golden/run/ naming it is checked by tests/test_conformance.cpp.

#include "registry.hpp"
#if !defined(EIGENFORMER_CONFORMANCE_REGISTRY_EXTERN)
#include "layers/attention.hpp"
#include "layers/bitnet.hpp"
#include "layers/dense.hpp"
#include "layers/kan.hpp"
#include "layers/mla.hpp"
#include "layers/retention.hpp"
#include "layers/sparse.hpp"
#include "layers/yoco.hpp"
#endif

namespace eigenformer {
namespace conformance {
inline namespace EIGENFORMER_ABI_NAMESPACE {

#if !defined(EIGENFORMER_CONFORMANCE_REGISTRY_EXTERN)
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
#endif

// registry() is inline (header-only) unless a program compiles it once for several translation units:
// EIGENFORMER_CONFORMANCE_REGISTRY_DEFINE in the one that defines it (an ordinary function there),
// EIGENFORMER_CONFORMANCE_REGISTRY_EXTERN in those that only call it (they see neither the layers'
// registrations nor register_builtin_layers). eigenformer-run and test_conformance share
// tools/eigenformer-run/registry.cpp this way: instantiating every layer behind the registry is most
// of the compile time of each of them.
#if defined(EIGENFORMER_CONFORMANCE_REGISTRY_EXTERN)
Registry& registry();
#else
#if defined(EIGENFORMER_CONFORMANCE_REGISTRY_DEFINE)
#define EIGENFORMER_CONFORMANCE_REGISTRY_INLINE
#else
#define EIGENFORMER_CONFORMANCE_REGISTRY_INLINE inline
#endif
/// The registry with every built-in layer (built on first use; add your own layers to it before
/// running cases, or build a separate Registry).
EIGENFORMER_CONFORMANCE_REGISTRY_INLINE Registry& registry() {
  static Registry r = [] {
    Registry x;
    register_builtin_layers(x);
    return x;
  }();
  return r;
}
#undef EIGENFORMER_CONFORMANCE_REGISTRY_INLINE
#endif

}  // namespace EIGENFORMER_ABI_NAMESPACE
}  // namespace conformance
}  // namespace eigenformer

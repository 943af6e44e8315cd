// The built-in conformance registry, compiled once and linked into eigenformer-run and
// test_conformance (they include the conformance headers with EIGENFORMER_CONFORMANCE_REGISTRY_EXTERN,
// set by the eigenformer_conformance_registry object library; see conformance/builtin.hpp).
#define EIGENFORMER_CONFORMANCE_REGISTRY_DEFINE
#include <eigenformer/conformance/builtin.hpp>

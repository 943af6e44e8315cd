// Appended by scripts/clang-tidy.sh to its translation unit (which includes every header under
// include/eigenformer/): explicit instantiations, so that clang-tidy also sees the class templates'
// member functions with concrete types, not only their dependent (uninstantiated) form.
#pragma once

namespace eigenformer {
template class Workspace<float>;
template class Linear<float>;
template class MLP<float>;
template class RMSNorm<float>;
template class LayerNorm<float>;
template class Embedding<float>;
template class KVCache<float>;
template class LatentCache<float>;
template class BasicMultiHeadAttention<Linear<float>>;
template class MultiScaleRetention<float>;
template class GatedRetention<float>;
template class RetNetDecoderLayer<float>;
template class KANLinear<float>;
template class KAN<float>;
template class FastKANLayer<float>;
template class ChebyKANLayer<float>;
template class KANFFN<float>;
template class Adam<float>;
}  // namespace eigenformer

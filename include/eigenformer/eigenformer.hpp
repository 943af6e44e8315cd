#pragma once
// Umbrella header: everything eigenformer has. Each header also stands alone; include only what
// you use to keep compile times down.

#include "version.hpp"
#include "config.hpp"

#include "core/activation.hpp"
#include "core/error.hpp"
#include "core/half.hpp"
#include "core/naming.hpp"
#include "core/tensor.hpp"
#include "core/threading.hpp"
#include "core/workspace.hpp"

#include "kernels/elementwise.hpp"
#include "kernels/gemm.hpp"
#include "kernels/ternary.hpp"
#include "kernels/norm.hpp"
#include "kernels/softmax.hpp"

#include "ops/activation.hpp"
#include "ops/attention.hpp"
#include "ops/dilated_attention.hpp"
#include "ops/sparse_patterns.hpp"
#include "ops/norm.hpp"
#include "ops/softmax.hpp"

#include "io/safetensors.hpp"

#include "position/alibi.hpp"
#include "position/rope.hpp"
#include "position/xpos.hpp"

#include "attention/bigbird.hpp"
#include "attention/longformer.hpp"
#include "attention/memory_compressed.hpp"
#include "attention/mla.hpp"
#include "attention/multi_head_attention.hpp"
#include "cache/kv_cache.hpp"
#include "cache/latent_cache.hpp"

#include "embedding/embedding.hpp"
#include "ffn/bitnet_block.hpp"
#include "ffn/mlp.hpp"
#include "linear/bit_linear.hpp"
#include "linear/linear.hpp"
#include "norm/layer_norm.hpp"
#include "norm/rms_norm.hpp"
#include "retention/multiscale_retention.hpp"
#include "retention/gated_retention.hpp"
#include "retention/retnet_block.hpp"
#include "retention/yoco.hpp"
#include "model/decoder.hpp"
#include "model/decoder_config.hpp"
#include "model/generate.hpp"

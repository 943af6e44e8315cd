#pragma once
// Activation functions by name, with the names Hugging Face configs use (`hidden_act`).

#include <string>
#include <string_view>

#include "error.hpp"

namespace eigenformer {

enum class Activation {
  identity,   ///< "linear", "identity"
  relu,       ///< "relu"
  relu2,      ///< "relu2": max(x, 0)^2 (Primer, BitNet b1.58)
  silu,       ///< "silu", "swish": x * sigmoid(x) (Llama SwiGLU)
  gelu_erf,   ///< "gelu": 0.5 x (1 + erf(x / sqrt 2)) (BERT, GeGLU)
  gelu_tanh,  ///< "gelu_new", "gelu_pytorch_tanh", "gelu_fast": tanh approximation (GPT-2, T5 v1.1, Gemma)
};

inline const char* to_string(Activation a) noexcept {
  switch (a) {
    case Activation::identity: return "identity";
    case Activation::relu: return "relu";
    case Activation::relu2: return "relu2";
    case Activation::silu: return "silu";
    case Activation::gelu_erf: return "gelu";
    case Activation::gelu_tanh: return "gelu_pytorch_tanh";
  }
  return "?";
}

/// Parse a Hugging Face `hidden_act` name; unknown names throw ErrorKind::config.
inline Activation parse_activation(std::string_view name, std::string_view where = "activation") {
  if (name == "silu" || name == "swish") return Activation::silu;
  if (name == "gelu") return Activation::gelu_erf;
  if (name == "gelu_new" || name == "gelu_pytorch_tanh" || name == "gelu_fast") return Activation::gelu_tanh;
  if (name == "relu") return Activation::relu;
  if (name == "relu2") return Activation::relu2;
  if (name == "linear" || name == "identity") return Activation::identity;
  fail(ErrorKind::config, where, "unknown activation '", name,
       "' (known: silu, swish, gelu, gelu_new, gelu_pytorch_tanh, gelu_fast, relu, relu2, linear)");
}

}  // namespace eigenformer

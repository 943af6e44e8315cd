#pragma once
// Checkpoint names: layers load themselves from a safetensors file under a prefix, with the tensor
// names of the reference implementation they follow, e.g. prefix "model.layers.0.mlp.up_proj" and
// leaf "weight" give "model.layers.0.mlp.up_proj.weight".

#include <string>
#include <string_view>

namespace eigenformer {

/// prefix + "." + leaf, or just the non-empty one.
inline std::string join_name(std::string_view prefix, std::string_view leaf) {
  std::string s(prefix);
  if (!s.empty() && !leaf.empty() && s.back() != '.') s += '.';
  s += leaf;
  return s;
}

}  // namespace eigenformer

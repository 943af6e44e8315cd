#pragma once
// Conformance declarations of the KAN layers (docs/kan.md): kan_linear (efficient-kan's KANLinear),
// fast_kan_layer (fast-kan's FastKANLayer), cheby_kan_layer (ChebyKAN's ChebyKANLayer). The golden cases
// come from PyTorch transcriptions of their sources (tools/efficient_kan_reference.py).

#include <string>

#include "../../kan/cheby_kan.hpp"
#include "../../kan/fast_kan.hpp"
#include "../../kan/kan_linear.hpp"
#include "../registry.hpp"

namespace eigenformer {
namespace conformance {
inline namespace EIGENFORMER_ABI_NAMESPACE {

/// efficient-kan KANLinear.
inline void register_kan_linear(Registry& r) {
  LayerSpec s("kan_linear", "efficient-kan `KANLinear` (src/efficient_kan/kan.py)",
              "y = base_weight silu(x) + (spline_weight * spline_scaler) B(x), B: order-k B-splines on the "
              "per-input knot rows of `grid` (0 outside the grid).");
  s.key(KeySpec::integer("in_features").required().min(1).doc("input width"))
      .key(KeySpec::integer("out_features").required().min(1).doc("output width"))
      .key(KeySpec::integer("grid_size").default_value("5").min(1).doc("G, grid intervals"))
      .key(KeySpec::integer("spline_order").default_value("3").min(0).doc("k, B-spline degree (at most 16)"))
      .key(KeySpec::boolean("enable_standalone_scale_spline").default_value("true").doc("spline_scaler present"))
      .weight("base_weight", {"out_features", "in_features"})
      .weight("spline_weight", {"out_features", "in_features", "num_coefficients"})
      .doc("num_coefficients = grid_size + spline_order")
      .weight("spline_scaler", {"out_features", "in_features"})
      .when("enable_standalone_scale_spline")
      .weight("grid", {"in_features", "num_knots"})
      .doc("the knot rows (a buffer), num_knots = grid_size + 2 spline_order + 1, strictly increasing")
      .input("hidden_states", {"T", "in_features"})
      .output("hidden_states", {"T", "out_features"})
      .tolerance(2e-5)
      .implement(
          [](const Config& c, Plan& p) {
            KANLinearConfig k;
            k.in_features = c.integer("in_features");
            k.out_features = c.integer("out_features");
            k.grid_size = static_cast<int>(c.integer("grid_size"));
            k.spline_order = static_cast<int>(c.integer("spline_order"));
            k.enable_standalone_scale_spline = c.boolean("enable_standalone_scale_spline");
            if (k.spline_order > kernels::kKanMaxOrder)
              case_fail(Problem::bad_config_value, "kan_linear", "spline_order = " + std::to_string(k.spline_order) +
                                                                     " is above " + std::to_string(kernels::kKanMaxOrder));
            p.set_size("num_coefficients", k.grid_size + k.spline_order);
            p.set_size("num_knots", k.grid_size + 2 * k.spline_order + 1);
            return k;
          },
          [](const Case& k, const KANLinearConfig& cfg, Outputs& out) {
            const KANLinear<float> l = KANLinear<float>::load(k.file(), "", cfg);
            out.add("hidden_states", l.forward(k.matrix("input.hidden_states")));
          });
  r.add(std::move(s));
}

/// fast-kan FastKANLayer.
inline void register_fast_kan_layer(Registry& r) {
  LayerSpec s("fast_kan_layer", "fast-kan `FastKANLayer` (fastkan/fastkan.py)",
              "y = spline_linear(exp(-((LayerNorm(x) - grid) / h)^2)) + base_linear(silu(x)), "
              "h = (grid_max - grid_min) / (num_grids - 1).");
  s.key(KeySpec::integer("in_features").required().min(1).doc("input width (fast-kan `input_dim`)"))
      .key(KeySpec::integer("out_features").required().min(1).doc("output width (`output_dim`)"))
      .key(KeySpec::integer("num_grids").default_value("8").min(2).doc("Gaussian bumps per input"))
      .key(KeySpec::number("grid_min").default_value("-2.0").doc("first bump centre"))
      .key(KeySpec::number("grid_max").default_value("2.0").doc("last bump centre"))
      .key(KeySpec::boolean("use_base_update").default_value("true").doc("base_linear(silu(x)) branch"))
      .weight("layernorm.weight", {"in_features"})
      .weight("layernorm.bias", {"in_features"})
      .weight("rbf.grid", {"num_grids"})
      .doc("bump centres (a frozen parameter)")
      .weight("spline_linear.weight", {"out_features", "in_features*num_grids"})
      .weight("base_linear.weight", {"out_features", "in_features"})
      .when("use_base_update")
      .weight("base_linear.bias", {"out_features"})
      .when("use_base_update")
      .input("hidden_states", {"T", "in_features"})
      .output("hidden_states", {"T", "out_features"})
      .tolerance(2e-5)
      .implement(
          [](const Config& c, Plan&) {
            FastKANConfig k;
            k.in_features = c.integer("in_features");
            k.out_features = c.integer("out_features");
            k.num_grids = static_cast<int>(c.integer("num_grids"));
            k.grid_min = c.number("grid_min");
            k.grid_max = c.number("grid_max");
            k.use_base_update = c.boolean("use_base_update");
            if (!(k.grid_max > k.grid_min)) case_fail(Problem::bad_config_value, "fast_kan_layer", "grid_max <= grid_min");
            return k;
          },
          [](const Case& k, const FastKANConfig& cfg, Outputs& out) {
            const FastKANLayer<float> l = FastKANLayer<float>::load(k.file(), "", cfg);
            out.add("hidden_states", l.forward(k.matrix("input.hidden_states")));
          });
  r.add(std::move(s));
}

/// ChebyKAN ChebyKANLayer.
inline void register_cheby_kan_layer(Registry& r) {
  LayerSpec s("cheby_kan_layer", "ChebyKAN `ChebyKANLayer` (ChebyKANLayer.py)",
              "y[o] = sum_{i, d} cheby_coeffs[i, o, d] T_d(tanh(x_i)), T_d the Chebyshev polynomials.");
  s.key(KeySpec::integer("in_features").required().min(1).doc("input width (`input_dim`)"))
      .key(KeySpec::integer("out_features").required().min(1).doc("output width (`output_dim`)"))
      .key(KeySpec::integer("degree").required().min(0).doc("highest polynomial degree"))
      .weight("cheby_coeffs", {"in_features", "out_features", "num_coefficients"})
      .doc("num_coefficients = degree + 1")
      .input("hidden_states", {"T", "in_features"})
      .output("hidden_states", {"T", "out_features"})
      .tolerance(2e-5)
      .implement(
          [](const Config& c, Plan& p) {
            ChebyKANConfig k;
            k.in_features = c.integer("in_features");
            k.out_features = c.integer("out_features");
            k.degree = static_cast<int>(c.integer("degree"));
            p.set_size("num_coefficients", k.degree + 1);
            return k;
          },
          [](const Case& k, const ChebyKANConfig& cfg, Outputs& out) {
            const ChebyKANLayer<float> l = ChebyKANLayer<float>::load(k.file(), "", cfg);
            out.add("hidden_states", l.forward(k.matrix("input.hidden_states")));
          });
  r.add(std::move(s));
}

}  // namespace EIGENFORMER_ABI_NAMESPACE
}  // namespace conformance
}  // namespace eigenformer

#pragma once
// The stateful entry points shared by the retention layers (MultiScaleRetention, GatedRetention): a
// CRTP base that checks the inputs and the state and runs the layer's own pieces. A Derived layer
// provides (and befriends RetentionForms for) check_io(x, y), check_state(state), project(x, pos0,
// ws) -> buffers, recurrent_core(buffers, state), finish(buffers, y) and chunkwise(x, y, state*, ws,
// chunk_size).

#include "../config.hpp"
#include "../core/tensor.hpp"
#include "../core/workspace.hpp"

namespace eigenformer {
inline namespace EIGENFORMER_ABI_NAMESPACE {

template <class Derived, class State, class T>
class RetentionForms {
 public:
  /// Recurrent form: the rows of x are consecutive tokens continuing `state` (positions
  /// state.position, state.position + 1, ...), processed one at a time with O(1) work per token
  /// whatever came before. x, y: [T, embed_dim] (y may be x).
  void forward_recurrent(ConstMatrixRef<T> x, MatrixRef<T> y, State& state, Workspace<T>& ws) const {
    const Derived& d = self();
    d.check_io(x, y);
    d.check_state(state);
    const Index n = x.rows();
    if (n == 0) return;
    typename Workspace<T>::Frame frame(ws);
    auto b = d.project(x, state.position, ws);
    d.recurrent_core(b, state);
    state.position += n;
    d.finish(b, y);
  }

  /// Chunkwise form from position 0 with an empty state (chunk_size 0 = config().chunk_size; any T,
  /// the last chunk may be shorter).
  void forward_chunkwise(ConstMatrixRef<T> x, MatrixRef<T> y, Workspace<T>& ws, Index chunk_size = 0) const {
    self().chunkwise(x, y, nullptr, ws, chunk_size);
  }

  /// Chunkwise form continuing `state` (chunks start at state.position) and leaving in it the state
  /// after the last row, so forward_recurrent can continue a chunkwise prefill.
  void forward_chunkwise(ConstMatrixRef<T> x, MatrixRef<T> y, State& state, Workspace<T>& ws,
                         Index chunk_size = 0) const {
    self().chunkwise(x, y, &state, ws, chunk_size);
  }

  /// Prefill or decode continuing `state`: chunkwise for several rows, recurrent for one.
  void forward(ConstMatrixRef<T> x, MatrixRef<T> y, State& state, Workspace<T>& ws) const {
    if (x.rows() == 1)
      forward_recurrent(x, y, state, ws);
    else
      forward_chunkwise(x, y, state, ws);
  }

 private:
  const Derived& self() const noexcept { return static_cast<const Derived&>(*this); }
};

}  // namespace EIGENFORMER_ABI_NAMESPACE
}  // namespace eigenformer

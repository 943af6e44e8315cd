#pragma once
// Text generation over a Decoder (model/decoder.hpp): greedy, temperature, top-k and top-p (nucleus)
// sampling with a seeded generator, and beam search; tokens stream through a callback.
//
// Sampling follows Hugging Face's logits processors in their order: temperature (logits / t), then
// top-k (keep the k largest), then top-p (keep the smallest set of most probable tokens whose
// probability reaches p; the most probable token always stays), then a draw from the softmax.
// temperature = 0 is greedy (argmax; the lowest id wins a tie). The draw uses std::mt19937_64 seeded
// with `seed` and a uniform double in [0, 1) compared with the cumulative probabilities, so a seed
// gives the same tokens on every platform.
//
// Beam search (num_beams >= 1) keeps the num_beams highest sums of log-probabilities; each step
// extends every beam by every token, keeps the best num_beams (ties: lower beam, then lower id), and
// stops after max_new_tokens or when every kept beam has produced eos_id. Scores are not
// length-normalized (HF's length_penalty = 0). Each beam owns a copy of the DecoderState.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <numeric>
#include <random>
#include <utility>
#include <vector>

#include "../core/error.hpp"
#include "../core/workspace.hpp"
#include "decoder.hpp"

namespace eigenformer {
inline namespace EIGENFORMER_ABI_NAMESPACE {

struct SamplingOptions {
  double temperature = 0.0;  ///< 0 = greedy
  Index top_k = 0;           ///< 0 = no top-k
  double top_p = 1.0;        ///< 1 = no top-p
  std::uint64_t seed = 0;
  std::int64_t eos_id = -1;  ///< stop after this token (-1: never)
};

/// Chooses the next token from one row of logits [vocab] (see the file comment).
class Sampler {
 public:
  explicit Sampler(const SamplingOptions& o) : o_(o), rng_(o.seed) {
    check(o.temperature >= 0 && std::isfinite(o.temperature), ErrorKind::config, "Sampler",
          "temperature = ", o.temperature, " must be finite and >= 0");
    check(o.top_k >= 0, ErrorKind::config, "Sampler", "top_k = ", o.top_k, " must be >= 0");
    check(o.top_p > 0 && o.top_p <= 1, ErrorKind::config, "Sampler", "top_p = ", o.top_p, " must be in (0, 1]");
  }

  std::int32_t next(const float* logits, Index vocab) {
    check(vocab >= 1, ErrorKind::invalid_argument, "Sampler", "vocab = ", vocab, " must be >= 1");
    if (o_.temperature == 0.0) return argmax(logits, vocab);
    // Candidates sorted by logit (descending, ties by id), then cut by top-k and top-p.
    idx_.resize(static_cast<std::size_t>(vocab));
    std::iota(idx_.begin(), idx_.end(), 0);
    std::stable_sort(idx_.begin(), idx_.end(), [logits](std::int32_t a, std::int32_t b) { return logits[a] > logits[b]; });
    std::size_t keep = idx_.size();
    if (o_.top_k > 0) keep = std::min<std::size_t>(keep, static_cast<std::size_t>(o_.top_k));
    prob_.resize(keep);
    const double mx = static_cast<double>(logits[idx_[0]]) / o_.temperature;
    double sum = 0;
    for (std::size_t i = 0; i < keep; ++i) {
      prob_[i] = std::exp(static_cast<double>(logits[idx_[i]]) / o_.temperature - mx);
      sum += prob_[i];
    }
    if (o_.top_p < 1.0) {
      double cum = 0;
      std::size_t n = 0;
      while (n < keep) {
        cum += prob_[n] / sum;
        ++n;
        if (cum >= o_.top_p) break;
      }
      keep = n;
      sum = 0;
      for (std::size_t i = 0; i < keep; ++i) sum += prob_[i];
    }
    const double u = std::uniform_real_distribution<double>(0.0, 1.0)(rng_) * sum;
    double cum = 0;
    for (std::size_t i = 0; i < keep; ++i) {
      cum += prob_[i];
      if (u < cum) return idx_[i];
    }
    return idx_[keep - 1];
  }

  static std::int32_t argmax(const float* logits, Index vocab) {
    Index best = 0;
    for (Index i = 1; i < vocab; ++i)
      if (logits[i] > logits[best]) best = i;
    return static_cast<std::int32_t>(best);
  }

 private:
  SamplingOptions o_;
  std::mt19937_64 rng_;
  std::vector<std::int32_t> idx_;
  std::vector<double> prob_;
};

/// Called with each generated token; return false to stop.
using TokenCallback = std::function<bool(std::int32_t)>;

/// Runs the prompt (one prefill call), then samples up to max_new_tokens tokens, one decode step each.
/// Returns the generated tokens (the prompt excluded). The state must have room for prompt + new tokens.
inline std::vector<std::int32_t> generate(const Decoder& model, const std::vector<std::int32_t>& prompt,
                                          Index max_new_tokens, const SamplingOptions& options, DecoderState& state,
                                          Workspace<float>& ws, const TokenCallback& on_token = {}) {
  check(!prompt.empty(), ErrorKind::invalid_argument, "generate", "the prompt is empty");
  check(max_new_tokens >= 0, ErrorKind::invalid_argument, "generate", "max_new_tokens = ", max_new_tokens,
        " must be >= 0");
  Sampler sampler(options);
  const Index V = model.config().vocab_size;
  Matrix<float> logits(1, V);
  std::vector<std::int32_t> out;
  if (max_new_tokens == 0) return out;
  model.forward(prompt.data(), static_cast<Index>(prompt.size()), logits, state, ws);
  for (Index t = 0; t < max_new_tokens; ++t) {
    const std::int32_t tok = sampler.next(logits.data(), V);
    out.push_back(tok);
    if ((on_token && !on_token(tok)) || tok == options.eos_id || t + 1 == max_new_tokens) break;
    model.forward(&tok, 1, logits, state, ws);
  }
  return out;
}

struct Beam {
  std::vector<std::int32_t> tokens;  ///< generated tokens (prompt excluded)
  double score = 0;                  ///< sum of log-probabilities
  bool finished = false;             ///< ended with eos_id
};

/// Beam search (file comment). Returns the beams, best first. `state` is the prompt's starting state
/// (consumed: it becomes the first beam's).
inline std::vector<Beam> beam_search(const Decoder& model, const std::vector<std::int32_t>& prompt, Index num_beams,
                                     Index max_new_tokens, DecoderState state, Workspace<float>& ws,
                                     std::int64_t eos_id = -1) {
  check(!prompt.empty(), ErrorKind::invalid_argument, "beam_search", "the prompt is empty");
  check(num_beams >= 1, ErrorKind::invalid_argument, "beam_search", "num_beams = ", num_beams, " must be >= 1");
  check(max_new_tokens >= 0, ErrorKind::invalid_argument, "beam_search", "max_new_tokens = ", max_new_tokens,
        " must be >= 0");
  const Index V = model.config().vocab_size;
  Matrix<float> logits(1, V);
  std::vector<Beam> beams(1);
  if (max_new_tokens == 0) return beams;
  std::vector<DecoderState> states;
  states.push_back(std::move(state));
  model.forward(prompt.data(), static_cast<Index>(prompt.size()), logits, states[0], ws);
  std::vector<Matrix<float>> beam_logits{logits};
  struct Cand {
    double score;
    std::size_t beam;
    std::int32_t tok;
  };
  std::vector<Cand> cands;
  for (Index t = 0; t < max_new_tokens; ++t) {
    cands.clear();
    for (std::size_t b = 0; b < beams.size(); ++b) {
      if (beams[b].finished) {
        cands.push_back({beams[b].score, b, -1});
        continue;
      }
      const float* l = beam_logits[b].data();
      const double mx = static_cast<double>(*std::max_element(l, l + V));
      double sum = 0;
      for (Index i = 0; i < V; ++i) sum += std::exp(static_cast<double>(l[i]) - mx);
      const double lse = mx + std::log(sum);
      for (Index i = 0; i < V; ++i)
        cands.push_back({beams[b].score + static_cast<double>(l[i]) - lse, b, static_cast<std::int32_t>(i)});
    }
    const std::size_t keep = std::min<std::size_t>(static_cast<std::size_t>(num_beams), cands.size());
    std::partial_sort(cands.begin(), cands.begin() + static_cast<std::ptrdiff_t>(keep), cands.end(),
                      [](const Cand& a, const Cand& b) {
                        if (a.score != b.score) return a.score > b.score;
                        if (a.beam != b.beam) return a.beam < b.beam;
                        return a.tok < b.tok;
                      });
    std::vector<Beam> next_beams;
    std::vector<DecoderState> next_states;
    std::vector<Matrix<float>> next_logits;
    bool all_done = true;
    for (std::size_t i = 0; i < keep; ++i) {
      const Cand& c = cands[i];
      Beam nb = beams[c.beam];
      DecoderState ns = states[c.beam];
      Matrix<float> nl = beam_logits[c.beam];
      if (c.tok >= 0) {
        nb.tokens.push_back(c.tok);
        nb.score = c.score;
        nb.finished = c.tok == eos_id;
        if (!nb.finished && t + 1 < max_new_tokens) model.forward(&c.tok, 1, nl, ns, ws);
      }
      all_done = all_done && nb.finished;
      next_beams.push_back(std::move(nb));
      next_states.push_back(std::move(ns));
      next_logits.push_back(std::move(nl));
    }
    beams = std::move(next_beams);
    states = std::move(next_states);
    beam_logits = std::move(next_logits);
    if (all_done) break;
  }
  return beams;
}

}  // namespace EIGENFORMER_ABI_NAMESPACE
}  // namespace eigenformer

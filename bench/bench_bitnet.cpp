// BitNet b1.58 ternary kernels and BitLinear against fp32 Linear (Eigen) on the same shapes, in the
// same run, with a plain streaming read of the same bytes as the bandwidth reference.
//
// Shapes {in, out}: 4096 x 4096 and 4096 x 11008 (Llama-7B q/o and gate/up projections).
//   BM_TernaryGemv/<fmt>/hot|cold     the ternary x int8 GEMV kernel alone (one token, one thread);
//                                     hot: one matrix (in L3); cold: a rotating set of copies larger
//                                     than 3x the L3 (32 MiB here), so every call streams from DRAM
//   BM_TernaryGemv/<fmt>/ref|portable the scalar twin and the portable fallback (hot)
//   BM_StreamRead/<fmt>/hot|cold      summing the same number of bytes with SIMD loads, 4 concurrent
//                                     streams (the attainable read bandwidth, ~14 GB/s from DRAM here)
//   BM_EigenGemv/hot|cold             Linear<float>::forward at one token (Eigen GEMV); the fp32
//                                     matrix is 64 / 172 MiB, so even "hot" does not fit the L3
//   BM_BitLinear/<fmt>/hot|cold       BitLinear::forward at one token: quantize + kernel + rescale
//   BM_BitLinearStages/<fmt>          the same split into quantize / kernel / rescale, each stage timed
//                                     (thread CPU time) inside the same iterations
//   BM_BitLinearQuantize, BM_BitLinearRescale   the two float stages of it, alone
//   BM_TernaryGemm/<fmt>/threads:n    the kernel at 128 tokens (activations quantized beforehand)
//   BM_BitLinear128/<fmt>/threads:n   BitLinear::forward at 128 tokens
//   BM_EigenGemm/threads:n            Linear<float>::forward at 128 tokens (Eigen GEMM)
// Counters: GOP/s (2 T in out per call; int8 MACs for ternary, FLOPs for fp32), bytes_per_second
// (weight bytes read per call), bpw. At exit, a table of same-run ratios of the medians (or of the
// single runs without --benchmark_repetitions). Run with:
//   bench_bitnet --benchmark_repetitions=5 --benchmark_report_aggregates_only=true

#include <benchmark/benchmark.h>

#include <eigenformer/core/threading.hpp>
#include <eigenformer/linear/bit_linear.hpp>
#include <eigenformer/linear/linear.hpp>

#include <cstdio>
#include <ctime>
#include <map>
#include <memory>
#include <new>
#include <random>
#include <string>
#include <vector>

#if defined(__AVX2__)
#include <immintrin.h>
#endif

using namespace eigenformer;

namespace {

constexpr std::size_t kL3 = std::size_t(32) << 20;
constexpr std::size_t kColdBytes = 3 * kL3;  // the rotating sets are at least this large

// Zeroed bytes stored as TernaryMatrix stores its packed weights (64-byte aligned; huge pages from
// 2 MiB on), so that the cold copies are laid out in memory like the matrix they copy.
struct AlignedBytes {
  std::shared_ptr<std::uint8_t> p;
  std::size_t n = 0;
  explicit AlignedBytes(std::size_t bytes) : p(allocate_weight_bytes(bytes)), n(bytes) {}
};

std::size_t copies_for(std::size_t bytes) { return std::max<std::size_t>(2, (kColdBytes + bytes - 1) / bytes); }

// Random ternary weights with BitNet's typical share of zeros (~1/3), one matrix per shape.
const Matrix<std::int8_t>& ternary_weights(Index in, Index out) {
  static std::map<std::pair<Index, Index>, Matrix<std::int8_t>> cache;
  auto it = cache.find({in, out});
  if (it != cache.end()) return it->second;
  std::mt19937 g(static_cast<unsigned>(in * 31 + out));
  std::uniform_int_distribution<int> d(-1, 1);
  Matrix<std::int8_t> w(out, in);
  for (Index i = 0; i < w.size(); ++i) w.data()[i] = static_cast<std::int8_t>(d(g));
  return cache.emplace(std::make_pair(in, out), std::move(w)).first->second;
}

// The packed matrix and `copies` byte-identical copies of its blocks (the cold set).
struct Packed {
  TernaryMatrix m;
  std::vector<AlignedBytes> copies;
};

Packed& packed(TernaryFormat f, Index in, Index out, bool cold) {
  static std::map<std::tuple<int, Index, Index>, Packed> cache;
  auto key = std::make_tuple(static_cast<int>(f), in, out);
  auto it = cache.find(key);
  if (it == cache.end()) {
    const auto& w = ternary_weights(in, out);
    it = cache.emplace(key, Packed{TernaryMatrix(w.data(), out, in, f), {}}).first;
  }
  Packed& p = it->second;
  if (cold && p.copies.empty())
    for (std::size_t c = 0; c < copies_for(p.m.bytes()); ++c) {
      p.copies.emplace_back(p.m.bytes());
      std::memcpy(p.copies.back().p.get(), p.m.data(), p.m.bytes());
    }
  return p;
}

// Quantized activations of T random tokens for a matrix with `padded` columns.
// (64-byte aligned like BitLinear's Workspace: a 16-byte aligned buffer splits every other 32-byte
// load across cache lines, which costs the GEMM ~15 %.)
struct Acts {
  AlignedBytes buf{1};
  std::int8_t* q = nullptr;
  std::size_t size = 0;
  std::vector<std::int32_t> sum;
  std::vector<float> scale;
  Matrix<float> x;
};

Acts acts(Index T, Index in, Index padded) {
  Acts a;
  std::mt19937 g(7);
  std::normal_distribution<float> d(0.0f, 1.0f);
  a.x.resize(T, in);
  for (Index i = 0; i < a.x.size(); ++i) a.x.data()[i] = d(g);
  a.size = static_cast<std::size_t>(T * padded);
  a.buf = AlignedBytes(a.size);
  a.q = reinterpret_cast<std::int8_t*>(a.buf.p.get());
  a.sum.resize(static_cast<std::size_t>(T));
  a.scale.resize(static_cast<std::size_t>(T));
  for (Index t = 0; t < T; ++t)
    a.scale[t] = kernels::quantize_absmax_i8(a.x.row(t).data(), static_cast<std::size_t>(in),
                                             static_cast<std::size_t>(padded), a.q + t * padded, a.sum.data() + t);
  return a;
}

Matrix<float> random_matrix(Index r, Index c, unsigned seed) {
  std::mt19937 g(seed);
  std::normal_distribution<float> d(0.0f, 0.02f);
  Matrix<float> m(r, c);
  for (Index i = 0; i < m.size(); ++i) m.data()[i] = d(g);
  return m;
}

void counters(benchmark::State& s, double ops, double weight_bytes, double bpw) {
  s.counters["GOP/s"] = benchmark::Counter(ops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  s.SetBytesProcessed(static_cast<std::int64_t>(s.iterations() * weight_bytes));
  if (bpw > 0) s.counters["bpw"] = bpw;
}

void gemv_kernel(const TernaryMatrix& m, const std::uint8_t* blocks, const Acts& a, std::int32_t* y) {
  const auto rows = static_cast<std::size_t>(m.rows()), nb = static_cast<std::size_t>(m.blocks_per_row());
  if (m.format() == TernaryFormat::tq2)
    kernels::ternary_gemv(reinterpret_cast<const kernels::BlockTQ2*>(blocks), rows, nb, a.q, a.sum[0],
                          m.digit_sums(), y);
  else
    kernels::ternary_gemv(reinterpret_cast<const kernels::BlockTQ1*>(blocks), rows, nb, a.q, a.sum[0],
                          m.digit_sums(), y);
}

// ---------------------------------------------------------------------------------------------
// Benchmarks
// ---------------------------------------------------------------------------------------------

void BM_TernaryGemv(benchmark::State& s, TernaryFormat f, int mode /* 0 hot, 1 cold, 2 ref, 3 portable */) {
  const Index in = s.range(0), out = s.range(1);
  set_num_threads(1);
  Packed& p = packed(f, in, out, mode == 1);
  const Acts a = acts(1, in, p.m.padded_cols());
  std::vector<std::int32_t> y(static_cast<std::size_t>(out));
  const auto rows = static_cast<std::size_t>(out), nb = static_cast<std::size_t>(p.m.blocks_per_row());
  std::size_t c = 0;
  for (auto _ : s) {
    if (mode == 0) {
      gemv_kernel(p.m, p.m.data(), a, y.data());
    } else if (mode == 1) {
      gemv_kernel(p.m, p.copies[c].p.get(), a, y.data());
      c = c + 1 == p.copies.size() ? 0 : c + 1;
    } else if (mode == 2) {
      p.m.multiply_ref(a.q, a.size, 1, y.data(), rows);
    } else if (f == TernaryFormat::tq2) {
      kernels::portable::ternary_gemv(reinterpret_cast<const kernels::BlockTQ2*>(p.m.data()), rows, nb, a.q,
                                      a.sum[0], p.m.digit_sums(), y.data());
    } else {
      kernels::portable::ternary_gemv(reinterpret_cast<const kernels::BlockTQ1*>(p.m.data()), rows, nb, a.q,
                                      a.sum[0], p.m.digit_sums(), y.data());
    }
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  counters(s, 2.0 * double(in) * double(out), double(p.m.bytes()), p.m.bits_per_weight());
}

// Sum the bytes of a buffer: the memory traffic of a kernel that reads them once, no compute. Four
// concurrent streams (the buffer's quarters), as a GEMV reading several rows at once: one stream
// alone gets ~30 % less DRAM bandwidth on this machine.
std::uint64_t stream_read(const std::uint8_t* p, std::size_t n) {
  const std::size_t q = n / 4 / 128 * 128;  // quarter, in steps of 128 bytes
  std::uint64_t s = 0;
#if defined(__AVX2__)
  __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
  for (std::size_t i = 0; i < q; i += 64) {
    a0 = _mm256_add_epi64(a0, _mm256_add_epi64(_mm256_load_si256(reinterpret_cast<const __m256i*>(p + i)),
                                               _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 32))));
    a1 = _mm256_add_epi64(a1, _mm256_add_epi64(_mm256_load_si256(reinterpret_cast<const __m256i*>(p + q + i)),
                                               _mm256_load_si256(reinterpret_cast<const __m256i*>(p + q + i + 32))));
    a2 = _mm256_add_epi64(a2, _mm256_add_epi64(_mm256_load_si256(reinterpret_cast<const __m256i*>(p + 2 * q + i)),
                                               _mm256_load_si256(reinterpret_cast<const __m256i*>(p + 2 * q + i + 32))));
    a3 = _mm256_add_epi64(a3, _mm256_add_epi64(_mm256_load_si256(reinterpret_cast<const __m256i*>(p + 3 * q + i)),
                                               _mm256_load_si256(reinterpret_cast<const __m256i*>(p + 3 * q + i + 32))));
  }
  a0 = _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3));
  std::uint64_t r[4];
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(r), a0);
  s = r[0] + r[1] + r[2] + r[3];
#else
  for (std::size_t i = 0; i < q; i += 8) {
    std::uint64_t v[4];
    for (int k = 0; k < 4; ++k) std::memcpy(&v[k], p + k * q + i, 8);
    s += v[0] + v[1] + v[2] + v[3];
  }
#endif
  for (std::size_t i = 4 * q; i < n; ++i) s += p[i];
  return s;
}

void BM_StreamRead(benchmark::State& s, TernaryFormat f, bool cold) {
  const Index in = s.range(0), out = s.range(1);
  Packed& p = packed(f, in, out, cold);
  std::size_t c = 0;
  for (auto _ : s) {
    const std::uint8_t* b = cold ? p.copies[c].p.get() : p.m.data();
    if (cold) c = c + 1 == p.copies.size() ? 0 : c + 1;
    benchmark::DoNotOptimize(stream_read(b, p.m.bytes()));
  }
  counters(s, 0.0, double(p.m.bytes()), p.m.bits_per_weight());
}

std::vector<Linear<float>>& fp32_linears(Index in, Index out, std::size_t n) {
  static std::map<std::pair<Index, Index>, std::vector<Linear<float>>> cache;
  auto& v = cache[{in, out}];
  while (v.size() < n) v.emplace_back(random_matrix(out, in, static_cast<unsigned>(v.size() + 1)), Vector<float>());
  return v;
}

void BM_EigenGemv(benchmark::State& s, bool cold) {
  const Index in = s.range(0), out = s.range(1);
  set_num_threads(1);
  const std::size_t bytes = static_cast<std::size_t>(in * out) * sizeof(float);
  auto& lins = fp32_linears(in, out, cold ? copies_for(bytes) : 1);
  const Matrix<float> x = random_matrix(1, in, 99);
  Matrix<float> y(1, out);
  std::size_t c = 0;
  for (auto _ : s) {
    lins[c].forward(x, y);
    if (cold) c = c + 1 == lins.size() ? 0 : c + 1;
    benchmark::DoNotOptimize(y.data());
  }
  counters(s, 2.0 * double(in) * double(out), double(bytes), 32.0);
}

std::vector<BitLinear>& bit_linears(TernaryFormat f, Index in, Index out, std::size_t n) {
  static std::map<std::tuple<int, Index, Index>, std::vector<BitLinear>> cache;
  auto& v = cache[std::make_tuple(static_cast<int>(f), in, out)];
  const auto& w = ternary_weights(in, out);
  while (v.size() < n) v.emplace_back(BitLinear::Config{in, out, false, f}, w.data(), 2.5f, BitScale::divide);
  return v;
}

void BM_BitLinear(benchmark::State& s, TernaryFormat f, bool cold) {
  const Index in = s.range(0), out = s.range(1);
  set_num_threads(1);
  const std::size_t bytes = bit_linears(f, in, out, 1)[0].weights().bytes();
  auto& lins = bit_linears(f, in, out, cold ? copies_for(bytes) : 1);
  const Matrix<float> x = random_matrix(1, in, 99);
  Matrix<float> y(1, out);
  Workspace<float> ws;
  std::size_t c = 0;
  for (auto _ : s) {
    lins[c].forward(x, y, ws);
    if (cold) c = c + 1 == lins.size() ? 0 : c + 1;
    benchmark::DoNotOptimize(y.data());
  }
  counters(s, 2.0 * double(in) * double(out), double(bytes), lins[0].weights().bits_per_weight());
}

void BM_BitLinearQuantize(benchmark::State& s, TernaryFormat f) {
  const Index in = s.range(0), out = s.range(1);
  set_num_threads(1);
  const BitLinear& lin = bit_linears(f, in, out, 1)[0];
  const Matrix<float> x = random_matrix(1, in, 99);
  Workspace<float> ws;
  for (auto _ : s) {
    Workspace<float>::Frame frame(ws);
    const QuantizedActivations q = BitLinear::quantize_input(x, lin.padded_in_features(), ws);
    benchmark::DoNotOptimize(q.q);
  }
}

// BitLinear::forward at one token split into its stages, each timed (thread CPU time) inside the same
// iterations: the same calls forward makes (quantize_input, the kernel, the rescale).
double thread_seconds() {
  timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return double(t.tv_sec) + 1e-9 * double(t.tv_nsec);
}

void BM_BitLinearStages(benchmark::State& s, TernaryFormat f) {
  const Index in = s.range(0), out = s.range(1);
  set_num_threads(1);
  const BitLinear& lin = bit_linears(f, in, out, 1)[0];
  const Matrix<float> x = random_matrix(1, in, 99);
  Matrix<float> y(1, out);
  std::vector<std::int32_t> acc(static_cast<std::size_t>(out));
  Workspace<float> ws;
  double tq = 0, tk = 0, tr = 0;
  for (auto _ : s) {
    Workspace<float>::Frame frame(ws);
    const double t0 = thread_seconds();
    const QuantizedActivations q = BitLinear::quantize_input(x, lin.padded_in_features(), ws);
    const double t1 = thread_seconds();
    lin.weights().multiply(q.q, q.ld, q.sum, 1, acc.data(), static_cast<std::size_t>(out), 0, out);
    const double t2 = thread_seconds();
    kernels::rescale(acc.data(), acc.size(), q.scale[0], lin.weight_scale(), false, nullptr, y.data());
    const double t3 = thread_seconds();
    tq += t1 - t0;
    tk += t2 - t1;
    tr += t3 - t2;
    benchmark::DoNotOptimize(y.data());
  }
  const double n = double(s.iterations()), all = tq + tk + tr;
  s.counters["quantize_us"] = 1e6 * tq / n;
  s.counters["kernel_us"] = 1e6 * tk / n;
  s.counters["rescale_us"] = 1e6 * tr / n;
  s.counters["quantize_%"] = 100 * tq / all;
  s.counters["kernel_%"] = 100 * tk / all;
  s.counters["rescale_%"] = 100 * tr / all;
}

void BM_BitLinearRescale(benchmark::State& s) {
  const Index out = s.range(1);
  std::vector<std::int32_t> acc(static_cast<std::size_t>(out));
  for (std::size_t i = 0; i < acc.size(); ++i) acc[i] = static_cast<std::int32_t>(i * 7919 % 20001) - 10000;
  std::vector<float> y(acc.size());
  for (auto _ : s) {
    kernels::rescale(acc.data(), acc.size(), 3.3f, 2.5f, false, nullptr, y.data());
    benchmark::DoNotOptimize(y.data());
  }
}

constexpr Index kTokens = 128;

void BM_TernaryGemm(benchmark::State& s, TernaryFormat f) {
  const Index in = s.range(0), out = s.range(1);
  const int threads = static_cast<int>(s.range(2));
  set_num_threads(threads);
  Packed& p = packed(f, in, out, false);
  const Acts a = acts(kTokens, in, p.m.padded_cols());
  std::vector<std::int32_t> y(static_cast<std::size_t>(kTokens * out));
  const auto ld = static_cast<std::size_t>(p.m.padded_cols());
  for (auto _ : s) {
    // the same row split as BitLinear::forward_quantized
    const Index chunk = (out + threads * 64 - 1) / (threads * 64) * 64;
    parallel_for(0, threads, 1, [&](Index c) {
      const Index r0 = c * chunk, r1 = std::min(out, r0 + chunk);
      if (r1 > r0) p.m.multiply(a.q, ld, a.sum.data(), kTokens, y.data(), static_cast<std::size_t>(out), r0, r1);
    });
    benchmark::DoNotOptimize(y.data());
  }
  counters(s, 2.0 * double(kTokens) * double(in) * double(out), double(p.m.bytes()), p.m.bits_per_weight());
}

void BM_BitLinear128(benchmark::State& s, TernaryFormat f) {
  const Index in = s.range(0), out = s.range(1);
  set_num_threads(static_cast<int>(s.range(2)));
  const BitLinear& lin = bit_linears(f, in, out, 1)[0];
  const Matrix<float> x = random_matrix(kTokens, in, 99);
  Matrix<float> y(kTokens, out);
  Workspace<float> ws;
  for (auto _ : s) {
    lin.forward(x, y, ws);
    benchmark::DoNotOptimize(y.data());
  }
  counters(s, 2.0 * double(kTokens) * double(in) * double(out), double(lin.weights().bytes()),
           lin.weights().bits_per_weight());
}

void BM_EigenGemm(benchmark::State& s) {
  const Index in = s.range(0), out = s.range(1);
  set_num_threads(static_cast<int>(s.range(2)));
  const Linear<float>& lin = fp32_linears(in, out, 1)[0];
  const Matrix<float> x = random_matrix(kTokens, in, 99);
  Matrix<float> y(kTokens, out);
  for (auto _ : s) {
    lin.forward(x, y);
    benchmark::DoNotOptimize(y.data());
  }
  counters(s, 2.0 * double(kTokens) * double(in) * double(out), double(in * out) * 4.0, 32.0);
}

// ---------------------------------------------------------------------------------------------
// Registration and the ratio table
// ---------------------------------------------------------------------------------------------

const std::pair<Index, Index> kShapes[] = {{4096, 4096}, {4096, 11008}};
const TernaryFormat kFormats[] = {TernaryFormat::tq2, TernaryFormat::tq1};

std::string fmt_name(TernaryFormat f) { return to_string(f); }

void register_all() {
  auto shapes = [](benchmark::internal::Benchmark* b) {
    b->ArgNames({"in", "out"});
    for (const auto& sh : kShapes) b->Args({sh.first, sh.second});
    b->UseRealTime()->Unit(benchmark::kMicrosecond);
  };
  auto shapes_threads = [](benchmark::internal::Benchmark* b) {
    b->ArgNames({"in", "out", "threads"});
    for (long t : {1, 2})
      for (const auto& sh : kShapes) b->Args({sh.first, sh.second, t});
    b->UseRealTime()->Unit(benchmark::kMillisecond);
  };
  for (TernaryFormat f : kFormats) {
    const std::string n = fmt_name(f);
    benchmark::RegisterBenchmark(("BM_TernaryGemv/" + n + "/hot").c_str(), BM_TernaryGemv, f, 0)->Apply(shapes);
    benchmark::RegisterBenchmark(("BM_TernaryGemv/" + n + "/cold").c_str(), BM_TernaryGemv, f, 1)->Apply(shapes);
    benchmark::RegisterBenchmark(("BM_TernaryGemv/" + n + "/ref").c_str(), BM_TernaryGemv, f, 2)->Apply(shapes);
    benchmark::RegisterBenchmark(("BM_TernaryGemv/" + n + "/portable").c_str(), BM_TernaryGemv, f, 3)->Apply(shapes);
    benchmark::RegisterBenchmark(("BM_StreamRead/" + n + "/hot").c_str(), BM_StreamRead, f, false)->Apply(shapes);
    benchmark::RegisterBenchmark(("BM_StreamRead/" + n + "/cold").c_str(), BM_StreamRead, f, true)->Apply(shapes);
    benchmark::RegisterBenchmark(("BM_BitLinear/" + n + "/hot").c_str(), BM_BitLinear, f, false)->Apply(shapes);
    benchmark::RegisterBenchmark(("BM_BitLinear/" + n + "/cold").c_str(), BM_BitLinear, f, true)->Apply(shapes);
    benchmark::RegisterBenchmark(("BM_BitLinearQuantize/" + n).c_str(), BM_BitLinearQuantize, f)->Apply(shapes);
    benchmark::RegisterBenchmark(("BM_BitLinearStages/" + n).c_str(), BM_BitLinearStages, f)->Apply(shapes);
  }
  benchmark::RegisterBenchmark("BM_BitLinearRescale", BM_BitLinearRescale)->Apply(shapes);
  benchmark::RegisterBenchmark("BM_EigenGemv/hot", BM_EigenGemv, false)->Apply(shapes);
  benchmark::RegisterBenchmark("BM_EigenGemv/cold", BM_EigenGemv, true)->Apply(shapes);
  for (TernaryFormat f : kFormats) {
    benchmark::RegisterBenchmark(("BM_TernaryGemm/" + fmt_name(f)).c_str(), BM_TernaryGemm, f)->Apply(shapes_threads);
    benchmark::RegisterBenchmark(("BM_BitLinear128/" + fmt_name(f)).c_str(), BM_BitLinear128, f)->Apply(shapes_threads);
  }
  benchmark::RegisterBenchmark("BM_EigenGemm", BM_EigenGemm)->Apply(shapes_threads);
}

/// Console output as usual; remembers the median (or the single run) of every benchmark, in ns, and
/// prints the same-run ratios at the end.
class RatioReporter : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    for (const Run& r : runs) {
      if (r.error_occurred) continue;
      const bool median = r.run_type == Run::RT_Aggregate && r.aggregate_name == "median";
      const bool single = r.run_type == Run::RT_Iteration && r.repetitions <= 1;
      if (!median && !single) continue;
      const std::string key = r.run_name.function_name + "/" + r.run_name.args;
      times_[key] = r.GetAdjustedRealTime() * multiplier(r.time_unit);
      cpu_[key] = r.GetAdjustedCPUTime() * multiplier(r.time_unit);
      for (const auto& c : r.counters) {
        if (c.first == "bpw") bpw_[key] = c.second.value;
        stage_[key + "#" + c.first] = c.second.value;
      }
    }
    ConsoleReporter::ReportRuns(runs);
  }

  void Finalize() override {
    ConsoleReporter::Finalize();
    std::printf("\nSame-run ratios of the medians: ratio = baseline time / time (> 1: faster than the baseline), by\n"
                "real time and, in brackets, by CPU time (single-threaded runs: not inflated by other processes)\n");
    for (const auto& sh : kShapes) {
      const std::string a = "in:" + std::to_string(sh.first) + "/out:" + std::to_string(sh.second);
      const double w = double(sh.first) * double(sh.second);
      std::printf("\n== %ld x %ld (in x out) ==\n", long(sh.first), long(sh.second));
      for (TernaryFormat f : kFormats) {
        const std::string n = fmt_name(f);
        const double bpw = get_bpw("BM_TernaryGemv/" + n + "/hot/" + a);
        if (bpw > 0)
          std::printf(
              "  %s: %.4f bits per weight (weights only; + 4 bytes of scale per matrix and 4 bytes of digit "
              "sum per row: %.4f with them)\n",
              n.c_str(), bpw, bpw + 32.0 / double(sh.first));
        else std::printf("  %s:\n", n.c_str());
        for (const char* temp : {"hot", "cold"}) {
          const std::string t = temp;
          line("GEMV " + n + " " + t + " vs fp32 Eigen GEMV " + t, "BM_TernaryGemv/" + n + "/" + t + "/" + a,
               "BM_EigenGemv/" + t + "/" + a);
          line("BitLinear T=1 " + n + " " + t + " vs fp32 Eigen GEMV " + t, "BM_BitLinear/" + n + "/" + t + "/" + a,
               "BM_EigenGemv/" + t + "/" + a);
          const double tk = get("BM_TernaryGemv/" + n + "/" + t + "/" + a);
          const double ts = get("BM_StreamRead/" + n + "/" + t + "/" + a);
          if (tk > 0 && ts > 0) {
            const double bytes = get_bpw("BM_TernaryGemv/" + n + "/hot/" + a) * w / 8.0;
            std::printf("    %-52s %8.1f GB/s vs stream read %8.1f GB/s  (%.2f of it)\n",
                        ("GEMV " + n + " " + t + " weight bandwidth").c_str(), bytes / tk, bytes / ts, ts / tk);
          }
        }
        line("GEMV " + n + " hot vs its ref twin", "BM_TernaryGemv/" + n + "/hot/" + a, "BM_TernaryGemv/" + n + "/ref/" + a);
        line("GEMV " + n + " hot vs portable", "BM_TernaryGemv/" + n + "/hot/" + a,
             "BM_TernaryGemv/" + n + "/portable/" + a);
        const std::string st = "BM_BitLinearStages/" + n + "/" + a + "#";
        if (stage_.count(st + "kernel_us"))
          std::printf("    BitLinear T=1 %s hot, stages timed in the same iterations: quantize %.2f us (%.2f%%) + kernel %.1f us "
                      "(%.2f%%) + rescale %.2f us (%.2f%%)\n",
                      n.c_str(), stage_.at(st + "quantize_us"), stage_.at(st + "quantize_%"), stage_.at(st + "kernel_us"),
                      stage_.at(st + "kernel_%"), stage_.at(st + "rescale_us"), stage_.at(st + "rescale_%"));
        for (int th : {1, 2}) {
          const std::string at = a + "/threads:" + std::to_string(th);
          line("GEMM T=128 kernel " + n + " " + std::to_string(th) + "t vs fp32 Eigen GEMM", "BM_TernaryGemm/" + n + "/" + at,
               "BM_EigenGemm/" + at, th == 1);
          line("BitLinear T=128 " + n + " " + std::to_string(th) + "t vs fp32 Eigen GEMM", "BM_BitLinear128/" + n + "/" + at,
               "BM_EigenGemm/" + at, th == 1);
        }
      }
    }
  }

 private:
  static double multiplier(benchmark::TimeUnit u) {
    switch (u) {
      case benchmark::kNanosecond: return 1.0;
      case benchmark::kMicrosecond: return 1e3;
      case benchmark::kMillisecond: return 1e6;
      case benchmark::kSecond: return 1e9;
    }
    return 1.0;
  }
  double get(const std::string& k) const {
    auto it = times_.find(k);
    return it == times_.end() ? -1.0 : it->second;
  }
  double get_bpw(const std::string& k) const {
    auto it = bpw_.find(k);
    return it == bpw_.end() ? -1.0 : it->second;
  }
  void line(const std::string& what, const std::string& t, const std::string& base, bool cpu = true) const {
    const double a = get(t), b = get(base);
    if (a <= 0 || b <= 0) return;
    std::printf("    %-52s %10.1f us vs %10.1f us  ratio %6.2fx", what.c_str(), a * 1e-3, b * 1e-3, b / a);
    const auto ca = cpu_.find(t), cb = cpu_.find(base);
    if (cpu && ca != cpu_.end() && cb != cpu_.end() && ca->second > 0)
      std::printf("  [cpu %10.1f us vs %10.1f us  %6.2fx]", ca->second * 1e-3, cb->second * 1e-3, cb->second / ca->second);
    std::printf("\n");
  }

  std::map<std::string, double> times_, cpu_, bpw_, stage_;
};

}  // namespace

int main(int argc, char** argv) {
  register_all();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  RatioReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
  return 0;
}

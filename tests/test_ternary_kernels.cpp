// Ternary (BitNet b1.58) formats and kernels: packing round-trips, the base-3 codec exhaustively,
// and every kernel (dispatched ISA and portable) against its scalar twin, bit for bit on the int32
// accumulators, across shapes that cross every block, row group and token group tail, with extreme
// activations (-128 / 127 everywhere) that reach the int16 flush bounds.
#include <eigenformer/kernels/ternary.hpp>

#include <algorithm>
#include <string>

#include "test_util.hpp"

namespace ek = eigenformer::kernels;

namespace {

std::vector<std::int8_t> random_ternary(std::size_t n, std::mt19937& g, double p_zero = 0.4) {
  std::uniform_real_distribution<double> u(0.0, 1.0);
  std::vector<std::int8_t> w(n);
  for (auto& v : w) {
    const double a = u(g);
    v = a < p_zero ? 0 : (a < p_zero + (1 - p_zero) / 2 ? -1 : 1);
  }
  return w;
}

template <class Block>
std::vector<Block> pack(const std::vector<std::int8_t>& w, std::size_t rows, std::size_t cols) {
  const std::size_t nb = ek::blocks_per_row<Block>(cols);
  std::vector<Block> out(rows * nb);
  for (std::size_t r = 0; r < rows; ++r) ek::ref::pack_row(w.data() + r * cols, cols, out.data() + r * nb);
  return out;
}

template <class Block>
const char* name() {
  return std::is_same<Block, ek::BlockTQ2>::value ? "TQ2" : "TQ1";
}

// Activations [tokens, padded]: random int8, or all at an extreme value; zero past cols.
std::vector<std::int8_t> activations(std::size_t tokens, std::size_t cols, std::size_t padded, std::mt19937& g,
                                     int mode) {
  std::uniform_int_distribution<int> d(-128, 127);
  std::vector<std::int8_t> x(tokens * padded, 0);
  for (std::size_t t = 0; t < tokens; ++t)
    for (std::size_t k = 0; k < cols; ++k)
      x[t * padded + k] = static_cast<std::int8_t>(mode == 0 ? d(g) : (mode == 1 ? -128 : 127));
  return x;
}

// Per-row digit sums the kernels take (ref::digit_sums; checked against the weights in DigitSums).
template <class Block>
std::vector<std::int32_t> digit_sums(const std::vector<Block>& packed, std::size_t rows, std::size_t nb) {
  std::vector<std::int32_t> d(rows);
  ek::ref::digit_sums(packed.data(), rows, nb, d.data());
  return d;
}

std::vector<std::int32_t> sums(const std::vector<std::int8_t>& x, std::size_t tokens, std::size_t ld) {
  std::vector<std::int32_t> s(tokens, 0);
  for (std::size_t t = 0; t < tokens; ++t)
    for (std::size_t k = 0; k < ld; ++k) s[t] += x[t * ld + k];
  return s;
}

template <class Block>
void check_shapes(std::mt19937& g) {
  constexpr std::size_t B = Block::kWeights;
  const std::size_t cols_list[] = {1, 31, 32, 33, B - 1, B, B + 1, 2 * B + 7, 9 * B - 3, 9 * B, 17 * B + 5};
  // Row counts cross the 4-row GEMV step, token counts the 8-token GEMM micro-kernel (fewer of each in
  // the unoptimized sanitizer build).
  const std::vector<std::size_t> rows_list = eftest::kSlowBuild ? std::vector<std::size_t>{1, 2, 3, 4, 5, 7, 8, 9}
                                                                 : std::vector<std::size_t>{1, 2, 3, 4, 5, 7, 8, 9, 17, 33};
  const std::vector<std::size_t> tokens_list = eftest::kSlowBuild ? std::vector<std::size_t>{1, 2, 3, 7, 8, 9, 17}
                                                                   : std::vector<std::size_t>{1, 2, 3, 7, 8, 9, 13, 16, 17};
  for (std::size_t cols : cols_list)
    for (std::size_t rows : rows_list) {
      const std::size_t nb = ek::blocks_per_row<Block>(cols), padded = nb * B;
      // all-(+1) or all-(-1) weights with extreme activations reach the largest accumulators
      for (int wmode = 0; wmode < 3; ++wmode) {
        std::vector<std::int8_t> w = random_ternary(rows * cols, g);
        if (wmode > 0) std::fill(w.begin(), w.end(), static_cast<std::int8_t>(wmode == 1 ? 1 : -1));
        const auto packed = pack<Block>(w, rows, cols);
        const auto dsum = digit_sums(packed, rows, nb);
        for (std::size_t tokens : tokens_list) {
          for (int xmode = 0; xmode < 3; ++xmode) {
            if ((wmode > 0 || xmode > 0) && tokens > 3 && tokens != 9) continue;  // keep the run short
            const std::size_t ldx = padded + (tokens % 2 ? 32 : 0);  // a wider row stride too
            auto x = activations(tokens, cols, ldx, g, xmode);
            const auto xs = sums(x, tokens, ldx);
            const std::size_t ldy = rows + 3;
            std::vector<std::int32_t> want(tokens * ldy, 7), got(tokens * ldy, 7), port(tokens * ldy, 7);
            ek::ref::ternary_gemm(packed.data(), rows, nb, x.data(), ldx, tokens, want.data(), ldy);
            ek::ternary_gemm(packed.data(), rows, nb, x.data(), ldx, xs.data(), dsum.data(), tokens,
                             got.data(), ldy);
            ek::portable::ternary_gemm(packed.data(), rows, nb, x.data(), ldx, xs.data(), dsum.data(), tokens,
                                       port.data(), ldy);
            ASSERT_EQ(got, want) << name<Block>() << " gemm rows=" << rows << " cols=" << cols << " tokens=" << tokens
                                 << " wmode=" << wmode << " xmode=" << xmode;
            ASSERT_EQ(port, want) << name<Block>() << " portable gemm rows=" << rows << " cols=" << cols;
            // the GEMV entry points, token by token
            for (std::size_t t = 0; t < tokens; ++t) {
              std::vector<std::int32_t> y1(rows), y2(rows), y3(rows);
              ek::ref::ternary_gemv(packed.data(), rows, nb, x.data() + t * ldx, y1.data());
              ek::ternary_gemv(packed.data(), rows, nb, x.data() + t * ldx, xs[t], dsum.data(), y2.data());
              ek::portable::ternary_gemv(packed.data(), rows, nb, x.data() + t * ldx, xs[t], dsum.data(),
                                         y3.data());
              ASSERT_EQ(y2, y1) << name<Block>() << " gemv rows=" << rows << " cols=" << cols;
              ASSERT_EQ(y3, y1) << name<Block>() << " portable gemv rows=" << rows << " cols=" << cols;
              for (std::size_t r = 0; r < rows; ++r) ASSERT_EQ(y1[r], want[t * ldy + r]);
            }
          }
        }
      }
    }
}

// A direct dot product, independent of any packing, for the twins themselves.
template <class Block>
void check_twin_against_plain_dot(std::mt19937& g) {
  for (std::size_t cols : {1u, 100u, 129u, 161u, 500u}) {
    const std::size_t rows = 5, nb = ek::blocks_per_row<Block>(cols), padded = nb * Block::kWeights;
    const auto w = random_ternary(rows * cols, g);
    const auto packed = pack<Block>(w, rows, cols);
    auto x = activations(2, cols, padded, g, 0);
    std::vector<std::int32_t> y(2 * rows);
    ek::ref::ternary_gemm(packed.data(), rows, nb, x.data(), padded, 2, y.data(), rows);
    for (std::size_t t = 0; t < 2; ++t)
      for (std::size_t r = 0; r < rows; ++r) {
        std::int64_t s = 0;
        for (std::size_t k = 0; k < cols; ++k) s += w[r * cols + k] * x[t * padded + k];
        ASSERT_EQ(y[t * rows + r], s);
      }
  }
}

TEST(TernaryFormat, BlockSizes) {
  EXPECT_EQ(sizeof(ek::BlockTQ2) * 8.0 / ek::BlockTQ2::kWeights, 2.0);
  EXPECT_EQ(sizeof(ek::BlockTQ1) * 8.0 / ek::BlockTQ1::kWeights, 1.6);
  EXPECT_EQ(ek::blocks_per_row<ek::BlockTQ2>(4096), 32u);
  EXPECT_EQ(ek::blocks_per_row<ek::BlockTQ1>(4096), 26u);  // 1.625 bpw
  EXPECT_EQ(ek::blocks_per_row<ek::BlockTQ1>(11008), 69u);
  EXPECT_EQ(ek::blocks_per_row<ek::BlockTQ2>(1), 1u);
}

TEST(TernaryFormat, Tq1CodecExhaustive) {
  // Every 5-digit base-3 number: encode, decode by definition (division), and by the kernels' carry
  // trick in all three forms (unsigned multiply; signed compare thresholds after XOR 0x80).
  for (unsigned v = 0; v < 243; ++v) {
    unsigned t[5];
    for (int i = 0; i < 5; ++i) t[i] = (v / (i == 0 ? 81 : i == 1 ? 27 : i == 2 ? 9 : i == 3 ? 3 : 1)) % 3;
    const std::uint8_t b = ek::ref::tq1_encode(t);
    unsigned q = b;
    int s = static_cast<std::int8_t>(b ^ 0x80);
    for (int i = 0; i < 5; ++i) {
      ASSERT_EQ(ek::ref::tq1_digit(b, i), t[i]) << "v=" << v << " digit " << i;
      ASSERT_EQ((q * 3) >> 8, t[i]);
      ASSERT_EQ(static_cast<unsigned>((s > -43) + (s > 42)), t[i]);
      q = (q * 3) & 255u;
      s = static_cast<std::int8_t>(static_cast<std::uint8_t>(3 * s));  // wrapping int8 multiply by 3
    }
  }
}

template <class Block>
void check_roundtrip(std::mt19937& g) {
  for (std::size_t cols : {1u, 5u, 31u, 32u, 33u, 127u, 128u, 129u, 159u, 160u, 161u, 319u, 320u, 1000u, 4096u}) {
    const std::size_t rows = 3;
    const auto w = random_ternary(rows * cols, g);
    const auto packed = pack<Block>(w, rows, cols);
    const std::size_t nb = ek::blocks_per_row<Block>(cols);
    ASSERT_EQ(packed.size(), rows * nb);
    std::vector<std::int8_t> back(rows * cols, 9);
    for (std::size_t r = 0; r < rows; ++r) ek::ref::unpack_row(packed.data() + r * nb, cols, back.data() + r * cols);
    ASSERT_EQ(back, w) << name<Block>() << " cols=" << cols;
    // padding decodes to 0, by the twin and by the portable decoder
    std::int8_t all[Block::kWeights], port[Block::kWeights];
    ek::ref::unpack_block(packed[nb - 1], all);
    ek::portable::decode(packed[nb - 1], port);
    const std::size_t used = cols - (nb - 1) * Block::kWeights;
    for (std::size_t k = 0; k < Block::kWeights; ++k) {
      ASSERT_EQ(port[k], all[k]);
      if (k >= used) {
        ASSERT_EQ(all[k], 0) << "padding at " << k;
      }
    }
  }
}

TEST(TernaryFormat, PackRoundTripTQ2) {
  auto g = eftest::rng(1100);
  check_roundtrip<ek::BlockTQ2>(g);
}

TEST(TernaryFormat, PackRoundTripTQ1) {
  auto g = eftest::rng(1101);
  check_roundtrip<ek::BlockTQ1>(g);
}

TEST(TernaryFormat, Tq2BitLayout) {
  // weight 32 p + j sits in bits [2p, 2p + 2) of byte j as w + 1
  std::vector<std::int8_t> w(128, 0);
  w[0] = -1;    // byte 0 bits 0-1 = 0
  w[33] = 1;    // byte 1 bits 2-3 = 2
  w[127] = -1;  // byte 31 bits 6-7 = 0
  ek::BlockTQ2 b;
  ek::ref::pack_block(w.data(), 128, b);
  EXPECT_EQ(b.qs[0], 0x54);  // 01 01 01 00
  EXPECT_EQ(b.qs[1], 0x59);  // 01 01 10 01
  EXPECT_EQ(b.qs[31], 0x15);  // 00 01 01 01
  EXPECT_EQ(b.qs[5], 0x55);
}

TEST(TernaryKernels, TwinsEqualPlainDot) {
  auto g = eftest::rng(1102);
  check_twin_against_plain_dot<ek::BlockTQ2>(g);
  check_twin_against_plain_dot<ek::BlockTQ1>(g);
}

// The per-row digit sums against the weights: sum of w + 1 over the columns, plus 1 per padding weight.
TEST(TernaryKernels, DigitSums) {
  auto g = eftest::rng(1106);
  auto run = [&](auto tag) {
    using Block = decltype(tag);
    for (std::size_t cols : {1u, 159u, 160u, 161u, 700u}) {
      const std::size_t rows = 3, nb = ek::blocks_per_row<Block>(cols);
      const auto w = random_ternary(rows * cols, g);
      const auto d = digit_sums(pack<Block>(w, rows, cols), rows, nb);
      for (std::size_t r = 0; r < rows; ++r) {
        std::int32_t want = static_cast<std::int32_t>(nb * Block::kWeights - cols);
        for (std::size_t k = 0; k < cols; ++k) want += w[r * cols + k] + 1;
        ASSERT_EQ(d[r], want) << name<Block>() << " cols=" << cols << " row " << r;
      }
    }
  };
  run(ek::BlockTQ2{});
  run(ek::BlockTQ1{});
}

TEST(TernaryKernels, GemmGemvMatchTwinTQ2) {
  std::printf("[ isa      ] %s\n", eigenformer::isa_name());
  auto g = eftest::rng(1103);
  check_shapes<ek::BlockTQ2>(g);
}

TEST(TernaryKernels, GemmGemvMatchTwinTQ1) {
  auto g = eftest::rng(1104);
  check_shapes<ek::BlockTQ1>(g);
}

TEST(TernaryKernels, LongRowsReachFlushBounds) {
  // 40 blocks of all +1 weights against -128: every int16 partial sum is at its bound for the
  // longest run before widening; the int32 total is -128 * cols. Against 127 (mode 2), the AVX2 TQ1
  // GEMV's lanes (x + 128 = 255 times -d = -2) reach theirs: 6 blocks x 5 planes x -1020 = -30600.
  auto g = eftest::rng(1105);
  for (std::size_t cols : {40u * 128u, 40u * 160u + 3u}) {
    std::vector<std::int8_t> w(2 * cols, 1);
    for (std::size_t k = 0; k < cols; ++k) w[cols + k] = -1;
    auto run = [&](auto tag) {
      using Block = decltype(tag);
      const auto packed = pack<Block>(w, 2, cols);
      const std::size_t nb = ek::blocks_per_row<Block>(cols), padded = nb * Block::kWeights;
      for (int mode : {1, 2}) {
        auto x = activations(3, cols, padded, g, mode);
        const auto xs = sums(x, 3, padded);
        std::vector<std::int32_t> y(6);
        const auto dsum = digit_sums(packed, 2, nb);
        ek::ternary_gemm(packed.data(), 2, nb, x.data(), padded, xs.data(), dsum.data(), 3, y.data(), 2);
        const std::int32_t v = (mode == 1 ? -128 : 127) * static_cast<std::int32_t>(cols);
        for (int t = 0; t < 3; ++t) {
          ASSERT_EQ(y[2 * t], v);
          ASSERT_EQ(y[2 * t + 1], -v);
        }
        ek::ternary_gemv(packed.data(), 2, nb, x.data(), xs[0], dsum.data(), y.data());
        ASSERT_EQ(y[0], v);
        ASSERT_EQ(y[1], -v);
      }
    };
    run(ek::BlockTQ2{});
    run(ek::BlockTQ1{});
  }
}

// ---------------------------------------------------------------------------------------------
// Activation quantization and rescale
// ---------------------------------------------------------------------------------------------

void check_quantize(const std::vector<float>& x, const char* what) {
  const std::size_t n = x.size(), pad = n + 37;
  std::vector<std::int8_t> q1(pad, 99), q2(pad, 99), q3(pad, 99);
  std::int32_t s1 = 1, s2 = 2, s3 = 3;
  const float a = ek::ref::quantize_absmax_i8(x.data(), n, pad, q1.data(), &s1);
  const float b = ek::quantize_absmax_i8(x.data(), n, pad, q2.data(), &s2);
  const float c = ek::portable::quantize_absmax_i8(x.data(), n, pad, q3.data(), &s3);
  if (std::isnan(a)) {
    ASSERT_TRUE(std::isnan(b)) << what;
    ASSERT_TRUE(std::isnan(c)) << what;
  } else {
    ASSERT_EQ(a, b) << what << " n=" << n;
    ASSERT_EQ(a, c) << what;
  }
  ASSERT_EQ(q1, q2) << what << " n=" << n;
  ASSERT_EQ(q1, q3) << what;
  ASSERT_EQ(s1, s2) << what;
  ASSERT_EQ(s1, s3) << what;
  std::int32_t s = 0;
  for (std::size_t k = 0; k < pad; ++k) {
    s += q1[k];
    if (k >= n) {
      ASSERT_EQ(q1[k], 0);
    }
  }
  ASSERT_EQ(s, s1);
}

TEST(TernaryKernels, QuantizeMatchesTwin) {
  auto g = eftest::rng(1106);
  for (std::size_t n : eftest::tail_sizes()) {
    check_quantize(eftest::normal(n, 1.0f, g), "normal");
    check_quantize(eftest::uniform(n, -1e-7f, 1e-7f, g), "below the 1e-5 clamp");
    check_quantize(std::vector<float>(n, 0.0f), "zeros");
    auto big = eftest::normal(n, 1e30f, g);
    check_quantize(big, "huge");
  }
}

TEST(TernaryKernels, QuantizeValuesAndTies) {
  // max|x| = 127: scale 1 exactly, so x = k + 0.5 are exact ties; round half to even (torch.round).
  std::vector<float> x = {127.0f, 0.5f, 1.5f, 2.5f, -0.5f, -1.5f, -2.5f, 126.5f, -126.5f, -127.0f, 3.49f};
  std::vector<std::int8_t> q(x.size());
  std::int32_t s = 0;
  for (int variant = 0; variant < 2; ++variant) {
    const float sc = variant == 0 ? ek::quantize_absmax_i8(x.data(), x.size(), x.size(), q.data(), &s)
                                  : ek::ref::quantize_absmax_i8(x.data(), x.size(), x.size(), q.data(), &s);
    EXPECT_EQ(sc, 1.0f);
    const std::vector<std::int8_t> want = {127, 0, 2, 2, 0, -2, -2, 126, -126, -127, 3};
    EXPECT_EQ(q, want);
  }
  // 40 copies so that the SIMD body (not only the tail) sees the ties
  std::vector<float> y;
  for (int r = 0; r < 4; ++r) y.insert(y.end(), x.begin(), x.end());
  check_quantize(y, "ties in the SIMD body");
}

TEST(TernaryKernels, QuantizeNonFiniteRows) {
  auto g = eftest::rng(1107);
  for (std::size_t n : {1u, 7u, 16u, 33u, 100u}) {
    for (float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                      -std::numeric_limits<float>::infinity()}) {
      for (std::size_t at : {std::size_t(0), n / 2, n - 1}) {
        auto x = eftest::normal(n, 1.0f, g);
        x[at] = bad;
        check_quantize(x, "non-finite");
        std::vector<std::int8_t> q(n);
        std::int32_t s = 5;
        EXPECT_TRUE(std::isnan(ek::quantize_absmax_i8(x.data(), n, n, q.data(), &s)));
        EXPECT_EQ(s, 0);
      }
    }
  }
}

TEST(TernaryKernels, RescaleMatchesTwin) {
  auto g = eftest::rng(1108);
  std::uniform_int_distribution<std::int32_t> d(-600000, 600000);
  for (std::size_t n : eftest::tail_sizes()) {
    std::vector<std::int32_t> acc(n);
    for (auto& a : acc) a = d(g);
    const auto bias = eftest::normal(n, 1.0f, g);
    for (bool multiply : {false, true})
      for (const float* b : {static_cast<const float*>(nullptr), bias.data()}) {
        std::vector<float> y1(n), y2(n), y3(n);
        ek::ref::rescale(acc.data(), n, 3.7f, 0.61f, multiply, b, y1.data());
        ek::rescale(acc.data(), n, 3.7f, 0.61f, multiply, b, y2.data());
        ek::portable::rescale(acc.data(), n, 3.7f, 0.61f, multiply, b, y3.data());
        for (std::size_t r = 0; r < n; ++r) {
          ASSERT_EQ(y1[r], y2[r]) << "n=" << n << " r=" << r << " multiply=" << multiply;
          ASSERT_EQ(y1[r], y3[r]);
        }
      }
  }
}

}  // namespace

// ODR check, part B (see test_odr_a.cpp).
#include <eigenformer/eigenformer.hpp>
#include <gtest/gtest.h>

float odr_part_a();

TEST(Odr, TwoTranslationUnitsIncludingTheUmbrellaHeaderLink) {
  eigenformer::Matrix<float> x = eigenformer::Matrix<float>::Constant(2, 5, 0.5f);
  eigenformer::ops::softmax<float>(x);
  EXPECT_EQ(odr_part_a(), x(1, 3));
  EXPECT_FLOAT_EQ(x(1, 3), 0.2f);
  EXPECT_STRNE(eigenformer::isa_name(), "");
}

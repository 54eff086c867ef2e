// Mixed-precision weights: the bf16/f16 <-> f32 conversions (rounding, special
// values), and F32/BF16/F16 files loading into f32/bf16/f16 parameter buffers
// (whole and sliced), checkpoints of bf16 buffers and --export-weights.
#include "llmir/runtime/Backend.h"
#include "llmir/runtime/Checkpoint.h"
#include "llmir/runtime/Communicator.h"
#include "llmir/runtime/Executor.h"
#include "llmir/runtime/Float16.h"
#include "llmir/runtime/SafeTensors.h"

#include "IoTestUtil.h"
#include "TestUtil.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>

namespace rt = llmir::runtime;
using llmir::runtime::StatusCode;
using llmir::runtime::testing::randomVector;
using llmir::runtime::testing::TempDir;

namespace {

uint32_t bitsOf(float f) {
  uint32_t b;
  std::memcpy(&b, &f, 4);
  return b;
}

float floatOf(uint32_t b) {
  float f;
  std::memcpy(&f, &b, 4);
  return f;
}

constexpr float kInf = std::numeric_limits<float>::infinity();

// --- Conversions --------------------------------------------------------

TEST(Float16Test, Bfloat16RoundsToNearestEven) {
  // 1 + 2^-8 lies halfway between 1 (0x3F80, even) and 1 + 2^-7 (0x3F81).
  EXPECT_EQ(rt::floatToBfloat16(1.0f + std::ldexp(1.0f, -8)), 0x3F80);
  // 1 + 3*2^-8 lies halfway between 0x3F81 and 0x3F82 (even).
  EXPECT_EQ(rt::floatToBfloat16(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3F82);
  // Just above the first tie rounds up.
  EXPECT_EQ(rt::floatToBfloat16(floatOf(bitsOf(1.0f + std::ldexp(1.0f, -8)) + 1)), 0x3F81);
  EXPECT_EQ(rt::floatToBfloat16(-2.5f), 0xC020);
  EXPECT_EQ(rt::floatToBfloat16(-0.0f), 0x8000);
  EXPECT_EQ(rt::floatToBfloat16(kInf), 0x7F80);
  EXPECT_EQ(rt::floatToBfloat16(-kInf), 0xFF80);
  // Rounding the largest float overflows to infinity.
  EXPECT_EQ(rt::floatToBfloat16(std::numeric_limits<float>::max()), 0x7F80);
  // Subnormal floats keep their top bits.
  EXPECT_EQ(rt::floatToBfloat16(floatOf(0x00010000)), 0x0001);
}

TEST(Float16Test, Bfloat16NaNStaysNaN) {
  // A NaN whose payload lives only in the low 16 bits must not become inf.
  for (uint32_t nan : {0x7F800001u, 0x7FC00000u, 0xFF800001u, 0x7FFFFFFFu}) {
    const uint16_t b = rt::floatToBfloat16(floatOf(nan));
    EXPECT_TRUE(std::isnan(rt::bfloat16ToFloat(b))) << std::hex << nan;
    EXPECT_EQ(b & 0x8000, (nan >> 16) & 0x8000) << "sign of " << std::hex << nan;
  }
  // Every bf16 value round-trips through float (NaNs as NaNs).
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const float f = rt::bfloat16ToFloat(static_cast<uint16_t>(h));
    if (std::isnan(f))
      EXPECT_TRUE(std::isnan(rt::bfloat16ToFloat(rt::floatToBfloat16(f))));
    else
      ASSERT_EQ(rt::floatToBfloat16(f), h) << std::hex << h;
  }
}

TEST(Float16Test, HalfRoundsToNearestEven) {
  EXPECT_EQ(rt::floatToHalf(1.0f), 0x3C00);
  EXPECT_EQ(rt::floatToHalf(-2.5f), 0xC100);
  // 1 + 2^-11 is halfway between 1 (even) and 1 + 2^-10.
  EXPECT_EQ(rt::floatToHalf(1.0f + std::ldexp(1.0f, -11)), 0x3C00);
  EXPECT_EQ(rt::floatToHalf(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3C02);
  EXPECT_EQ(rt::floatToHalf(floatOf(bitsOf(1.0f + std::ldexp(1.0f, -11)) + 1)), 0x3C01);
  EXPECT_EQ(rt::floatToHalf(-0.0f), 0x8000);
}

TEST(Float16Test, HalfOverflowInfAndNaN) {
  EXPECT_EQ(rt::floatToHalf(65504.0f), 0x7BFF); // largest finite
  EXPECT_EQ(rt::floatToHalf(65519.99f), 0x7BFF);
  EXPECT_EQ(rt::floatToHalf(65520.0f), 0x7C00); // the tie rounds to "even" inf
  EXPECT_EQ(rt::floatToHalf(1e10f), 0x7C00);
  EXPECT_EQ(rt::floatToHalf(-1e10f), 0xFC00);
  EXPECT_EQ(rt::floatToHalf(kInf), 0x7C00);
  EXPECT_EQ(rt::floatToHalf(-kInf), 0xFC00);
  for (uint32_t nan : {0x7F800001u, 0x7FC00000u, 0xFFC00001u}) {
    const uint16_t h = rt::floatToHalf(floatOf(nan));
    EXPECT_TRUE(std::isnan(rt::halfToFloat(h))) << std::hex << nan;
    EXPECT_EQ(h & 0x8000, (nan >> 16) & 0x8000);
  }
  EXPECT_TRUE(std::isinf(rt::halfToFloat(0x7C00)));
  EXPECT_TRUE(std::isnan(rt::halfToFloat(0x7C01)));
}

TEST(Float16Test, HalfSubnormals) {
  const float tiny = std::ldexp(1.0f, -24); // smallest half subnormal
  EXPECT_EQ(rt::floatToHalf(tiny), 0x0001);
  EXPECT_EQ(rt::floatToHalf(std::ldexp(1.0f, -25)), 0x0000); // tie -> even (zero)
  EXPECT_EQ(rt::floatToHalf(-std::ldexp(1.0f, -25)), 0x8000);
  EXPECT_EQ(rt::floatToHalf(1.5f * std::ldexp(1.0f, -25)), 0x0001);
  EXPECT_EQ(rt::floatToHalf(3 * std::ldexp(1.0f, -25)), 0x0002); // tie -> even
  EXPECT_EQ(rt::floatToHalf(5 * std::ldexp(1.0f, -25)), 0x0002); // tie -> even
  EXPECT_EQ(rt::floatToHalf(1023 * tiny), 0x03FF);                // largest subnormal
  EXPECT_EQ(rt::floatToHalf(std::ldexp(1.0f, -14)), 0x0400);      // smallest normal
  // Halfway between the largest subnormal and the smallest normal: even (normal).
  EXPECT_EQ(rt::floatToHalf(1023.5f * tiny), 0x0400);
  EXPECT_EQ(rt::floatToHalf(1e-30f), 0x0000);
  EXPECT_EQ(rt::floatToHalf(floatOf(0x00000001)), 0x0000); // float subnormal
  EXPECT_EQ(rt::halfToFloat(0x0001), tiny);
  EXPECT_EQ(rt::halfToFloat(0x8001), -tiny);
}

TEST(Float16Test, HalfRoundTripsAndMatchesRoundingOfDoubles) {
  // Every half value round-trips through float (NaNs as NaNs).
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const float f = rt::halfToFloat(static_cast<uint16_t>(h));
    if (std::isnan(f))
      EXPECT_TRUE(std::isnan(rt::halfToFloat(rt::floatToHalf(f))));
    else
      ASSERT_EQ(rt::floatToHalf(f), h) << std::hex << h;
  }
  // Random floats: the result is the nearest half (ties to even), judged by
  // comparing against both neighbours in double precision.
  std::mt19937 gen(7);
  std::uniform_int_distribution<uint32_t> mantissa(0, 0x7FFFFFu), sign(0, 1);
  std::uniform_int_distribution<int> exponent(-27, 16); // zero ... overflow
  for (int i = 0; i < 200000; ++i) {
    // Half the samples on a multiple of 2^-13 of the significand: many ties.
    uint32_t m = mantissa(gen);
    if (i % 2)
      m &= ~0xFFFu;
    const float f = floatOf(sign(gen) << 31 |
                            static_cast<uint32_t>(exponent(gen) + 127) << 23 | m);
    const uint16_t h = rt::floatToHalf(f);
    const double got = rt::halfToFloat(h), x = f;
    const uint16_t mag = h & 0x7FFF;
    if (mag == 0x7C00) {
      ASSERT_GE(std::fabs(x), 65520.0) << f;
      continue;
    }
    const double up = rt::halfToFloat(static_cast<uint16_t>((h & 0x8000) | (mag + 1)));
    const double down = mag == 0 ? -rt::halfToFloat(static_cast<uint16_t>((h & 0x8000) | 1))
                                 : rt::halfToFloat(static_cast<uint16_t>((h & 0x8000) | (mag - 1)));
    const double err = std::fabs(x - got);
    ASSERT_LE(err, std::fabs(x - up)) << f;
    ASSERT_LE(err, std::fabs(x - down)) << f;
    if (err == std::fabs(x - up) || err == std::fabs(x - down)) {
      ASSERT_EQ(h & 1, 0) << "tie not to even: " << f;
    }
  }
}

// --- Loading into a program ----------------------------------------------

/// A one-rank program binding "w" [4, 6] (the rows [1, 3) with `sliced`) and
/// "b" [6], both of `dtype`, with AdamW states of w in f32.
rt::Program tinyProgram(rt::ScalarType dtype, bool sliced) {
  rt::Program p;
  p.version = rt::kProgramVersion;
  p.producer = "WeightsDTypeTest";
  p.plan.globalBatch = 1;
  p.plan.seq = 1;
  p.ranks.push_back({0, 0, {}});
  rt::ParamInfo w{"w", dtype, {4, 6}, {}}, b{"b", dtype, {6}, {}};
  if (sliced) {
    rt::ParamSlice rows; // rank 0 holds rows [1, 3)
    rows.segments.push_back(rt::Segment{{1, 3}, {0, 6}});
    w.slices.push_back(rows);
  }
  p.params = {w, b};
  rt::StageProgram stage;
  int64_t offset = 0;
  auto buffer = [&](rt::ScalarType t, std::vector<int64_t> shape) {
    rt::BufferRef ref{offset, t, std::move(shape)};
    offset += (ref.bytes() + 63) / 64 * 64;
    return ref;
  };
  stage.params.push_back({"w", buffer(dtype, {sliced ? 2 : 4, 6})});
  stage.params.push_back({"b", buffer(dtype, {6})});
  stage.states.push_back({"w.exp_avg", buffer(rt::ScalarType::F32, {sliced ? 2 : 4, 6})});
  stage.arenaBytes = offset;
  p.stages.push_back(std::move(stage));
  return p;
}

struct Loaded {
  std::unique_ptr<rt::Backend> backend = rt::createCpuBackend();
  rt::SingleProcessCommunicator comm;
  std::unique_ptr<rt::Executor> exec;
};

void create(const rt::Program &program, Loaded &l) {
  auto exec = rt::Executor::create(program, 0, &l.comm, *l.backend);
  ASSERT_TRUE(exec.isOk()) << exec.status().toString();
  l.exec = std::move(*exec);
}

std::vector<float> roundedTo(rt::DType dtype, const std::vector<float> &v) {
  std::vector<float> out;
  for (float x : v)
    out.push_back(dtype == rt::DType::BF16 ? rt::bfloat16ToFloat(rt::floatToBfloat16(x))
                  : dtype == rt::DType::F16 ? rt::halfToFloat(rt::floatToHalf(x))
                                            : x);
  return out;
}

class WeightsDTypeTest : public ::testing::Test {
protected:
  void SetUp() override {
    w = randomVector(24, 11);
    b = randomVector(6, 12);
    w[0] = 1.0f + std::ldexp(1.0f, -8); // a bf16 tie
    w[7] = 70000.0f;                    // f16 overflow
    w[8] = std::ldexp(1.0f, -20);       // f16 subnormal
  }
  std::string write(rt::DType dtype) {
    const std::string path = dir.file(std::string(rt::dtypeName(dtype)) + ".safetensors");
    EXPECT_TRUE(rt::writeSafeTensors(path, {{"w", {4, 6}, w.data(), dtype},
                                            {"b", {6}, b.data(), dtype}})
                    .isOk());
    return path;
  }
  TempDir dir;
  std::vector<float> w, b;
};

TEST_F(WeightsDTypeTest, WriterStoresRoundedValues) {
  for (rt::DType dtype : {rt::DType::F32, rt::DType::BF16, rt::DType::F16}) {
    auto file = rt::SafeTensorsFile::open(write(dtype));
    ASSERT_TRUE(file.isOk()) << file.status().toString();
    EXPECT_EQ(file->info("w")->dtype, dtype);
    EXPECT_EQ(*file->readF32("w"), roundedTo(dtype, w)) << rt::dtypeName(dtype);
  }
  float x = 1;
  EXPECT_EQ(rt::writeSafeTensors(dir.file("i"), {{"x", {1}, &x, rt::DType::I32}}).code(),
            StatusCode::InvalidArgument);
}

TEST_F(WeightsDTypeTest, NonFiniteValuesAreRefusedOnLoad) {
  // 70000 overflows f16: the F16 file holds an Inf, which loading names.
  for (bool sliced : {false, true}) {
    const rt::Program program = tinyProgram(rt::ScalarType::F32, sliced);
    Loaded l;
    create(program, l);
    auto file = rt::SafeTensorsFile::open(write(rt::DType::F16));
    ASSERT_TRUE(file.isOk());
    rt::Status st = l.exec->loadParams(*file);
    EXPECT_EQ(st.code(), StatusCode::DataLoss);
    EXPECT_NE(st.message().find("tensor 'w' has a non-finite value (inf) at element 7 "
                                "(index [1, 1])"),
              std::string::npos)
        << st.message();
  }
}

TEST_F(WeightsDTypeTest, Bf16AndF16FilesLoadIntoF32Program) {
  w[7] = 60000.0f; // large but finite in f16 (an Inf is refused on load)
  for (bool sliced : {false, true})
    for (rt::DType dtype : {rt::DType::BF16, rt::DType::F16}) {
      const rt::Program program = tinyProgram(rt::ScalarType::F32, sliced);
      Loaded l;
      create(program, l);
      auto file = rt::SafeTensorsFile::open(write(dtype));
      ASSERT_TRUE(file.isOk());
      ASSERT_TRUE(l.exec->loadParams(*file).isOk());
      std::vector<float> want = roundedTo(dtype, w);
      if (sliced)
        want = std::vector<float>(want.begin() + 6, want.begin() + 18);
      EXPECT_EQ(*l.exec->param("w"), want) << rt::dtypeName(dtype) << " sliced " << sliced;
      EXPECT_EQ(*l.exec->param("b"), roundedTo(dtype, b));
    }
}

TEST_F(WeightsDTypeTest, AnyFileLoadsIntoBf16AndF16Programs) {
  w[7] = 60000.0f; // large but finite in f16 (an Inf is refused on load)
  for (rt::ScalarType bufferType : {rt::ScalarType::BF16, rt::ScalarType::F16})
    for (rt::DType fileType : {rt::DType::F32, rt::DType::BF16, rt::DType::F16}) {
      const rt::Program program = tinyProgram(bufferType, true);
      Loaded l;
      create(program, l);
      auto file = rt::SafeTensorsFile::open(write(fileType));
      ASSERT_TRUE(file.isOk());
      ASSERT_TRUE(l.exec->loadParams(*file).isOk());
      // One rounding from the file's value (exact in f32) to the buffer type.
      const rt::DType target =
          bufferType == rt::ScalarType::BF16 ? rt::DType::BF16 : rt::DType::F16;
      std::vector<float> want = roundedTo(target, roundedTo(fileType, w));
      want = std::vector<float>(want.begin() + 6, want.begin() + 18);
      EXPECT_EQ(*l.exec->param("w"), want)
          << rt::dtypeName(fileType) << " into " << rt::scalarTypeName(bufferType);
    }
}

TEST_F(WeightsDTypeTest, OtherDTypesAndMissingTensorsAreErrors) {
  const rt::Program program = tinyProgram(rt::ScalarType::F32, false);
  Loaded l;
  create(program, l);
  // "w" as U8 (same element count), then as I64.
  for (rt::DType bad : {rt::DType::U8, rt::DType::I64}) {
    const std::string name = rt::dtypeName(bad);
    const int64_t size = rt::dtypeSize(bad);
    std::string header = "{\"b\":{\"dtype\":\"F32\",\"shape\":[6],\"data_offsets\":[0,24]},"
                         "\"w\":{\"dtype\":\"" + name + "\",\"shape\":[4,6],\"data_offsets\":[24," +
                         std::to_string(24 + 24 * size) + "]}}";
    const std::string path = dir.file(name + ".safetensors");
    llmir::runtime::testing::writeFileBytes(
        path, llmir::runtime::testing::safetensorsBytes(header, std::string(24 + 24 * size, '\0')));
    auto file = rt::SafeTensorsFile::open(path);
    ASSERT_TRUE(file.isOk()) << file.status().toString();
    rt::Status st = l.exec->loadParams(*file);
    EXPECT_EQ(st.code(), StatusCode::InvalidArgument);
    for (const std::string &needle : {path, std::string("'w'"), name})
      EXPECT_NE(st.message().find(needle), std::string::npos) << st.message();
  }
  // A bf16 file without "b".
  const std::string path = dir.file("nob.safetensors");
  ASSERT_TRUE(rt::writeSafeTensors(path, {{"w", {4, 6}, w.data(), rt::DType::BF16}}).isOk());
  auto file = rt::SafeTensorsFile::open(path);
  ASSERT_TRUE(file.isOk());
  rt::Status st = l.exec->loadParams(*file);
  EXPECT_EQ(st.code(), StatusCode::NotFound);
  EXPECT_NE(st.message().find("'b'"), std::string::npos) << st.message();
}

TEST_F(WeightsDTypeTest, CheckpointOfBf16ProgramIsF32AndResumes) {
  const rt::Program program = tinyProgram(rt::ScalarType::BF16, false);
  Loaded l;
  create(program, l);
  auto file = rt::SafeTensorsFile::open(write(rt::DType::F32));
  ASSERT_TRUE(file.isOk());
  ASSERT_TRUE(l.exec->loadParams(*file).isOk());
  const std::string ck = dir.file("ck");
  ASSERT_TRUE(rt::saveCheckpoint(program, *l.exec, l.comm, ck, 3).isOk());
  auto saved = rt::SafeTensorsFile::open(rt::checkpointFile(ck));
  ASSERT_TRUE(saved.isOk());
  EXPECT_EQ(saved->info("w")->dtype, rt::DType::F32);
  EXPECT_EQ(saved->info("w.exp_avg")->dtype, rt::DType::F32);
  EXPECT_EQ(*saved->readF32("w"), roundedTo(rt::DType::BF16, w));

  Loaded again;
  create(program, again);
  auto next = rt::resumeCheckpoint(*again.exec, ck);
  ASSERT_TRUE(next.isOk()) << next.status().toString();
  EXPECT_EQ(*next, 3);
  EXPECT_EQ(*again.exec->param("w"), roundedTo(rt::DType::BF16, w));
  ::unlink(rt::checkpointFile(ck).c_str());
  ::rmdir(ck.c_str());
}

TEST_F(WeightsDTypeTest, ExportWritesTheChosenDType) {
  const rt::Program program = tinyProgram(rt::ScalarType::F32, false);
  Loaded l;
  create(program, l);
  auto file = rt::SafeTensorsFile::open(write(rt::DType::F32));
  ASSERT_TRUE(file.isOk());
  ASSERT_TRUE(l.exec->loadParams(*file).isOk());
  for (rt::DType dtype : {rt::DType::F32, rt::DType::BF16, rt::DType::F16}) {
    const std::string out = dir.file("export.safetensors");
    ASSERT_TRUE(rt::exportWeights(program, *l.exec, l.comm, out, dtype).isOk());
    auto exported = rt::SafeTensorsFile::open(out);
    ASSERT_TRUE(exported.isOk());
    EXPECT_EQ(exported->tensorNames(), (std::vector<std::string>{"b", "w"}));
    EXPECT_EQ(exported->info("w")->dtype, dtype);
    EXPECT_EQ(*exported->readF32("w"), roundedTo(dtype, w));
  }
}

} // namespace

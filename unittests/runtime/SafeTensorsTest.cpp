// Safetensors and .npy: round trips, dtype conversion, slices, and rejection of malformed files.
#include "llmir/runtime/Npy.h"
#include "llmir/runtime/SafeTensors.h"

#include "IoTestUtil.h"
#include "TestUtil.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>

namespace rt = llmir::runtime;
using llmir::runtime::StatusCode;
using llmir::runtime::testing::randomVector;
using llmir::runtime::testing::readFileBytes;
using llmir::runtime::testing::safetensorsBytes;
using llmir::runtime::testing::TempDir;
using llmir::runtime::testing::writeFileBytes;

namespace {

std::string bytesOf(const void *p, size_t n) {
  return std::string(static_cast<const char *>(p), n);
}

TEST(SafeTensorsTest, RoundTripWithMetadataAndSlices) {
  TempDir dir;
  const std::string path = dir.file("w.safetensors");
  auto a = randomVector(4 * 6 * 5, 1), b = randomVector(7, 2);
  float scalar = 3.5f;
  std::map<std::string, std::string> meta = {{"format", "pt"}, {"note", "quote\" and \\ \n"}};
  ASSERT_TRUE(rt::writeSafeTensors(path,
                                   {{"model.layers.0.attn.q_proj.weight", {4, 6, 5}, a.data()},
                                    {"bias", {7}, b.data()},
                                    {"scalar", {}, &scalar},
                                    {"empty", {0, 3}, nullptr}},
                                   meta)
                  .isOk());
  EXPECT_EQ(dir.files().size(), 1u) << "temporary file left behind";
  auto fileOr = rt::SafeTensorsFile::open(path);
  ASSERT_TRUE(fileOr.isOk()) << fileOr.status().toString();
  rt::SafeTensorsFile file = std::move(fileOr).value();
  EXPECT_EQ(file.tensorNames(),
            (std::vector<std::string>{"bias", "empty", "model.layers.0.attn.q_proj.weight", "scalar"}));
  EXPECT_EQ(file.metadata(), meta);
  auto info = file.info("model.layers.0.attn.q_proj.weight");
  ASSERT_TRUE(info.isOk());
  EXPECT_EQ(info->dtype, rt::DType::F32);
  EXPECT_EQ(info->shape, (std::vector<int64_t>{4, 6, 5}));
  EXPECT_EQ(file.info("nope").status().code(), StatusCode::NotFound);

  EXPECT_EQ(*file.readF32("model.layers.0.attn.q_proj.weight"), a);
  EXPECT_EQ(*file.readF32("bias"), b);
  EXPECT_EQ(*file.readF32("scalar"), std::vector<float>{3.5f});
  EXPECT_TRUE(file.readF32("empty")->empty());

  // Every slice shape a tensor-parallel rank could ask for.
  const std::vector<std::vector<std::pair<int64_t, int64_t>>> slices = {
      {{1, 3}, {0, 6}, {0, 5}}, {{0, 4}, {2, 5}, {0, 5}}, {{0, 4}, {0, 6}, {1, 4}},
      {{3, 4}, {5, 6}, {4, 5}}, {{0, 4}, {0, 6}, {0, 5}}, {{2, 2}, {0, 6}, {0, 5}}};
  for (const auto &ranges : slices) {
    auto got = file.readSliceF32("model.layers.0.attn.q_proj.weight", ranges);
    ASSERT_TRUE(got.isOk()) << got.status().toString();
    std::vector<float> expected;
    for (int64_t i = ranges[0].first; i < ranges[0].second; ++i)
      for (int64_t j = ranges[1].first; j < ranges[1].second; ++j)
        for (int64_t k = ranges[2].first; k < ranges[2].second; ++k)
          expected.push_back(a[(i * 6 + j) * 5 + k]);
    EXPECT_EQ(*got, expected);
  }
  EXPECT_EQ(file.readSliceF32("bias", {{2, 8}}).status().code(), StatusCode::InvalidArgument);
  EXPECT_EQ(file.readSliceF32("bias", {{3, 2}}).status().code(), StatusCode::InvalidArgument);
  EXPECT_EQ(file.readSliceF32("bias", {{0, 1}, {0, 1}}).status().code(),
            StatusCode::InvalidArgument);

  // Overwriting is atomic and replaces the old file.
  ASSERT_TRUE(rt::writeSafeTensors(path, {{"bias", {7}, b.data()}}).isOk());
  auto again = rt::SafeTensorsFile::open(path);
  ASSERT_TRUE(again.isOk());
  EXPECT_EQ(again->tensorNames(), std::vector<std::string>{"bias"});
}

TEST(SafeTensorsTest, WriterRejectsBadInput) {
  TempDir dir;
  float x = 1;
  EXPECT_EQ(rt::writeSafeTensors(dir.file("a"), {{"x", {1}, &x}, {"x", {1}, &x}}).code(),
            StatusCode::InvalidArgument);
  EXPECT_EQ(rt::writeSafeTensors(dir.file("a"), {{"__metadata__", {1}, &x}}).code(),
            StatusCode::InvalidArgument);
  EXPECT_EQ(rt::writeSafeTensors(dir.file("a"), {{"x", {-1}, &x}}).code(),
            StatusCode::InvalidArgument);
  EXPECT_NE(rt::writeSafeTensors("/nonexistent-dir/a.safetensors", {{"x", {1}, &x}}).code(),
            StatusCode::Ok);
  EXPECT_TRUE(dir.files().empty());
}

TEST(SafeTensorsTest, ReadsF16Bf16AndIntegers) {
  TempDir dir;
  // 1.0, -2.5, 65504 (max), 2^-24 (smallest subnormal), inf as f16.
  const uint16_t f16[] = {0x3C00, 0xC100, 0x7BFF, 0x0001, 0x7C00, 0x0000};
  // 1.0, -2.5, 3.140625 as bf16.
  const uint16_t bf16[] = {0x3F80, 0xC020, 0x4049, 0x0000};
  const int32_t i32[] = {-1, 50256};
  const int64_t i64[] = {int64_t(1) << 40};
  std::string header = R"({"h":{"dtype":"F16","shape":[2,3],"data_offsets":[0,12]},)"
                       R"("b":{"dtype":"BF16","shape":[4],"data_offsets":[12,20]},)"
                       R"("i":{"dtype":"I32","shape":[2],"data_offsets":[20,28]},)"
                       R"("l":{"dtype":"I64","shape":[1],"data_offsets":[28,36]}})";
  std::string data = bytesOf(f16, 12) + bytesOf(bf16, 8) + bytesOf(i32, 8) + bytesOf(i64, 8);
  writeFileBytes(dir.file("m.safetensors"), safetensorsBytes(header, data));
  auto file = rt::SafeTensorsFile::open(dir.file("m.safetensors"));
  ASSERT_TRUE(file.isOk()) << file.status().toString();
  auto h = file->readF32("h");
  ASSERT_TRUE(h.isOk());
  EXPECT_EQ(*h, (std::vector<float>{1.0f, -2.5f, 65504.0f, std::ldexp(1.0f, -24),
                                    std::numeric_limits<float>::infinity(), 0.0f}));
  EXPECT_EQ(*file->readSliceF32("h", {{1, 2}, {0, 2}}),
            (std::vector<float>{std::ldexp(1.0f, -24), std::numeric_limits<float>::infinity()}));
  EXPECT_EQ(*file->readF32("b"), (std::vector<float>{1.0f, -2.5f, 3.140625f, 0.0f}));
  EXPECT_EQ(*file->readInt64("i"), (std::vector<int64_t>{-1, 50256}));
  EXPECT_EQ(*file->readInt64("l"), (std::vector<int64_t>{int64_t(1) << 40}));
  EXPECT_EQ(file->readF32("i").status().code(), StatusCode::InvalidArgument);
  EXPECT_EQ(file->readInt64("h").status().code(), StatusCode::InvalidArgument);
  EXPECT_TRUE(std::isnan(rt::halfToFloat(0x7E00)));
  EXPECT_EQ(rt::halfToFloat(0x8000), -0.0f);
  EXPECT_EQ(rt::halfToFloat(0x0400), std::ldexp(1.0f, -14)); // smallest normal
  EXPECT_EQ(rt::halfToFloat(0x03FF), std::ldexp(1023.0f, -24)); // largest subnormal
}

/// Opening must fail with a message containing `needle`.
void expectRejected(const std::string &header, const std::string &data,
                    const std::string &needle) {
  TempDir dir;
  writeFileBytes(dir.file("x"), safetensorsBytes(header, data));
  auto file = rt::SafeTensorsFile::open(dir.file("x"));
  ASSERT_FALSE(file.isOk()) << "accepted header: " << header;
  EXPECT_EQ(file.status().code(), StatusCode::DataLoss);
  EXPECT_NE(file.status().message().find(needle), std::string::npos)
      << file.status().message();
}

TEST(SafeTensorsTest, RejectsMalformedHeaders) {
  const std::string d8(8, '\0');
  expectRejected(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,16]}})", d8, "beyond");
  expectRejected(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", d8, "need 12");
  expectRejected(R"({"a":{"dtype":"C64","shape":[1],"data_offsets":[0,8]}})", d8,
                 "unsupported dtype \"C64\"");
  expectRejected(R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,8]}})", d8, "non-negative");
  expectRejected(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", d8, "begin > end");
  expectRejected(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                 R"("b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", d8, "overlaps");
  expectRejected(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", d8, "no tensor");
  expectRejected(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", d8, "cover");
  expectRejected(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":1}})", d8, "unknown key");
  expectRejected(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"a":{}})", d8, "duplicate");
  expectRejected(R"({"a":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}})", d8, "non-integer");
  expectRejected(R"({"a":{"dtype":"F32","shape":[99999999999999999999],"data_offsets":[0,8]}})",
                 d8, "int64");
  expectRejected(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}})",
                 d8, "too large");
  expectRejected(R"({"__metadata__":{"k":1}})", "", "not a string");
  expectRejected(R"({"__metadata__":{"k":"v"}} x)", "", "trailing");
  expectRejected(R"({"a":)", "", "JSON");
  expectRejected(R"({"a\x":1})", "", "escape");
  expectRejected(R"({"\ud800":1})", "", "surrogate");
  expectRejected(R"([1,2])", "", "not a JSON object");
  expectRejected(R"({"a":true})", "", "unsupported value");
  // Nesting depth 9 (> 8) inside the metadata.
  expectRejected(R"({"__metadata__":{"k":[[[[[[[[1]]]]]]]]}})", "", "nesting");
}

TEST(SafeTensorsTest, RejectsBadLengthsAndMissingFiles) {
  TempDir dir;
  EXPECT_EQ(rt::SafeTensorsFile::open(dir.file("missing")).status().code(), StatusCode::NotFound);
  writeFileBytes(dir.file("short"), "abc");
  EXPECT_EQ(rt::SafeTensorsFile::open(dir.file("short")).status().code(), StatusCode::DataLoss);
  std::string huge(8, '\xff');
  writeFileBytes(dir.file("huge"), huge + "{}");
  EXPECT_EQ(rt::SafeTensorsFile::open(dir.file("huge")).status().code(), StatusCode::DataLoss);
  std::string zero(8, '\0');
  writeFileBytes(dir.file("zero"), zero);
  EXPECT_EQ(rt::SafeTensorsFile::open(dir.file("zero")).status().code(), StatusCode::DataLoss);
  EXPECT_FALSE(rt::SafeTensorsFile::open(dir.path()).isOk()); // a directory
  // Header with escapes and unicode parses.
  writeFileBytes(dir.file("u"), safetensorsBytes(R"({"__metadata__":{"k\u00e9\ud83d\ude00":"a\/b\t"}}  )", ""));
  auto ok = rt::SafeTensorsFile::open(dir.file("u"));
  ASSERT_TRUE(ok.isOk()) << ok.status().toString();
  EXPECT_EQ(ok->metadata().at("k\xc3\xa9\xf0\x9f\x98\x80"), "a/b\t");
}

// ---- npy -----------------------------------------------------------------------

TEST(NpyTest, RoundTripsF32I64I32) {
  TempDir dir;
  auto f = randomVector(12, 3);
  ASSERT_TRUE(rt::writeNpy(dir.file("f.npy"), f.data(), {3, 4}).isOk());
  auto a = rt::readNpy(dir.file("f.npy"));
  ASSERT_TRUE(a.isOk()) << a.status().toString();
  EXPECT_EQ(a->dtype, rt::NpyDType::F32);
  EXPECT_EQ(a->shape, (std::vector<int64_t>{3, 4}));
  EXPECT_EQ(*a->toFloat32(), f);
  EXPECT_EQ(a->toInt64().status().code(), StatusCode::InvalidArgument);
  // Header is padded to 64 bytes like numpy's.
  EXPECT_EQ((readFileBytes(dir.file("f.npy")).size() - 48) % 64, 0u);

  std::vector<int64_t> ids = {0, 50256, -3, int64_t(1) << 35};
  ASSERT_TRUE(rt::writeNpy(dir.file("i.npy"), ids.data(), {4}).isOk());
  auto b = rt::readNpy(dir.file("i.npy"));
  ASSERT_TRUE(b.isOk());
  EXPECT_EQ(*b->toInt64(), ids);
  std::vector<int32_t> ids32 = {7, -1, 50000};
  ASSERT_TRUE(rt::writeNpy(dir.file("j.npy"), ids32.data(), {3}).isOk());
  EXPECT_EQ(*rt::readNpy(dir.file("j.npy"))->toInt64(), (std::vector<int64_t>{7, -1, 50000}));
  float s = 2.0f;
  ASSERT_TRUE(rt::writeNpy(dir.file("s.npy"), &s, {}).isOk());
  auto c = rt::readNpy(dir.file("s.npy"));
  ASSERT_TRUE(c.isOk());
  EXPECT_TRUE(c->shape.empty());
  EXPECT_EQ(*c->toFloat32(), std::vector<float>{2.0f});
  EXPECT_EQ(dir.files().size(), 4u);
}

std::string npyBytes(int major, const std::string &dict, const std::string &data) {
  std::string out = std::string("\x93NUMPY", 6) + static_cast<char>(major) + '\0';
  const size_t n = dict.size();
  out += static_cast<char>(n & 0xFF);
  out += static_cast<char>((n >> 8) & 0xFF);
  if (major >= 2) {
    out += static_cast<char>((n >> 16) & 0xFF);
    out += static_cast<char>(n >> 24);
  }
  return out + dict + data;
}

TEST(NpyTest, ReadsVersion2AndSmallIntegerTypes) {
  TempDir dir;
  const uint16_t u16[] = {1, 65535};
  writeFileBytes(dir.file("a.npy"),
                 npyBytes(2, "{'descr': '<u2', 'fortran_order': False, 'shape': (2,), }\n",
                          bytesOf(u16, 4)));
  auto a = rt::readNpy(dir.file("a.npy"));
  ASSERT_TRUE(a.isOk()) << a.status().toString();
  EXPECT_EQ(*a->toInt64(), (std::vector<int64_t>{1, 65535}));
  writeFileBytes(dir.file("b.npy"),
                 npyBytes(1, "{'shape': (1, 2), 'fortran_order': False, 'descr': '|u1'}", "\x05\xff"));
  auto b = rt::readNpy(dir.file("b.npy"));
  ASSERT_TRUE(b.isOk()) << b.status().toString();
  EXPECT_EQ(*b->toInt64(), (std::vector<int64_t>{5, 255}));
}

TEST(NpyTest, RejectsMalformedFiles) {
  TempDir dir;
  const std::string d8(8, '\0');
  auto rejected = [&](const std::string &bytes, const std::string &needle) {
    writeFileBytes(dir.file("x.npy"), bytes);
    auto a = rt::readNpy(dir.file("x.npy"));
    ASSERT_FALSE(a.isOk());
    EXPECT_NE(a.status().message().find(needle), std::string::npos) << a.status().message();
  };
  rejected(npyBytes(1, "{'descr': '<f4', 'fortran_order': True, 'shape': (2,), }", d8), "fortran");
  rejected(npyBytes(1, "{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }", d8), "dtype");
  rejected(npyBytes(1, "{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }", d8), "dtype");
  rejected(npyBytes(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }", d8), "need 12");
  rejected(npyBytes(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }", d8), "need 4");
  rejected(npyBytes(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (9999999999,9999999999), }", d8),
           "too large");
  rejected(npyBytes(1, "{'descr': '<f4', 'shape': (2,), }", d8), "needs");
  rejected(npyBytes(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (-2,), }", d8), "non-negative");
  rejected(npyBytes(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'x': 1}", d8), "key");
  rejected(npyBytes(4, "{}", ""), "version");
  rejected(std::string("\x93NUMPX\x01\x00\x00\x00", 10), "magic");
  rejected(std::string("\x93NUMPY\x01\x00\xff\xff", 10), "header length");
  EXPECT_EQ(rt::readNpy(dir.file("missing.npy")).status().code(), StatusCode::NotFound);
}

} // namespace

// Seeded corruption of safetensors, .npy and llm.c token shard files: every mutation must give an error Status or a
// consistent file, never a crash (this test is built with ASan/UBSan when available).
#include "llmir/runtime/Npy.h"
#include "llmir/runtime/SafeTensors.h"
#include "llmir/runtime/TokenData.h"

#include "IoTestUtil.h"
#include "TestUtil.h"

#include <gtest/gtest.h>

#include <random>

namespace rt = llmir::runtime;
using llmir::runtime::testing::randomVector;
using llmir::runtime::testing::readFileBytes;
using llmir::runtime::testing::TempDir;
using llmir::runtime::testing::writeFileBytes;

namespace {

constexpr int kMutationsPerKind = 700;

/// Reads everything an open file offers; errors are fine, crashes are not.
void exerciseFile(const rt::SafeTensorsFile &file, std::mt19937 &gen) {
  for (const std::string &name : file.tensorNames()) {
    auto info = file.info(name);
    ASSERT_TRUE(info.isOk());
    (void)file.readF32(name);
    (void)file.readInt64(name);
    std::vector<std::pair<int64_t, int64_t>> ranges;
    for (int64_t d : info->shape) {
      std::uniform_int_distribution<int64_t> pick(0, d);
      int64_t a = pick(gen), b = pick(gen);
      ranges.emplace_back(std::min(a, b), std::max(a, b));
    }
    (void)file.readSliceF32(name, ranges);
  }
}

/// A valid file with every dtype; names and metadata have no digits so that
/// any change to a number in the header changes a shape or an offset.
std::string makeSafetensors(const TempDir &dir) {
  auto w = randomVector(6 * 5, 1), b = randomVector(5, 2);
  const std::string path = dir.file("base.safetensors");
  EXPECT_TRUE(rt::writeSafeTensors(path, {{"wte", {6, 5}, w.data()}, {"ln.bias", {5}, b.data()}},
                                   {{"format", "pt"}})
                  .isOk());
  std::string bytes = readFileBytes(path);
  // Re-encode with extra dtypes by hand: append an F16 and an I64 tensor.
  const uint64_t headerLen = [&] {
    uint64_t n = 0;
    for (int i = 7; i >= 0; --i)
      n = n << 8 | static_cast<uint8_t>(bytes[i]);
    return n;
  }();
  std::string header = bytes.substr(8, headerLen);
  std::string data = bytes.substr(8 + headerLen);
  while (!header.empty() && header.back() == ' ')
    header.pop_back();
  header.pop_back(); // '}'
  const uint64_t base = data.size();
  header += ",\"half\":{\"dtype\":\"F16\",\"shape\":[3],\"data_offsets\":[" + std::to_string(base) +
            "," + std::to_string(base + 6) + "]}";
  header += ",\"ids\":{\"dtype\":\"I64\",\"shape\":[2],\"data_offsets\":[" +
            std::to_string(base + 6) + "," + std::to_string(base + 22) + "]}}";
  data += std::string("\x00\x3c\x00\xc1\xff\x7b", 6) + std::string(16, '\x01');
  return llmir::runtime::testing::safetensorsBytes(header, data);
}

TEST(IoFuzzTest, SafeTensorsBaseFileIsValid) {
  TempDir dir;
  writeFileBytes(dir.file("x"), makeSafetensors(dir));
  auto file = rt::SafeTensorsFile::open(dir.file("x"));
  ASSERT_TRUE(file.isOk()) << file.status().toString();
  EXPECT_EQ(file->tensorNames().size(), 4u);
}

TEST(IoFuzzTest, SafeTensorsMutationsNeverCrash) {
  TempDir dir;
  const std::string base = makeSafetensors(dir);
  const std::string path = dir.file("m.safetensors");
  uint64_t headerLen = 0;
  for (int i = 7; i >= 0; --i)
    headerLen = headerLen << 8 | static_cast<uint8_t>(base[i]);
  // Positions of digit runs in the header (all are shapes or offsets).
  std::vector<std::pair<size_t, size_t>> numbers;
  for (size_t i = 8; i < 8 + headerLen;) {
    if (isdigit(static_cast<unsigned char>(base[i]))) {
      size_t j = i;
      while (isdigit(static_cast<unsigned char>(base[j])))
        ++j;
      numbers.emplace_back(i, j - i);
      i = j;
    } else {
      ++i;
    }
  }
  ASSERT_GE(numbers.size(), 12u);

  std::mt19937 gen(20240601);
  int errors = 0, total = 0;
  auto run = [&](const std::string &bytes, bool mustFail, const char *kind) {
    writeFileBytes(path, bytes);
    auto file = rt::SafeTensorsFile::open(path);
    ++total;
    if (!file.isOk()) {
      ++errors;
      EXPECT_FALSE(file.status().message().empty());
      return;
    }
    EXPECT_FALSE(mustFail) << kind << " mutation was accepted";
    exerciseFile(*file, gen);
  };
  std::uniform_int_distribution<size_t> anyPos(0, base.size() - 1);
  for (int it = 0; it < kMutationsPerKind; ++it) {
    // 1. Truncation anywhere: the tensors must then miss bytes.
    run(base.substr(0, std::uniform_int_distribution<size_t>(0, base.size() - 1)(gen)), true,
        "truncation");
    // 2. A header length that lies.
    {
      std::string m = base;
      uint64_t lie;
      do {
        lie = it % 3 == 0 ? gen() : headerLen + std::uniform_int_distribution<int>(-16, 16)(gen);
      } while (lie == headerLen);
      for (int i = 0; i < 8; ++i)
        m[i] = static_cast<char>(lie >> (8 * i));
      run(m, true, "header length");
    }
    // 3. One shape/offset number replaced by another (possibly huge) one.
    {
      const auto [pos, len] = numbers[std::uniform_int_distribution<size_t>(0, numbers.size() - 1)(gen)];
      const std::string old = base.substr(pos, len);
      std::string repl;
      do {
        repl = std::to_string(it % 4 == 0 ? gen() * uint64_t(gen())
                                          : std::uniform_int_distribution<uint64_t>(0, 120)(gen));
      } while (repl == old);
      std::string m = base.substr(0, pos) + repl + base.substr(pos + len);
      const uint64_t newLen = headerLen + repl.size() - len;
      for (int i = 0; i < 8; ++i)
        m[i] = static_cast<char>(newLen >> (8 * i));
      run(m, true, "offset/shape");
    }
    // 4. Random byte flips anywhere (data flips are legitimately accepted).
    {
      std::string m = base;
      const int flips = std::uniform_int_distribution<int>(1, 8)(gen);
      for (int f = 0; f < flips; ++f)
        m[anyPos(gen)] ^= static_cast<char>(1 + gen() % 255);
      run(m, false, "flip");
    }
    // 5. Random bytes appended or inserted into the header.
    {
      std::string m = base;
      const size_t at = std::uniform_int_distribution<size_t>(8, 8 + headerLen)(gen);
      std::string junk;
      const int n = std::uniform_int_distribution<int>(1, 12)(gen);
      static const char kAlphabet[] = "{}[]\",:0123456789-\\u eE.abF";
      for (int i = 0; i < n; ++i)
        junk += kAlphabet[gen() % (sizeof(kAlphabet) - 1)];
      m.insert(at, junk);
      run(m, false, "insert");
    }
  }
  EXPECT_EQ(total, 5 * kMutationsPerKind);
  EXPECT_GE(errors, 3 * kMutationsPerKind);
}

TEST(IoFuzzTest, NpyMutationsNeverCrash) {
  TempDir dir;
  auto f = randomVector(24, 3);
  ASSERT_TRUE(rt::writeNpy(dir.file("base.npy"), f.data(), {2, 3, 4}).isOk());
  const std::string base = readFileBytes(dir.file("base.npy"));
  const std::string path = dir.file("m.npy");
  std::mt19937 gen(77);
  int errors = 0;
  for (int it = 0; it < kMutationsPerKind; ++it) {
    writeFileBytes(path, base.substr(0, std::uniform_int_distribution<size_t>(0, base.size() - 1)(gen)));
    auto a = rt::readNpy(path);
    EXPECT_FALSE(a.isOk()) << "truncated npy accepted";
    errors += !a.isOk();

    std::string m = base;
    const int flips = std::uniform_int_distribution<int>(1, 6)(gen);
    for (int k = 0; k < flips; ++k)
      m[std::uniform_int_distribution<size_t>(0, it % 2 ? 79 : m.size() - 1)(gen)] ^=
          static_cast<char>(1 + gen() % 255);
    writeFileBytes(path, m);
    auto b = rt::readNpy(path);
    if (b.isOk()) {
      EXPECT_EQ(static_cast<size_t>(b->numElements()) *
                    (b->dtype == rt::NpyDType::I64 ? 8 : b->dtype == rt::NpyDType::U8 ? 1
                     : b->dtype == rt::NpyDType::U16 ? 2 : 4),
                b->bytes.size());
      (void)b->toFloat32();
      (void)b->toInt64();
    }
  }
  EXPECT_EQ(errors, kMutationsPerKind);
}

/// An llm.c shard (uint16 or uint32 tokens) of `ids`.
std::string makeShard(const std::vector<uint32_t> &ids, bool wide) {
  std::vector<int32_t> header(256, 0);
  header[0] = wide ? rt::kShardMagicU32 : rt::kShardMagicU16;
  header[1] = wide ? 7 : 1;
  header[2] = static_cast<int32_t>(ids.size());
  std::string bytes(reinterpret_cast<const char *>(header.data()), 1024);
  for (uint32_t id : ids)
    bytes.append(reinterpret_cast<const char *>(&id), wide ? 4 : 2);
  return bytes;
}

TEST(IoFuzzTest, TokenShardMutationsNeverCrash) {
  TempDir dir;
  std::vector<uint32_t> ids(300);
  for (size_t i = 0; i < ids.size(); ++i)
    ids[i] = static_cast<uint32_t>(i * 7 % 256);
  const std::string path = dir.file("m.bin");
  std::mt19937 gen(19);
  int truncErrors = 0, opened = 0;
  // Opens the file and reads every window in both orders: errors are fine
  // (a lying header, an id outside the vocabulary), crashes are not.
  auto exercise = [&](const std::string &bytes) -> bool {
    writeFileBytes(path, bytes);
    for (rt::DataOrder order : {rt::DataOrder::Sequential, rt::DataOrder::Shuffled}) {
      auto files = rt::TokenFiles::open({path}, "--data", 256);
      if (!files.isOk()) {
        EXPECT_NE(files.status().message().find(path), std::string::npos);
        return false;
      }
      auto loader = rt::TokenLoader::create(std::move(*files), order, 5, 2, 16);
      if (!loader.isOk())
        continue;
      std::vector<int64_t> in, lab;
      rt::DataPosition p;
      for (int step = 0; step < 12; ++step, p = loader->next(p)) {
        if (!loader->read(p, 0, 2, in, lab).isOk())
          continue;
        for (int64_t v : in)
          EXPECT_TRUE(v >= 0 && v < 256);
      }
    }
    return true;
  };
  for (bool wide : {false, true}) {
    const std::string base = makeShard(ids, wide);
    ASSERT_TRUE(exercise(base));
    for (int it = 0; it < kMutationsPerKind / 2; ++it) {
      // Truncation anywhere: the header or the tokens come up short.
      truncErrors += !exercise(
          base.substr(0, std::uniform_int_distribution<size_t>(0, base.size() - 1)(gen)));
      // Flips in the header's first words or anywhere.
      std::string m = base;
      const int flips = std::uniform_int_distribution<int>(1, 4)(gen);
      for (int k = 0; k < flips; ++k)
        m[std::uniform_int_distribution<size_t>(0, it % 2 ? 15 : m.size() - 1)(gen)] ^=
            static_cast<char>(1 + gen() % 255);
      opened += exercise(m);
    }
  }
  EXPECT_EQ(truncErrors, kMutationsPerKind);
  EXPECT_GT(opened, 0); // data flips leave valid shards
}

} // namespace

// llm-run --generate: prompts in, token ids out. Each dp rank runs its rows
// of the batch; tp and cp ranks of a dp group compute the same (all-gathered)
// logits and so draw the same tokens. Sampling is per global row with its
// own seeded generator, so results do not depend on the layout.
#include "Generate.h"

#include "llmir/runtime/Npy.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <numeric>
#include <random>
#include <vector>

namespace llmir::runtime {
namespace {

Status invalid(const std::string &message) {
  return Status::error(StatusCode::InvalidArgument, message);
}

/// The next token from one row of logits (the first `vocab` columns; the
/// rest is tp vocab padding).
int64_t sampleToken(const float *logits, int64_t vocab,
                    const GenerateOptions &o, std::mt19937_64 &rng) {
  if (o.temperature <= 0.0) // greedy: the first maximum, like torch.argmax
    return std::max_element(logits, logits + vocab) - logits;
  std::vector<int64_t> order(static_cast<size_t>(vocab));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
    return logits[a] > logits[b];
  });
  size_t keep = order.size();
  if (o.topK > 0)
    keep = std::min<size_t>(keep, static_cast<size_t>(o.topK));
  std::vector<double> p(keep);
  double maxLogit = logits[order[0]] / o.temperature, sum = 0;
  for (size_t i = 0; i < keep; ++i)
    sum += p[i] = std::exp(logits[order[i]] / o.temperature - maxLogit);
  if (o.topP < 1.0) { // smallest prefix whose mass reaches top-p
    double mass = 0;
    for (size_t i = 0; i < keep; ++i) {
      mass += p[i] / sum;
      if (mass >= o.topP) {
        keep = i + 1;
        break;
      }
    }
    p.resize(keep);
  }
  std::discrete_distribution<size_t> pick(p.begin(), p.end());
  return order[pick(rng)];
}

} // namespace

Status generate(const Program &program, Executor &exec, Communicator &comm,
                const GenerateOptions &o) {
  const int rank = comm.rank();
  const Plan &plan = program.plan;
  const StageProgram *prefill = program.findEntry(exec.stage().index, "prefill");
  const StageProgram *decode = program.findEntry(exec.stage().index, "decode");
  if (!prefill || !decode)
    return invalid("--generate needs a program with 'prefill' and 'decode' "
                   "entry points (llm-translate --import-hf-config C.json "
                   "--inference ...)");
  // The prompt width from the first pipeline stage (the one reading ids).
  const StageProgram *firstPrefill = program.findEntry(0, "prefill");
  const BufferRef *idsBuf = nullptr;
  for (const Binding &b : (firstPrefill ? firstPrefill : prefill)->inputs)
    if (b.name == "input_ids")
      idsBuf = &b.buffer;
  if (!idsBuf || idsBuf->shape.size() != 2)
    return invalid("the prefill program has no 2-D input 'input_ids'");
  const int64_t batch = plan.globalBatch, width = idsBuf->shape[1];
  const int64_t maxSeq = plan.seq, vocab = plan.vocabSize;
  const int dp = plan.axisSize("dp");
  int dpIndex = 0, tpIndex = 0, ppIndex = 0, pp = 1, cpIndex = 0;
  for (size_t a = 0; a < plan.axes.size(); ++a) {
    if (plan.axes[a] == "dp")
      dpIndex = exec.rankInfo().coords[a];
    if (plan.axes[a] == "cp") // cp ranks split the prefill, decode the same
      cpIndex = exec.rankInfo().coords[a];
    if (plan.axes[a] == "tp")
      tpIndex = exec.rankInfo().coords[a];
    if (plan.axes[a] == "pp") {
      ppIndex = exec.rankInfo().coords[a];
      pp = plan.sizes[a];
    }
  }
  // Pipeline: the last stage samples; its tokens go to the ranks of the other
  // stages with this rank's dp/tp coordinates (pp peers, by stage).
  std::vector<int> ppPeers(static_cast<size_t>(pp), -1);
  for (const RankInfo &r : program.ranks) {
    bool same = true;
    for (size_t a = 0; a < plan.axes.size(); ++a)
      same &= plan.axes[a] == "pp" || r.coords[a] == exec.rankInfo().coords[a];
    if (same && r.stage >= 0 && r.stage < pp)
      ppPeers[static_cast<size_t>(r.stage)] = r.rank;
  }
  constexpr int kTokenTag = 32002;
  if (batch <= 0 || batch % dp != 0 || vocab <= 0 || maxSeq <= 0)
    return invalid("the program's plan has batch " + std::to_string(batch) +
                   ", vocab " + std::to_string(vocab) + ", max-seq " +
                   std::to_string(maxSeq) + " over dp " + std::to_string(dp));
  const int64_t rows = batch / dp, first = dpIndex * rows;
  if (idsBuf->shape[0] != rows)
    return invalid("the prefill input 'input_ids' " + idsBuf->str() +
                   " does not hold this rank's " + std::to_string(rows) + " rows");
  if (o.maxNewTokens < 1)
    return invalid("--max-new-tokens must be >= 1");

  // Prompts and their lengths.
  StatusOr<NpyArray> promptFile = readNpy(o.prompt);
  if (!promptFile.isOk())
    return promptFile.status();
  if (promptFile->shape.size() != 2)
    return invalid("--prompt '" + o.prompt + "' must be a 2-D array [batch, "
                   "tokens] of token ids");
  StatusOr<std::vector<int64_t>> prompts = promptFile->toInt64();
  if (!prompts.isOk())
    return prompts.status();
  const int64_t n = promptFile->shape[0], cols = promptFile->shape[1];
  if (n != batch)
    return invalid("batch mismatch: --prompt has " + std::to_string(n) +
                   " sequences but the program was compiled for --batch " +
                   std::to_string(batch));
  std::vector<int64_t> lengths(static_cast<size_t>(n), cols);
  if (!o.lengths.empty()) {
    StatusOr<NpyArray> lf = readNpy(o.lengths);
    if (!lf.isOk())
      return lf.status();
    StatusOr<std::vector<int64_t>> l = lf->toInt64();
    if (!l.isOk())
      return l.status();
    if (lf->shape.size() != 1 || lf->shape[0] != n)
      return invalid("--lengths must be a 1-D array of " + std::to_string(n) +
                     " prompt lengths");
    lengths = *l;
  } else if (o.padId >= 0) {
    for (int64_t r = 0; r < n; ++r) {
      int64_t len = cols;
      while (len > 0 && (*prompts)[r * cols + len - 1] == o.padId)
        --len;
      lengths[r] = len;
    }
  }
  for (int64_t r = 0; r < n; ++r) {
    int64_t len = lengths[r];
    if (len < 1 || len > cols)
      return invalid("prompt " + std::to_string(r) + " has length " +
                     std::to_string(len) + ", expected 1 .. " +
                     std::to_string(cols));
    if (len > width || len + o.maxNewTokens - 1 > maxSeq)
      return invalid("prompt " + std::to_string(r) + " is too long: " +
                     std::to_string(len) + " tokens" +
                     (len > width ? " exceed the compiled prompt width " +
                                        std::to_string(width) + " (--prompt-len)"
                                  : " + " + std::to_string(o.maxNewTokens) +
                                        " new tokens exceed --max-seq " +
                                        std::to_string(maxSeq)));
    for (int64_t i = 0; i < len; ++i) {
      int64_t id = (*prompts)[r * cols + i];
      if (id < 0 || id >= vocab)
        return invalid("prompt " + std::to_string(r) + ", position " +
                       std::to_string(i) + ": token id " + std::to_string(id) +
                       " is outside the vocabulary [0, " +
                       std::to_string(vocab) + ")");
    }
  }

  std::vector<std::mt19937_64> rngs;
  for (int64_t r = 0; r < rows; ++r)
    rngs.emplace_back(o.seed * 1000003ull + static_cast<uint64_t>(first + r));
  const int64_t newTokens = o.maxNewTokens;
  const int64_t fill = o.padId >= 0 ? o.padId : (o.eosId >= 0 ? o.eosId : 0);
  std::vector<int64_t> generated(static_cast<size_t>(rows * newTokens), fill);
  std::vector<bool> done(static_cast<size_t>(rows), false);
  std::vector<int64_t> last(static_cast<size_t>(rows));

  auto sampleAll = [&](int64_t step) -> Status {
    // This step's token of each row (-1: the row had finished).
    std::vector<float> tokens(static_cast<size_t>(rows), -1.0f);
    if (ppIndex == pp - 1) {
      StatusOr<std::vector<float>> logits = exec.output("logits");
      if (!logits.isOk())
        return logits.status();
      int64_t stride = static_cast<int64_t>(logits->size()) / rows;
      if (stride < vocab)
        return invalid("logits of " + std::to_string(stride) +
                       " columns for a vocabulary of " + std::to_string(vocab));
      for (int64_t r = 0; r < rows; ++r)
        if (!done[r])
          tokens[r] = static_cast<float>(
              sampleToken(logits->data() + r * stride, vocab, o, rngs[r]));
      for (int s = 0; s + 1 < pp; ++s)
        LLMIR_RETURN_IF_ERROR(comm.send(tokens.data(), rows, ppPeers[s], kTokenTag));
    } else {
      LLMIR_RETURN_IF_ERROR(
          comm.recv(tokens.data(), rows, ppPeers[pp - 1], kTokenTag));
    }
    for (int64_t r = 0; r < rows; ++r) {
      if (done[r] || tokens[r] < 0)
        continue;
      int64_t token = static_cast<int64_t>(tokens[r]);
      generated[r * newTokens + step] = token;
      last[r] = token;
      if (token == o.eosId)
        done[r] = true;
    }
    return Status::ok();
  };
  // Inputs this rank's stage reads (a pipeline's later stages have no ids).
  auto setInput = [&](const std::string &name,
                      const std::vector<int64_t> &values) -> Status {
    return exec.findInput(name) ? exec.setInput(name, values) : Status::ok();
  };

  // Prefill: the prompts (padding replaced by id 0) and their lengths.
  std::vector<int64_t> ids(static_cast<size_t>(rows * width), 0), lens(rows);
  for (int64_t r = 0; r < rows; ++r) {
    lens[r] = lengths[first + r];
    for (int64_t i = 0; i < lens[r]; ++i)
      ids[r * width + i] = (*prompts)[(first + r) * cols + i];
  }
  LLMIR_RETURN_IF_ERROR(exec.selectEntry("prefill"));
  LLMIR_RETURN_IF_ERROR(setInput("input_ids", ids));
  LLMIR_RETURN_IF_ERROR(setInput("lengths", lens));
  // Warm-up prefills (thread pools, caches) are harmless: prefill rewrites
  // the cache positions that decode reads.
  for (int64_t i = 0; i < o.warmup; ++i)
    LLMIR_RETURN_IF_ERROR(exec.run(0));
  // Timed up to the sampled token (with pp: through every stage).
  auto t0 = std::chrono::steady_clock::now();
  LLMIR_RETURN_IF_ERROR(exec.run(0));
  LLMIR_RETURN_IF_ERROR(sampleAll(0));
  double prefillSeconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  // Decode: one token per sequence at its next position.
  LLMIR_RETURN_IF_ERROR(exec.selectEntry("decode"));
  double decodeSeconds = 0;
  int64_t decodeSteps = 0;
  std::vector<int64_t> positions(rows);
  for (int64_t step = 1; step < newTokens; ++step) {
    // Stop once every sequence (of every rank) has produced its EOS.
    if (o.eosId >= 0) {
      float active = 0;
      for (int64_t r = 0; r < rows; ++r)
        active += done[r] ? 0.0f : 1.0f;
      LLMIR_RETURN_IF_ERROR(comm.allReduceSum(&active, 1));
      if (active == 0)
        break;
    }
    for (int64_t r = 0; r < rows; ++r)
      positions[r] = lens[r] + step - 1;
    LLMIR_RETURN_IF_ERROR(setInput("input_ids", last));
    LLMIR_RETURN_IF_ERROR(setInput("positions", positions));
    auto t1 = std::chrono::steady_clock::now();
    LLMIR_RETURN_IF_ERROR(exec.run(step));
    LLMIR_RETURN_IF_ERROR(sampleAll(step));
    decodeSeconds +=
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
    ++decodeSteps;
  }

  // Every rank's rows to every rank (tp, cp and pp rank 0 of each dp group
  // contributes).
  std::vector<float> all(static_cast<size_t>(batch * newTokens), 0.0f);
  if (tpIndex == 0 && ppIndex == 0 && cpIndex == 0)
    for (int64_t i = 0; i < rows * newTokens; ++i)
      all[first * newTokens + i] = static_cast<float>(generated[i]);
  if (comm.size() > 1)
    LLMIR_RETURN_IF_ERROR(comm.allReduceSum(all.data(), batch * newTokens));
  if (rank != 0)
    return Status::ok();
  int64_t promptTokens = std::accumulate(lengths.begin(), lengths.end(), int64_t(0));
  char line[256];
  std::snprintf(line, sizeof line,
                "prefill: %lld tokens in %.1f ms | %.0f tokens/s\n"
                "decode: %lld steps x %lld sequences in %.1f ms | %.1f tokens/s\n",
                (long long)promptTokens, prefillSeconds * 1e3,
                promptTokens / std::max(prefillSeconds, 1e-9),
                (long long)decodeSteps, (long long)batch, decodeSeconds * 1e3,
                decodeSteps * batch / std::max(decodeSeconds, 1e-9));
  if (!o.quiet)
    std::cerr << line;
  std::vector<int64_t> out(all.size());
  for (size_t i = 0; i < all.size(); ++i)
    out[i] = static_cast<int64_t>(std::llround(all[i]));
  if (!o.out.empty())
    LLMIR_RETURN_IF_ERROR(writeNpy(o.out, out.data(), {batch, newTokens}));
  else
    for (int64_t r = 0; r < batch; ++r) {
      for (int64_t i = 0; i < newTokens; ++i)
        std::cout << (i ? " " : "") << out[r * newTokens + i];
      std::cout << "\n";
    }
  return Status::ok();
}

} // namespace llmir::runtime

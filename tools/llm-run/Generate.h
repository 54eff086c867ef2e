// llm-run --generate: text generation with a compiled prefill/decode program
// pair (llm-translate --inference) over a resident KV cache.
#ifndef LLMIR_TOOLS_LLM_RUN_GENERATE_H
#define LLMIR_TOOLS_LLM_RUN_GENERATE_H

#include "llmir/runtime/Communicator.h"
#include "llmir/runtime/Executor.h"
#include "llmir/runtime/Program.h"
#include "llmir/runtime/Status.h"

#include <cstdint>
#include <string>

namespace llmir::runtime {

struct GenerateOptions {
  std::string prompt;   ///< 2-D integer .npy [batch, width], right-padded
  std::string lengths;  ///< optional 1-D .npy of prompt lengths
  std::string out;      ///< generated ids [batch, maxNewTokens] (.npy, int64)
  int64_t maxNewTokens = 16;
  int64_t padId = -1;   ///< -1: no padding id (every row is full unless --lengths)
  int64_t eosId = -1;   ///< -1: no end-of-sequence token
  double temperature = 0.0; ///< 0: greedy
  int64_t topK = 0;     ///< 0: no top-k filter
  double topP = 1.0;    ///< 1: no nucleus filter
  uint64_t seed = 0;
  bool quiet = false;
  int64_t warmup = 0;   ///< untimed prefill runs before the timed one (benchmarks)
};

/// Runs prefill once and decode up to maxNewTokens - 1 times on `exec` (its
/// parameters already loaded); rank 0 writes `out` and prints tokens/s of
/// prefill and decode. Collective: every rank calls it.
Status generate(const Program &program, Executor &exec, Communicator &comm,
                const GenerateOptions &options);

} // namespace llmir::runtime

#endif // LLMIR_TOOLS_LLM_RUN_GENERATE_H

// llm-run's token data: the --data and --eval-data files, their reading order
// and the data position a checkpoint keeps (runtime TokenLoader reads them).
#ifndef LLMIR_TOOLS_LLM_RUN_TRAINDATA_H
#define LLMIR_TOOLS_LLM_RUN_TRAINDATA_H

#include "llmir/runtime/Communicator.h"
#include "llmir/runtime/Executor.h"
#include "llmir/runtime/TokenData.h"

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace llmir::runtime {

struct DataOptions {
  std::string spec, evalSpec;          ///< --data, --eval-data (files or patterns)
  std::string order = "sequential";    ///< --data-order
  std::vector<std::string> files, evalFiles; ///< the expanded patterns
  int64_t evalEvery = 0, evalSteps = 1; ///< --eval-every, --eval-steps
  uint64_t seed = 0;                   ///< --seed

  DataOrder dataOrder() const {
    return order == "shuffled" ? DataOrder::Shuffled : DataOrder::Sequential;
  }
};

/// Checks the options and expands the patterns (at argument parsing).
Status checkDataOptions(DataOptions &d);

/// Opens `files` (named `option` in errors) for the program's batch and
/// sequence length; ids must be below the plan's vocabulary size.
StatusOr<TokenLoader> openTokenData(const std::vector<std::string> &files,
                                    const std::string &option, DataOrder order,
                                    uint64_t seed, const Plan &plan);

/// The checkpoint metadata of the data position `next` (the next step's).
std::map<std::string, std::string> dataPositionMeta(const DataOptions &d,
                                                    const DataPosition &next);

/// The position a resumed run continues at: the checkpoint's (which must
/// have been written with the same --data-order and --seed), or step
/// `step`'s for a checkpoint without one.
StatusOr<DataPosition> resumedPosition(const std::map<std::string, std::string> &meta,
                                       const DataOptions &d, const TokenLoader &loader,
                                       int64_t step, const std::string &checkpoint);

/// Reads this rank's rows of the step at `p` into the executor's inputs
/// (input_ids, labels: those its stage binds).
Status feedBatch(Executor &ex, TokenLoader &loader, const DataPosition &p, int64_t firstRow,
                 int64_t rows);

/// The loss output of the step just run, on rank 0 (NaN on other ranks):
/// `lossRank` (the lowest rank whose stage has it) sends it under `tag`.
StatusOr<double> gatherLoss(Executor &ex, Communicator &comm, int lossRank, int tag);

/// --eval-data: the mean loss (on rank 0) of the first `steps` batches of
/// `data`, this rank reading rows [firstRow, firstRow+rows). A training
/// program runs with its AdamW updates skipped: forward and backward run,
/// the parameters and optimizer state are untouched. `step` labels errors.
StatusOr<double> evaluateLoss(Executor &ex, Communicator &comm, TokenLoader &data,
                              int64_t steps, int64_t firstRow, int64_t rows, int64_t step,
                              int lossRank, int tag);

} // namespace llmir::runtime

#endif // LLMIR_TOOLS_LLM_RUN_TRAINDATA_H

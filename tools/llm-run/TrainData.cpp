// llm-run's token data (TrainData.h).
#include "TrainData.h"

#include <cmath>
#include <cstdlib>
#include <tuple>

namespace llmir::runtime {

Status checkDataOptions(DataOptions &d) {
  if (d.order != "sequential" && d.order != "shuffled")
    return Status::error(StatusCode::InvalidArgument,
                         "option --data-order: expected sequential or shuffled, found '" +
                             d.order + "'");
  if (d.evalEvery > 0 && d.evalSpec.empty())
    return Status::error(StatusCode::InvalidArgument, "--eval-every needs --eval-data FILE");
  if (!d.evalSpec.empty() && d.evalEvery == 0)
    return Status::error(StatusCode::InvalidArgument, "--eval-data needs --eval-every K");
  for (auto [spec, files, option] :
       {std::make_tuple(&d.spec, &d.files, "--data"),
        std::make_tuple(&d.evalSpec, &d.evalFiles, "--eval-data")}) {
    if (spec->empty())
      continue;
    StatusOr<std::vector<std::string>> expanded = expandTokenFiles(*spec, option);
    if (!expanded.isOk())
      return expanded.status();
    *files = std::move(*expanded);
  }
  return Status::ok();
}

StatusOr<TokenLoader> openTokenData(const std::vector<std::string> &files,
                                    const std::string &option, DataOrder order,
                                    uint64_t seed, const Plan &plan) {
  StatusOr<TokenFiles> opened = TokenFiles::open(files, option, plan.vocabSize);
  if (!opened.isOk())
    return opened.status();
  return TokenLoader::create(std::move(*opened), order, seed, plan.globalBatch, plan.seq);
}

std::map<std::string, std::string> dataPositionMeta(const DataOptions &d,
                                                    const DataPosition &next) {
  return {{"data_order", d.order},
          {"data_seed", std::to_string(d.seed)},
          {"data_epoch", std::to_string(next.epoch)},
          {"data_index", std::to_string(next.index)}};
}

StatusOr<DataPosition> resumedPosition(const std::map<std::string, std::string> &meta,
                                       const DataOptions &d, const TokenLoader &loader,
                                       int64_t step, const std::string &checkpoint) {
  auto get = [&](const char *key) -> const std::string * {
    auto it = meta.find(key);
    return it == meta.end() ? nullptr : &it->second;
  };
  const std::string *order = get("data_order"), *seed = get("data_seed");
  const std::string *epoch = get("data_epoch"), *index = get("data_index");
  if (!order && !seed && !epoch && !index)
    return loader.positionOfStep(step); // written before positions were saved
  auto number = [](const std::string *text, int64_t &out) {
    char *end = nullptr;
    if (!text || text->empty() || (*text)[0] == '-')
      return false;
    out = std::strtoll(text->c_str(), &end, 10);
    return *end == '\0';
  };
  DataPosition p;
  int64_t savedSeed = 0;
  if (!order || !number(seed, savedSeed) || !number(epoch, p.epoch) || !number(index, p.index))
    return Status::error(StatusCode::InvalidArgument,
                         "'" + checkpoint + "' has an invalid data position");
  const bool shuffled = d.dataOrder() == DataOrder::Shuffled;
  if (*order != d.order || (shuffled && static_cast<uint64_t>(savedSeed) != d.seed))
    return Status::error(StatusCode::InvalidArgument,
                         "--resume: '" + checkpoint + "' was written with --data-order " +
                             *order + (*order == "shuffled" ? " --seed " + *seed : "") +
                             "; give the same to continue its data (this run: --data-order " +
                             d.order + (shuffled ? " --seed " + std::to_string(d.seed) : "") +
                             ")");
  return p;
}

Status feedBatch(Executor &ex, TokenLoader &loader, const DataPosition &p, int64_t firstRow,
                 int64_t rows) {
  std::vector<int64_t> inputs, labels;
  LLMIR_RETURN_IF_ERROR(loader.read(p, firstRow, rows, inputs, labels));
  if (ex.findInput("input_ids"))
    LLMIR_RETURN_IF_ERROR(ex.setInput("input_ids", inputs));
  if (ex.findInput("labels"))
    LLMIR_RETURN_IF_ERROR(ex.setInput("labels", labels));
  return Status::ok();
}

StatusOr<double> gatherLoss(Executor &ex, Communicator &comm, int lossRank, int tag) {
  const int rank = comm.rank();
  float value = NAN;
  if (lossRank < 0 || (rank != 0 && rank != lossRank))
    return static_cast<double>(value);
  if (rank == lossRank) {
    StatusOr<std::vector<float>> out = ex.output("loss");
    if (!out.isOk())
      return out.status();
    value = (*out)[0];
  }
  if (lossRank != 0)
    LLMIR_RETURN_IF_ERROR(rank == 0 ? comm.recv(&value, 1, lossRank, tag)
                                    : comm.send(&value, 1, 0, tag));
  return static_cast<double>(value);
}

StatusOr<double> evaluateLoss(Executor &ex, Communicator &comm, TokenLoader &data,
                              int64_t steps, int64_t firstRow, int64_t rows, int64_t step,
                              int lossRank, int tag) {
  double sum = 0;
  ex.setUpdateParams(false);
  for (int64_t i = 0; i < steps; ++i) {
    LLMIR_RETURN_IF_ERROR(feedBatch(ex, data, data.positionOfStep(i), firstRow, rows));
    LLMIR_RETURN_IF_ERROR(ex.run(step));
    StatusOr<double> loss = gatherLoss(ex, comm, lossRank, tag);
    if (!loss.isOk())
      return loss.status();
    sum += *loss;
  }
  ex.setUpdateParams(true);
  return sum / static_cast<double>(steps);
}

} // namespace llmir::runtime

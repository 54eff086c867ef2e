// llm-run: loads an .llmir program, this rank's weight shards and the token
// data, and runs steps, printing progress. Under mpirun each process is one
// rank; the rank count must match the program's plan.
#include "DeviceSetup.h"
#include "Generate.h"
#include "Launch.h"
#include "Options.h"
#include "RunTrace.h"
#include "TrainData.h"

#include "llmir/runtime/Checkpoint.h"
#include "llmir/runtime/Communicator.h"
#include "llmir/runtime/Executor.h"
#include "llmir/runtime/Files.h"
#include "llmir/runtime/HfWeights.h"
#include "llmir/runtime/MpiCommunicator.h"
#include "llmir/runtime/Npy.h"
#include "llmir/runtime/Program.h"
#include "llmir/runtime/SafeTensors.h"
#include "llmir/runtime/StepGraph.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <iostream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <sys/stat.h>
#include <vector>

using namespace llmir::runtime;

namespace {

std::string formatDuration(double seconds) {
  int64_t s = static_cast<int64_t>(seconds + 0.5);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", (long long)(s / 3600),
                (long long)(s / 60 % 60), (long long)(s % 60));
  return buf;
}

// Point-to-point tags of llm-run's own messages: above the program's (< 16384)
// and the checkpoint's ([16384, 32000)), so they can never match those.
constexpr int kLossTag = 32000;
constexpr int kLogitsTag = 32001;

/// The lowest-numbered rank whose stage has the output `name` (rank 0 when
/// its own stage has it; with pipeline stages, a rank of the last stage), or
/// -1 when no stage has it. Every rank computes the same answer.
int firstRankWithOutput(const Program &program, const std::string &name) {
  int best = -1;
  for (const RankInfo &r : program.ranks)
    for (const Binding &b : program.stages[r.stage].outputs)
      if (b.name == name && (best < 0 || r.rank < best))
        best = r.rank;
  return best;
}

/// The output binding `name` of `rank`'s stage (null if it has none).
const BufferRef *outputOf(const Program &program, int rank, const std::string &name) {
  for (const RankInfo &r : program.ranks)
    if (r.rank == rank)
      for (const Binding &b : program.stages[r.stage].outputs)
        if (b.name == name)
          return &b.buffer;
  return nullptr;
}

/// --export-weights and --export-hf: the run's final parameters, gathered
/// like a checkpoint.
Status exportIfAsked(const Program &program, Executor &ex, Communicator &comm,
                     const Options &opts) {
  if (!opts.exportPath.empty()) {
    LLMIR_RETURN_IF_ERROR(
        exportWeights(program, ex, comm, opts.exportPath, opts.exportDType));
    if (comm.rank() == 0 && !opts.quiet)
      std::cerr << "exported the weights to " << opts.exportPath << " ("
                << dtypeName(opts.exportDType) << ")\n";
  }
  if (!opts.exportHfDir.empty()) {
    LLMIR_RETURN_IF_ERROR(exportHf(program, ex, comm, opts.exportHfDir, opts.exportDType,
                                   opts.hfConfig, opts.hfSideFilesDir));
    if (comm.rank() == 0 && !opts.quiet)
      std::cerr << "exported a Hugging Face model directory to " << opts.exportHfDir
                << " (" << dtypeName(opts.exportDType) << ")\n";
  }
  return Status::ok();
}

/// --weights: a safetensors file or a Hugging Face model directory; and
/// --export-hf's config, checked against the program before the first step.
Status loadWeights(const Program &program, Executor &ex, const Options &opts) {
  if (!opts.exportHfDir.empty()) {
    StatusOr<std::string> config = hfExportConfig(
        opts.hfConfig, program.plan.modelType, program.plan.vocabSize, opts.exportDType);
    if (!config.isOk())
      return config.status();
  }
  const std::string &path = opts.weights;
  if (isDirectory(path)) {
    StatusOr<HfWeights> dir = HfWeights::open(path);
    if (!dir.isOk())
      return Status::error(dir.status().code(), "--weights: " + dir.status().message());
    return ex.loadParams(*dir);
  }
  StatusOr<SafeTensorsFile> file = SafeTensorsFile::open(path);
  if (!file.isOk())
    return file.status();
  return ex.loadParams(*file);
}

/// "1 rank", "2 ranks".
std::string ranksText(int64_t n) {
  return std::to_string(n) + (n == 1 ? " rank" : " ranks");
}

int run(int argc, char **argv) {
  std::unique_ptr<Communicator> comm;
  if (launchedByMpi()) {
    auto mpi = MpiCommunicator::create(&argc, &argv);
    if (!mpi.isOk()) {
      std::cerr << "llm-run: error: " << mpi.status().message() << "\n";
      return 1;
    }
    comm = std::move(*mpi);
    if (Status st = checkLaunchWorld(comm->size()); !st.isOk()) {
      std::cerr << "llm-run: error: " << st.message() << "\n";
      return 1;
    }
  } else {
    comm = std::make_unique<SingleProcessCommunicator>();
  }
  const int rank = comm->rank();
  const int worldSize = comm->size();
  comm->setTimeout(Options().timeout); // until --timeout is parsed
  // Rank 0's --log-json. Committed even when the run fails: the steps before
  // the failure are worth keeping.
  std::optional<OutputFile> log;
  // An error this rank found while the others may be waiting for it inside a
  // collective: only MPI_Abort can stop them. Printed by this rank alone.
  auto fail = [&](const Status &st) {
    std::cerr << "llm-run: error: "
              << (worldSize > 1 ? "rank " + std::to_string(rank) + ": " : "")
              << st.message() << "\n";
    if (log)
      (void)log->commit();
    comm->abort(1);
    return 1;
  };
  // Setup, where every rank reaches the same point before any collective that
  // follows: the ranks agree on the outcome. The lowest-numbered failing rank
  // prints its error (rank 0 for an error every rank found, so it is printed
  // once) and every rank exits with status 1 — no MPI_Abort. True when no
  // rank failed.
  auto agree = [&](const Status &st) -> bool {
    float mine = st.isOk() ? 0.0f : 1.0f;
    std::vector<float> failed(static_cast<size_t>(worldSize), 0.0f);
    if (Status g = comm->allGather(&mine, failed.data(), 1); !g.isOk()) {
      if (!st.isOk())
        std::cerr << "llm-run: error: rank " << rank << ": " << st.message() << "\n";
      return fail(g) == 0; // a peer died or stalled: fail() aborts the job
    }
    int count = 0, first = -1;
    for (int r = 0; r < worldSize; ++r)
      if (failed[r] != 0.0f && count++ == 0)
        first = r;
    if (count == 0)
      return true;
    if (rank == first) {
      std::cerr << "llm-run: error: ";
      if (count < worldSize) // say which rank, unless every rank found it
        std::cerr << "rank " << rank << ": ";
      std::cerr << st.message();
      if (count > 1 && count < worldSize)
        std::cerr << " (and " << count - 1 << " more failing "
                  << (count == 2 ? "rank" : "ranks") << ")";
      std::cerr << "\n";
    }
    return false;
  };

  Options opts;
  bool help = false;
  if (!agree(parseArgs(argc, argv, opts, help)))
    return 1;
  if (help || opts.backendInfo) {
    if (rank == 0)
      std::cout << (help ? std::string(kUsage) : backendInfo());
    return 0;
  }
  if (opts.graphPlan) { // the planner is pure: no backend, no device
    StatusOr<Program> loaded = Program::load(opts.program);
    if (!loaded.isOk())
      return fail(loaded.status());
    if (rank == 0)
      std::cout << describeStepGraphs(*loaded, stepGraphEnv(opts));
    return 0;
  }
  comm->setTimeout(opts.timeout);
  // The backend first, so that "--backend cuda: no CUDA device" comes before any file is read.
  int device = -1;
  std::unique_ptr<Backend> backend;
  std::optional<Program> program;
  auto loadProgram = [&]() -> Status {
    StatusOr<std::unique_ptr<Backend>> madeBackend =
        createBackendByName(opts.backend, rank, &device);
    if (!madeBackend.isOk())
      return madeBackend.status();
    backend = std::move(*madeBackend);
    StatusOr<Program> loaded = Program::load(opts.program);
    if (!loaded.isOk())
      return loaded.status();
    program = std::move(*loaded);
    if (program->worldSize() != worldSize)
      return Status::error(StatusCode::InvalidArgument,
                           "the program is partitioned for " +
                               ranksText(program->worldSize()) + " but " +
                               ranksText(worldSize) + (worldSize == 1 ? " was" : " were") +
                               " launched (use mpirun -np " +
                               std::to_string(program->worldSize()) + ")");
    return Status::ok();
  };
  if (!agree(loadProgram()))
    return 1;

  // With the CUDA backend the program's collectives run on NCCL or staged over
  // MPI (--comm); llm-run's own messages (loss, logits, checkpoints) stay on `comm`.
  StatusOr<std::unique_ptr<Communicator>> programComm =
      createProgramCommunicator(*backend, *comm, device, opts.comm, !opts.noOverlap);
  if (!programComm.isOk())
    return fail(programComm.status());
  if (*programComm)
    (*programComm)->setTimeout(opts.timeout);
  Communicator *execComm = *programComm ? programComm->get()
                           : opts.backend == "cpu" ? comm.get()
                                                   : nullptr;
  StatusOr<std::unique_ptr<Executor>> exec =
      Executor::create(*program, rank, execComm, *backend);
  if (!exec.isOk())
    return fail(exec.status());
  Executor &ex = **exec;
  ex.setOverlap(!opts.noOverlap);
  ex.setStepGraphs(!opts.noCudaGraph);
  auto graphNote = [&] { // once per program, when its graph is decided
    if (std::string note = ex.takeGraphNote(); !note.empty() && rank == 0 && !opts.quiet)
      std::cerr << "llm-run: " << note << "\n";
  };
  if (opts.generate) {
    auto setupGenerate = [&]() -> Status {
      ex.setCheckNumerics(opts.checkNumerics);
      return loadWeights(*program, ex, opts);
    };
    if (!agree(setupGenerate()))
      return 1;
    opts.gen.quiet = opts.quiet;
    if (Status st = generate(*program, ex, *comm, opts.gen); !st.isOk())
      return fail(st);
    graphNote();
    if (Status st = exportIfAsked(*program, ex, *comm, opts); !st.isOk())
      return fail(st);
    if (Status st = comm->flushSends(); !st.isOk())
      return fail(st);
    return 0;
  }

  // Everything the steps need; every rank computes the same checks (a rank's
  // own files and weights may differ), then the ranks agree before the first
  // step.
  int64_t firstStep = 0, lastStep = opts.steps; // with --resume: the step to stop at
  std::optional<TokenLoader> data, evalData;
  DataPosition position; // of the next step
  std::map<std::string, std::string> resumedMeta;
  int64_t batch = 0, seq = 0, rows = 0;
  int dpIndex = 0;
  int lossRank = -1, logitsRank = -1;
  auto setupTraining = [&]() -> Status {
    if (!program->entries.empty() || !ex.stage().entry.empty())
      return Status::error(StatusCode::InvalidArgument,
                           "'" + opts.program +
                               "' is an inference program (prefill/decode "
                               "entry points): run it with --generate "
                               "--prompt PROMPTS.npy");
    // Judged on the whole program so that every rank agrees (with pipeline
    // stages, each rank sees only its own stage).
    bool training = false, hasInputIds = false;
    for (const StageProgram &stage : program->stages) {
      training |= stage.trains();
      for (const Binding &b : stage.inputs)
        hasInputIds |= b.name == "input_ids";
    }
    if (!hasInputIds)
      return Status::error(StatusCode::NotFound, "the program has no input 'input_ids'");
    // Only the inputs the rank's stage binds are filled (a middle pipeline
    // stage reads none); a name llm-run cannot fill is an error.
    for (const Binding &b : ex.stage().inputs)
      if (b.name != "input_ids" && b.name != "labels")
        return Status::error(StatusCode::InvalidArgument,
                             "the program has an input '" + b.name +
                                 "' that llm-run cannot fill (it provides "
                                 "input_ids and labels)");
    if (training && opts.eval)
      return Status::error(StatusCode::InvalidArgument,
                           "--eval: '" + opts.program +
                               "' is a training step (it updates the "
                               "parameters); compile without "
                               "--tfm-build-train-step to evaluate");
    ex.setOptimizer(static_cast<float>(opts.lr), static_cast<float>(opts.weightDecay));
    ex.setClipGradNorm(static_cast<float>(opts.clipGradNorm));
    if (opts.clipGradNorm > 0) {
      bool hasNorm = false;
      for (const Instr &instr : ex.stage().instrs)
        hasNorm |= instr.adamwNormSq() != nullptr;
      if (!hasNorm)
        return Status::error(StatusCode::InvalidArgument,
                             "--clip-grad-norm: '" + opts.program +
                                 "' does not compute the gradient norm "
                                 "(compile with --tfm-build-train-step=grad-norm=true)");
    }
    ex.setCheckNumerics(opts.checkNumerics);
    ex.lossScaling() = opts.lossScale; // a checkpoint's state replaces it

    LLMIR_RETURN_IF_ERROR(loadWeights(*program, ex, opts));
    if (!opts.resumeDir.empty()) {
      StatusOr<int64_t> next = resumeCheckpoint(ex, opts.resumeDir, &resumedMeta);
      if (!next.isOk())
        return next.status();
      firstStep = *next;
      // --steps 0 with --export-weights: export the checkpoint's weights.
      if (opts.steps == 0 && opts.exports())
        lastStep = firstStep;
      else if (lastStep < firstStep || (lastStep == firstStep && !opts.exports()))
        return Status::error(StatusCode::InvalidArgument,
                             "option --steps: " + std::to_string(lastStep) +
                                 " is not after step " + std::to_string(firstStep) +
                                 " of the resumed checkpoint '" +
                                 checkpointFile(opts.resumeDir) +
                                 "' (with --resume, --steps is the step to stop at)");
    }

    const Plan &plan = program->plan;
    batch = plan.globalBatch;
    seq = plan.seq;
    int dp = plan.axisSize("dp");
    for (size_t a = 0; a < plan.axes.size(); ++a)
      if (plan.axes[a] == "dp")
        dpIndex = ex.rankInfo().coords[a];
    if (batch <= 0 || seq <= 0 || batch % dp != 0)
      return Status::error(StatusCode::InvalidArgument,
                           "the program's plan has batch " + std::to_string(batch) +
                               ", seq " + std::to_string(seq) + ", dp " +
                               std::to_string(dp));
    rows = batch / dp;
    StatusOr<TokenLoader> loader = openTokenData(opts.data.files, "--data",
                                                 opts.data.dataOrder(), opts.data.seed, plan);
    if (!loader.isOk())
      return loader.status();
    data.emplace(std::move(*loader));
    position = data->positionOfStep(firstStep);
    if (!opts.resumeDir.empty()) {
      StatusOr<DataPosition> resumed = resumedPosition(
          resumedMeta, opts.data, *data, firstStep, checkpointFile(opts.resumeDir));
      if (!resumed.isOk())
        return resumed.status();
      position = *resumed;
    }
    if (!opts.data.evalFiles.empty()) {
      StatusOr<TokenLoader> eval = openTokenData(opts.data.evalFiles, "--eval-data",
                                                 DataOrder::Sequential, 0, plan);
      if (!eval.isOk())
        return eval.status();
      evalData.emplace(std::move(*eval));
    }
    // Rank 0 reports the loss; with pipeline stages it lives on the last
    // stage, whose lowest-numbered rank sends it to rank 0 after each step.
    lossRank = firstRankWithOutput(*program, "loss");
    logitsRank = firstRankWithOutput(*program, "logits");
    if (!opts.logitsOut.empty() && logitsRank < 0)
      return Status::error(StatusCode::InvalidArgument,
                           "--logits-out: the program has no logits output "
                           "(import with llm-translate --logits)");
    if (rank == 0 && !opts.logJson.empty()) {
      StatusOr<OutputFile> opened =
          OutputFile::create(opts.logJson, "--log-json", /*inPlace=*/true);
      if (!opened.isOk())
        return opened.status();
      log.emplace(std::move(*opened));
    }
    return Status::ok();
  };
  if (!agree(setupTraining()))
    return 1;
  if (rank == 0 && !opts.resumeDir.empty())
    std::cerr << "resumed from " << checkpointFile(opts.resumeDir) << " at step "
              << firstStep << "\n";

  const std::string blocker = ex.overlapBlocker();
  if (!opts.noOverlap && !opts.quiet && worldSize > 1 && opts.backend == "cpu" &&
      !blocker.empty())
    std::cerr << "llm-run: rank " << rank << ": no comm/compute overlap: " << blocker << "\n";
  std::optional<TraceRecorder> trace;
  if (!opts.trace.empty()) {
    trace.emplace(opts.traceFirst, opts.traceEnd);
    if (Status st = comm->barrier(); !st.isOk()) // time zero on every rank
      return fail(st);
    trace->resetOrigin();
    ex.setTrace(&*trace);
  }
  std::vector<int64_t> inputs, labels;
  double totalSeconds = 0;
  // Whether the program updates its parameters (lr and the gradient norm are
  // logged then); judged on the whole program like setupTraining does.
  bool trainsParams = false;
  for (const StageProgram &stage : program->stages)
    trainsParams |= stage.trains();
  for (int64_t step = firstStep; step < lastStep; ++step) {
    if (Status st = feedBatch(ex, *data, position, dpIndex * rows, rows); !st.isOk())
      return fail(st);
    position = data->next(position);
    // The schedule is a function of the step alone, so a resumed run goes on
    // where the checkpoint's step left it.
    const double lr = opts.schedule.at(opts.lr, step);
    ex.setOptimizer(static_cast<float>(lr), static_cast<float>(opts.weightDecay));
    const float stepLossScale = ex.lossScaling().scale;
    auto t0 = std::chrono::steady_clock::now();
    if (Status st = ex.run(step); !st.isOk())
      return fail(st);
    graphNote();
    double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    totalSeconds += seconds;
    StatusOr<double> loss = gatherLoss(ex, *comm, lossRank, kLossTag);
    if (!loss.isOk())
      return fail(loss.status());
    // The global gradient norm (before clipping), the same on every rank.
    const double gradNorm = trainsParams ? ex.gradNorm() : -1.0;
    double evalLoss = NAN, evalSeconds = 0;
    if (evalData && (step + 1) % opts.data.evalEvery == 0) {
      auto e0 = std::chrono::steady_clock::now();
      StatusOr<double> e = evaluateLoss(ex, *comm, *evalData, opts.data.evalSteps,
                                        dpIndex * rows, rows, step, lossRank, kLossTag);
      if (!e.isOk())
        return fail(e.status());
      evalLoss = *e;
      evalSeconds =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - e0).count();
    }
    bool save = !opts.saveDir.empty() &&
                (step + 1 == lastStep || (opts.saveEvery && (step + 1) % opts.saveEvery == 0));
    if (save)
      if (Status st = saveCheckpoint(*program, ex, *comm, opts.saveDir, step + 1,
                                     dataPositionMeta(opts.data, position));
          !st.isOk())
        return fail(st);
    if (rank != 0)
      continue;
    // fail() aborts the whole job, so the other ranks stop too.
    if (lossRank >= 0 && !std::isfinite(*loss))
      return fail(Status::error(StatusCode::DataLoss,
                                "non-finite loss at step " + std::to_string(step)));
    double tokensPerS = static_cast<double>(batch * seq) / seconds;
    char normText[160] = "", normJson[160] = "";
    if (trainsParams) {
      std::snprintf(normText, sizeof normText, " | lr %.4e", lr);
      std::snprintf(normJson, sizeof normJson, ", \"lr\": %.9g", lr);
    }
    if (gradNorm >= 0 || ex.lossScaled()) {
      const size_t t = std::strlen(normText), j = std::strlen(normJson);
      std::snprintf(normText + t, sizeof normText - t, " | grad norm %.4f", gradNorm);
      if (std::isfinite(gradNorm))
        std::snprintf(normJson + j, sizeof normJson - j, ", \"grad_norm\": %.9g", gradNorm);
      else // an overflowed f16 step (JSON has no inf)
        std::snprintf(normJson + j, sizeof normJson - j, ", \"grad_norm\": null");
    }
    if (ex.lossScaled()) {
      const bool skipped = ex.lossScaling().lastSkipped;
      const size_t t = std::strlen(normText), j = std::strlen(normJson);
      std::snprintf(normText + t, sizeof normText - t, " | loss scale %g%s",
                    static_cast<double>(stepLossScale), skipped ? " (overflow, skipped)" : "");
      std::snprintf(normJson + j, sizeof normJson - j,
                    ", \"loss_scale\": %.9g, \"skipped\": %s",
                    static_cast<double>(stepLossScale), skipped ? "true" : "false");
    }
    if (!std::isnan(evalLoss)) {
      const size_t t = std::strlen(normText), j = std::strlen(normJson);
      std::snprintf(normText + t, sizeof normText - t, " | eval loss %.6f", evalLoss);
      std::snprintf(normJson + j, sizeof normJson - j, ", \"eval_loss\": %.9g, \"eval_ms\": %.3f",
                    evalLoss, evalSeconds * 1e3);
    }
    if (!opts.quiet) {
      char line[400];
      std::snprintf(line, sizeof line,
                    "step %lld/%lld | loss %.6f%s | %.0f tokens/s | %.1f ms/step | ETA %s",
                    (long long)(step + 1), (long long)lastStep, *loss, normText, tokensPerS,
                    seconds * 1e3,
                    formatDuration(totalSeconds / (step + 1 - firstStep) *
                                   (lastStep - step - 1)).c_str());
      std::cerr << line << "\n";
    }
    if (log) {
      char json[400];
      std::snprintf(json, sizeof json,
                    "{\"step\": %lld, \"loss\": %.9g, \"tokens_per_s\": %.3f, \"step_ms\": %.3f%s}\n",
                    (long long)step, *loss, tokensPerS, seconds * 1e3, normJson);
      if (Status st = log->write(json); !st.isOk())
        return fail(st);
    }
  }
  if (log)
    if (Status st = log->commit(); !st.isOk())
      return fail(st);
  if (!opts.logitsOut.empty() && (rank == 0 || rank == logitsRank)) {
    // Rank 0 writes the logits of logitsRank's stage (its own when it has them).
    const BufferRef *logits = outputOf(*program, logitsRank, "logits");
    std::vector<float> values(static_cast<size_t>(logits->numElements()));
    if (rank == logitsRank) {
      StatusOr<std::vector<float>> out = ex.output("logits");
      if (!out.isOk())
        return fail(out.status());
      values = std::move(*out);
    }
    if (logitsRank != 0) {
      Status st = rank == 0 ? comm->recv(values.data(), logits->numElements(),
                                         logitsRank, kLogitsTag)
                            : comm->send(values.data(), logits->numElements(), 0,
                                         kLogitsTag);
      if (!st.isOk())
        return fail(st);
    }
    if (rank == 0)
      if (Status st = writeNpy(opts.logitsOut, values.data(), logits->shape); !st.isOk())
        return fail(st);
  }
  if (trace)
    if (Status st = writeRunTrace(*program, *trace, *comm, opts.trace); !st.isOk())
      return fail(st);
  if (Status st = exportIfAsked(*program, ex, *comm, opts); !st.isOk())
    return fail(st);
  // The loss/logits messages above are buffered sends: deliver them before
  // the communicator shuts down.
  if (Status st = comm->flushSends(); !st.isOk())
    return fail(st);
  return 0;
}

} // namespace

int main(int argc, char **argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception &e) {
    std::cerr << "llm-run: error: " << e.what() << "\n";
    return 1;
  }
}

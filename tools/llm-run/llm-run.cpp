// llm-run: loads an .llmir program, this rank's weight shards and the token
// data, and runs steps, printing progress. Under mpirun each process is one
// rank; the rank count must match the program's plan.
#include "DeviceSetup.h"
#include "Generate.h"
#include "TrainData.h"
#include "RunTrace.h"

#include "llmir/runtime/Checkpoint.h"
#include "llmir/runtime/Communicator.h"
#include "llmir/runtime/Executor.h"
#include "llmir/runtime/Files.h"
#include "llmir/runtime/MpiCommunicator.h"
#include "llmir/runtime/Npy.h"
#include "llmir/runtime/Program.h"
#include "llmir/runtime/SafeTensors.h"

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

const char *kUsage = R"(usage: llm-run PROGRAM.llmir --weights W.safetensors --data TOKENS [options]
       llm-run PROGRAM.llmir --weights W.safetensors --generate --prompt P.npy [options]

Runs a compiled LLMIR program. Launch multi-rank programs with
`mpirun -np N llm-run ...` (N must equal the program's rank count).

options:
  --weights FILE     safetensors with Hugging Face names and full (global) tensors
  --data FILES       token ids: a 1-D integer .npy, an llm.c token shard
                     (uint16 or uint32), or a quoted glob of them (sorted);
                     memory-mapped. Ids must be below the vocabulary size
  --data-order O     sequential (default): the files as one cyclic stream,
                     step i reads B rows of S+1 tokens from i*B*S on;
                     shuffled: windows of S+1 tokens (within a file) in a new
                     seeded order each epoch, no window twice in an epoch
                     (README: Token data). The position is checkpointed
  --seed N           the shuffle seed (and the sampling seed of --generate)
  --eval-data FILES  held-out tokens (like --data, read sequentially): every
  --eval-every K     K-th step, the mean loss of the first --eval-steps N
  --eval-steps N     batches (default 1), parameters untouched
  --steps N          number of steps (default 1; 0 with --export-weights)
  --lr X             AdamW learning rate for training programs (default 3e-4)
  --weight-decay X   decoupled weight decay on parameters of rank >= 2 (default 0)
  --lr-schedule S    constant (default), cosine or linear: step s (0-based) uses
                     lr*(s+1)/W while s < W (W = --warmup-steps), then decays
                     from --lr to --min-lr at --max-steps (cosine:
                     min + (lr-min)*(1+cos(pi*t))/2, linear: min + (lr-min)*(1-t),
                     t = (s-W)/(max-W)); --min-lr from max-steps on
  --warmup-steps N   linear warm-up steps (default 0; also with constant)
  --min-lr X         the learning rate the decay ends at (default 0)
  --max-steps N      the step the decay reaches --min-lr (default: --steps)
  --clip-grad-norm C scale all gradients by min(1, C/(norm+1e-6)) before AdamW,
                     norm = global L2 norm over all parameters (torch
                     clip_grad_norm_); default: no clipping
  --loss-scale-init S  f16 training (--llm-mixed-precision=compute=f16): the
                     initial dynamic loss scale (default 65536); a step whose
                     gradients overflow is skipped and halves it
  --loss-scale-growth-interval N  double the scale after N steps in a row
                     without overflow (default 2000)
  --eval             forward-only evaluation (prints the loss of each window);
                     a program built with --tfm-build-train-step trains instead
  --log-json FILE    one JSON object per step (rank 0), written as it goes
  --save-checkpoint DIR  write DIR/checkpoint.safetensors (HF names, global
                     tensors, AdamW state, next step) at the end of the run
  --save-every K     ... and after every K-th step
  --resume DIR       continue from DIR's checkpoint (any parallel layout);
                     --steps is then the step to stop at, not a count
  --export-weights FILE  after the run, write the global parameters (HF names,
                     no optimizer state) as safetensors (rank 0, atomically;
                     never over an input file)
  --export-dtype T   f32 (default), bf16 or f16 (rounded to nearest even)
  --logits-out FILE  write the last step's logits (programs compiled with --logits)
  --backend NAME     cpu (default) or cuda
  --backend-info     print the backends built in, the CUDA libraries built with
                     and found, the driver and the devices; then exit
  --timeout SEC      collective timeout before a missing rank is reported (default 60)
  --no-overlap       run every instruction in program order on one thread (by
                     default the collectives run on a comm thread, overlapping
                     the compute they do not depend on)
  --trace FILE       Chrome/Perfetto JSON trace of the run (rank 0 writes all
                     ranks: a compute and a comm lane each, every instruction)
  --trace-steps A:B  trace steps A to B-1 only (0-based; default: every step)
  --check-numerics   stop at the first kernel that produces NaN/Inf, naming it
                     (gradients are always checked before the AdamW update)
  --quiet            no per-step progress line
  --help             this text

Inputs must be regular files. Outputs (--log-json, --logits-out, --out,
--export-weights, checkpoints) are written to a temp file and renamed into
place, never over an input file (under any spelling) or each other; a device
or FIFO is written in place, never replaced.

generation (programs compiled with llm-translate --inference):
  --generate         prefill the prompts, then decode new tokens greedily
                     (or sampled); prints prefill and decode tokens/s
  --prompt FILE      2-D integer .npy [batch, tokens] of prompt token ids,
                     right-padded with --pad-id (or give --lengths)
  --lengths FILE     1-D integer .npy of each prompt's length
  --pad-id N         padding id of --prompt (and of --out after an EOS)
  --max-new-tokens N tokens to generate per sequence (default 16)
  --eos-id N         a sequence stops after this token; the others go on
  --temperature X    0 (default): greedy; > 0: sample from softmax(logits/X)
  --top-k N          sample among the N most likely tokens (default: all)
  --top-p X          sample from the smallest set of mass >= X (default 1)
  --seed N           sampling seed (default 0)
  --out FILE         generated ids [batch, max-new-tokens] as int64 .npy
                     (default: printed, one sequence per line)
  --warmup N         run prefill N extra times, untimed, first (benchmarks)
)";

/// The learning rate schedule: linear warm-up, then constant or a cosine or
/// linear decay to minLr at maxSteps (python/llmir/reference.py lr_at).
struct LrSchedule {
  std::string kind = "constant";
  int64_t warmupSteps = 0, maxSteps = -1; // -1: --steps
  double minLr = 0.0;

  /// The learning rate of 0-based step `step` for the peak `lr`.
  double at(double lr, int64_t step) const {
    if (step < warmupSteps)
      return lr * static_cast<double>(step + 1) / static_cast<double>(warmupSteps);
    if (kind == "constant")
      return lr;
    if (step >= maxSteps)
      return minLr;
    const double t = static_cast<double>(step - warmupSteps) /
                     static_cast<double>(maxSteps - warmupSteps);
    const double coeff =
        kind == "cosine" ? 0.5 * (1.0 + std::cos(M_PI * t)) : 1.0 - t;
    return minLr + coeff * (lr - minLr);
  }
};

struct Options {
  std::string program, weights, logJson, logitsOut, backend = "cpu";
  std::string saveDir, resumeDir;
  std::string exportPath, exportDTypeName; // --export-weights, --export-dtype
  DType exportDType = DType::F32;
  int64_t saveEvery = 0;
  int64_t steps = 1;
  double timeout = 60, lr = 3e-4, weightDecay = 0.0;
  bool noOverlap = false;      // --no-overlap
  std::string trace;           // --trace FILE
  int64_t traceFirst = 0, traceEnd = INT64_MAX; // --trace-steps
  LrSchedule schedule; // --lr-schedule, --warmup-steps, --min-lr, --max-steps
  double clipGradNorm = 0.0; // --clip-grad-norm (0: none)
  LossScaleState lossScale;  // --loss-scale-init, --loss-scale-growth-interval
  bool eval = false, quiet = false, checkNumerics = false;
  bool generate = false;
  bool backendInfo = false; // --backend-info
  GenerateOptions gen;
  DataOptions data; // --data, --data-order, --eval-data, ...
};

/// A file the run reads or writes, with the option that names it.
struct FileOption {
  const char *option;
  std::string path;
};

std::vector<FileOption> inputFiles(const Options &o) {
  return {{"the program", o.program},
          {"--weights", o.weights},
          {"--prompt", o.gen.prompt},
          {"--lengths", o.gen.lengths},
          {"--resume", o.resumeDir.empty() ? "" : checkpointFile(o.resumeDir)}};
}

/// inputFiles and every --data and --eval-data file.
std::vector<FileOption> allInputFiles(const Options &o) {
  std::vector<FileOption> in = inputFiles(o);
  for (const std::string &f : o.data.files)
    in.push_back({"--data", f});
  for (const std::string &f : o.data.evalFiles)
    in.push_back({"--eval-data", f});
  return in;
}

std::vector<FileOption> outputFiles(const Options &o) {
  return {{"--log-json", o.logJson},
          {"--logits-out", o.logitsOut},
          {"--out", o.gen.out},
          {"--export-weights", o.exportPath},
          {"--trace", o.trace},
          {"--save-checkpoint", o.saveDir.empty() ? "" : checkpointFile(o.saveDir)}};
}

/// `path` made absolute with its directory resolved (symlinks, "..", "./"),
/// so that two spellings of a file that does not exist yet compare equal.
std::string canonicalPath(const std::string &path) {
  if (char *real = ::realpath(path.c_str(), nullptr)) {
    std::string out = real;
    std::free(real);
    return out;
  }
  const size_t slash = path.find_last_of('/');
  const std::string dir = slash == std::string::npos ? "." : path.substr(0, slash + 1);
  const std::string base = slash == std::string::npos ? path : path.substr(slash + 1);
  if (char *real = ::realpath(dir.c_str(), nullptr)) {
    std::string out = std::string(real) + "/" + base;
    std::free(real);
    return out;
  }
  return path;
}

/// Whether the path names an existing file that is not a regular one (a
/// device or FIFO: written in place, so two outputs may share it).
bool isSpecialFile(const std::string &path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && !S_ISREG(st.st_mode);
}

/// The run's files: every input a regular file (a FIFO or device would block
/// or never end), and no output naming an input or another output under any
/// spelling (same inode, or same resolved path for files not yet there) — a
/// run must never destroy what it reads. One exception: --save-checkpoint may
/// replace the checkpoint it resumed from (it was read in full at the start;
/// the save is atomic).
Status checkFiles(const Options &o) {
  const std::vector<FileOption> inputs = allInputFiles(o);
  for (const FileOption &in : inputs)
    if (!in.path.empty())
      LLMIR_RETURN_IF_ERROR(checkInputFile(in.path, in.option));
  const std::vector<FileOption> outputs = outputFiles(o);
  for (size_t i = 0; i < outputs.size(); ++i) {
    const FileOption &out = outputs[i];
    if (out.path.empty())
      continue;
    for (const FileOption &in : inputs) {
      if (in.path.empty() ||
          (std::string(out.option) == "--save-checkpoint" &&
           std::string(in.option) == "--resume"))
        continue;
      if (out.path == in.path || sameFile(out.path, in.path))
        return Status::error(StatusCode::InvalidArgument,
                             std::string(out.option) + " '" + out.path +
                                 "' is an input of the run (" + in.option + " '" +
                                 in.path + "'); refusing to overwrite it");
    }
    for (size_t j = 0; j < i; ++j) {
      const FileOption &other = outputs[j];
      if (other.path.empty() || isSpecialFile(out.path))
        continue;
      if (out.path == other.path || sameFile(out.path, other.path) ||
          canonicalPath(out.path) == canonicalPath(other.path))
        return Status::error(StatusCode::InvalidArgument,
                             std::string(other.option) + " and " + out.option +
                                 " name the same file '" + out.path + "'");
    }
  }
  return Status::ok();
}

/// --export-dtype's value.
Status checkExportOptions(Options &o) {
  if (o.exportPath.empty()) {
    if (!o.exportDTypeName.empty())
      return Status::error(StatusCode::InvalidArgument,
                           "--export-dtype needs --export-weights FILE");
    return Status::ok();
  }
  const std::string &dt = o.exportDTypeName;
  if (dt.empty() || dt == "f32")
    o.exportDType = DType::F32;
  else if (dt == "bf16")
    o.exportDType = DType::BF16;
  else if (dt == "f16")
    o.exportDType = DType::F16;
  else
    return Status::error(StatusCode::InvalidArgument,
                         "option --export-dtype: expected f32, bf16 or f16, found '" +
                             dt + "'");
  return Status::ok();
}

/// The largest value of a count option (steps, ids, seeds, ...).
constexpr int64_t kMaxCount = 1000000000000000; // 1e15

/// A count option's value: decimal digits only (no sign, exponent or hex),
/// at most `max`.
Status parseCount(const std::string &flag, const std::string &v, int64_t max,
                  int64_t &out) {
  bool digits = !v.empty() && v.size() <= 18 &&
                std::all_of(v.begin(), v.end(),
                            [](char c) { return c >= '0' && c <= '9'; });
  int64_t value = digits ? std::stoll(v) : -1;
  if (!digits || value > max)
    return Status::error(StatusCode::InvalidArgument,
                         "option " + flag + ": expected an integer from 0 to " +
                             std::to_string(max) + ", found '" + v + "'");
  out = value;
  return Status::ok();
}

Status parseArgs(int argc, char **argv, Options &o, bool &help) {
  auto need = [&](int &i, const char *flag) -> StatusOr<std::string> {
    if (i + 1 >= argc)
      return Status::error(StatusCode::InvalidArgument,
                           std::string("option ") + flag + " needs a value");
    return std::string(argv[++i]);
  };
  auto number = [](const std::string &flag, const std::string &v,
                   double &out) -> Status {
    char *end = nullptr;
    out = std::strtod(v.c_str(), &end);
    if (v.empty() || *end != '\0' || !std::isfinite(out) || out < 0)
      return Status::error(StatusCode::InvalidArgument,
                           "option " + flag + ": expected a non-negative number, found '" + v + "'");
    return Status::ok();
  };
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      help = true;
      return Status::ok();
    }
    if (a == "--backend-info") {
      o.backendInfo = true;
      return Status::ok();
    }
    if (a == "--eval") { o.eval = true; continue; }
    if (a == "--quiet") { o.quiet = true; continue; }
    if (a == "--check-numerics") { o.checkNumerics = true; continue; }
    if (a == "--generate") { o.generate = true; continue; }
    if (a == "--no-overlap") { o.noOverlap = true; continue; }
    if (a == "--trace-steps") {
      StatusOr<std::string> v = need(i, a.c_str());
      if (!v.isOk())
        return v.status();
      LLMIR_RETURN_IF_ERROR(parseTraceSteps(*v, o.traceFirst, o.traceEnd));
      continue;
    }
    std::string *target = nullptr;
    if (a == "--weights") target = &o.weights;
    else if (a == "--data") target = &o.data.spec;
    else if (a == "--data-order") target = &o.data.order;
    else if (a == "--eval-data") target = &o.data.evalSpec;
    else if (a == "--log-json") target = &o.logJson;
    else if (a == "--logits-out") target = &o.logitsOut;
    else if (a == "--backend") target = &o.backend;
    else if (a == "--save-checkpoint") target = &o.saveDir;
    else if (a == "--resume") target = &o.resumeDir;
    else if (a == "--export-weights") target = &o.exportPath;
    else if (a == "--export-dtype") target = &o.exportDTypeName;
    else if (a == "--prompt") target = &o.gen.prompt;
    else if (a == "--lengths") target = &o.gen.lengths;
    else if (a == "--out") target = &o.gen.out;
    else if (a == "--lr-schedule") target = &o.schedule.kind;
    else if (a == "--trace") target = &o.trace;
    if (target) {
      StatusOr<std::string> v = need(i, a.c_str());
      if (!v.isOk())
        return v.status();
      *target = *v;
      continue;
    }
    if (a == "--max-new-tokens" || a == "--pad-id" || a == "--eos-id" ||
        a == "--top-k" || a == "--seed" || a == "--warmup" || a == "--steps" ||
        a == "--save-every" || a == "--warmup-steps" || a == "--max-steps" ||
        a == "--loss-scale-growth-interval" || a == "--eval-every" || a == "--eval-steps") {
      StatusOr<std::string> v = need(i, a.c_str());
      if (!v.isOk())
        return v.status();
      int64_t n = 0;
      LLMIR_RETURN_IF_ERROR(parseCount(a, *v, kMaxCount, n));
      if (n < 1 && (a == "--max-new-tokens" || a == "--save-every" || a == "--max-steps" ||
                    a == "--loss-scale-growth-interval" || a == "--eval-every" ||
                    a == "--eval-steps"))
        return Status::error(StatusCode::InvalidArgument,
                             "option " + a + ": expected a positive integer, found '" +
                                 *v + "'");
      if (a == "--max-new-tokens") o.gen.maxNewTokens = n;
      else if (a == "--pad-id") o.gen.padId = n;
      else if (a == "--eos-id") o.gen.eosId = n;
      else if (a == "--top-k") o.gen.topK = n;
      else if (a == "--seed") o.gen.seed = o.data.seed = static_cast<uint64_t>(n);
      else if (a == "--eval-every") o.data.evalEvery = n;
      else if (a == "--eval-steps") o.data.evalSteps = n;
      else if (a == "--warmup") o.gen.warmup = n;
      else if (a == "--steps") o.steps = n;
      else if (a == "--warmup-steps") o.schedule.warmupSteps = n;
      else if (a == "--max-steps") o.schedule.maxSteps = n;
      else if (a == "--loss-scale-growth-interval") o.lossScale.growthInterval = n;
      else o.saveEvery = n;
      continue;
    }
    if (a == "--temperature" || a == "--top-p" || a == "--timeout" || a == "--lr" ||
        a == "--weight-decay" || a == "--min-lr" || a == "--clip-grad-norm" ||
        a == "--loss-scale-init") {
      StatusOr<std::string> v = need(i, a.c_str());
      if (!v.isOk())
        return v.status();
      double d = 0;
      LLMIR_RETURN_IF_ERROR(number(a, *v, d));
      if (a == "--top-p" && (d <= 0 || d > 1))
        return Status::error(StatusCode::InvalidArgument,
                             "option " + a + ": invalid value '" + *v + "'");
      if (a == "--temperature") o.gen.temperature = d;
      else if (a == "--top-p") o.gen.topP = d;
      else if (a == "--lr") o.lr = d;
      else if (a == "--weight-decay") o.weightDecay = d;
      else if (a == "--min-lr") o.schedule.minLr = d;
      else if (a == "--clip-grad-norm") {
        if (d <= 0)
          return Status::error(StatusCode::InvalidArgument,
                               "option --clip-grad-norm: expected a positive number, found '" +
                                   *v + "'");
        o.clipGradNorm = d;
      } else if (a == "--loss-scale-init") {
        if (!(d > 0) || !std::isfinite(static_cast<float>(d)))
          return Status::error(StatusCode::InvalidArgument,
                               "option --loss-scale-init: expected a positive f32 number, "
                               "found '" + *v + "'");
        o.lossScale.scale = static_cast<float>(d);
      } else o.timeout = d;
      continue;
    }
    if (!a.empty() && a[0] == '-')
      return Status::error(StatusCode::InvalidArgument, "unknown option '" + a + "' (see --help)");
    if (!o.program.empty())
      return Status::error(StatusCode::InvalidArgument,
                           "more than one program given ('" + o.program + "', '" + a + "')");
    o.program = a;
  }
  if (o.program.empty())
    return Status::error(StatusCode::InvalidArgument, "no program given (see --help)");
  if (o.weights.empty())
    return Status::error(StatusCode::InvalidArgument, "--weights is required");
  if (o.generate && o.gen.prompt.empty())
    return Status::error(StatusCode::InvalidArgument, "--generate needs --prompt FILE");
  LrSchedule &sched = o.schedule;
  if (sched.kind != "constant" && sched.kind != "cosine" && sched.kind != "linear")
    return Status::error(StatusCode::InvalidArgument,
                         "--lr-schedule " + sched.kind + ": expected constant, cosine or linear");
  if (sched.maxSteps < 0)
    sched.maxSteps = o.steps;
  if (sched.kind != "constant" && sched.maxSteps <= sched.warmupSteps)
    return Status::error(StatusCode::InvalidArgument,
                         "--lr-schedule " + sched.kind + ": --max-steps (" +
                             std::to_string(sched.maxSteps) +
                             ") must be greater than --warmup-steps (" +
                             std::to_string(sched.warmupSteps) + ")");
  if (sched.minLr > o.lr)
    return Status::error(StatusCode::InvalidArgument, "--min-lr must not exceed --lr");
  if (!o.generate && !o.gen.prompt.empty())
    return Status::error(StatusCode::InvalidArgument, "--prompt needs --generate");
  if (o.data.spec.empty() && !o.generate)
    return Status::error(StatusCode::InvalidArgument, "--data is required");
  if (!o.data.evalSpec.empty() && !o.logitsOut.empty())
    return Status::error(StatusCode::InvalidArgument,
                         "--logits-out cannot be combined with --eval-data (the last "
                         "logits would be the evaluation's)");
  if (o.saveEvery && o.saveDir.empty())
    return Status::error(StatusCode::InvalidArgument,
                         "--save-every needs --save-checkpoint DIR");
  if (o.backend != "cpu" && o.backend != "cuda")
    return Status::error(StatusCode::InvalidArgument,
                         "--backend " + o.backend + ": expected cpu or cuda");
  if (o.steps == 0 && o.exportPath.empty())
    return Status::error(StatusCode::InvalidArgument,
                         "option --steps: expected a positive integer, found '0' "
                         "(0 steps only with --export-weights)");
  if (!o.trace.empty() && (o.generate || o.backend != "cpu"))
    return Status::error(StatusCode::InvalidArgument,
                         "--trace: only training/eval runs on the cpu backend are traced");
  LLMIR_RETURN_IF_ERROR(checkExportOptions(o));
  LLMIR_RETURN_IF_ERROR(checkDataOptions(o.data));
  return checkFiles(o);
}

bool launchedByMpi() {
  for (const char *v : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"})
    if (std::getenv(v))
      return true;
  return false;
}

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

/// --export-weights: the run's final parameters, gathered like a checkpoint.
Status exportIfAsked(const Program &program, Executor &ex, Communicator &comm,
                     const Options &opts) {
  if (opts.exportPath.empty())
    return Status::ok();
  LLMIR_RETURN_IF_ERROR(
      exportWeights(program, ex, comm, opts.exportPath, opts.exportDType));
  if (comm.rank() == 0 && !opts.quiet)
    std::cerr << "exported the weights to " << opts.exportPath << " ("
              << dtypeName(opts.exportDType) << ")\n";
  return Status::ok();
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
  comm->setTimeout(opts.timeout);
  // The backend first, so that "--backend cuda: no CUDA device" comes before any file is read.
  int device = -1;
  std::unique_ptr<Backend> backend;
  std::optional<Program> program;
  auto loadProgram = [&]() -> Status {
    StatusOr<std::unique_ptr<Backend>> madeBackend =
        createBackendByName(opts.backend, &device);
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

  // With the CUDA backend the program's collectives run on NCCL over device
  // buffers; llm-run's own messages (loss, logits, checkpoints) stay on `comm`.
  StatusOr<std::unique_ptr<Communicator>> programComm =
      createProgramCommunicator(*backend, *comm, device, program->worldSize());
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
  if (opts.generate) {
    auto setupGenerate = [&]() -> Status {
      ex.setCheckNumerics(opts.checkNumerics);
      StatusOr<SafeTensorsFile> weights = SafeTensorsFile::open(opts.weights);
      if (!weights.isOk())
        return weights.status();
      return ex.loadParams(*weights);
    };
    if (!agree(setupGenerate()))
      return 1;
    opts.gen.quiet = opts.quiet;
    if (Status st = generate(*program, ex, *comm, opts.gen); !st.isOk())
      return fail(st);
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
        hasNorm |= instr.isKernel(KernelId::Adamw) && instr.ins.size() > 1;
      if (!hasNorm)
        return Status::error(StatusCode::InvalidArgument,
                             "--clip-grad-norm: '" + opts.program +
                                 "' does not compute the gradient norm "
                                 "(compile with --tfm-build-train-step=grad-norm=true)");
    }
    ex.setCheckNumerics(opts.checkNumerics);
    ex.lossScaling() = opts.lossScale; // a checkpoint's state replaces it

    StatusOr<SafeTensorsFile> weights = SafeTensorsFile::open(opts.weights);
    if (!weights.isOk())
      return weights.status();
    LLMIR_RETURN_IF_ERROR(ex.loadParams(*weights));
    if (!opts.resumeDir.empty()) {
      StatusOr<int64_t> next = resumeCheckpoint(ex, opts.resumeDir, &resumedMeta);
      if (!next.isOk())
        return next.status();
      firstStep = *next;
      // --steps 0 with --export-weights: export the checkpoint's weights.
      if (opts.steps == 0 && !opts.exportPath.empty())
        lastStep = firstStep;
      else if (lastStep < firstStep || (lastStep == firstStep && opts.exportPath.empty()))
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

// llm-run's command line (Options.h).
#include "Options.h"

#include "RunTrace.h"

#include "llmir/runtime/Checkpoint.h"
#include "llmir/runtime/Files.h"
#include "llmir/runtime/HfWeights.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sys/stat.h>
#include <vector>

namespace llmir::runtime {

const char *const kUsage = R"(usage: llm-run PROGRAM.llmir --weights W.safetensors --data TOKENS [options]
       llm-run PROGRAM.llmir --weights W.safetensors --generate --prompt P.npy [options]

Runs a compiled LLMIR program. Launch multi-rank programs with
`mpirun -np N llm-run ...` (N must equal the program's rank count).

options:
  --weights FILE     safetensors with Hugging Face names and full (global) tensors,
                     or a Hugging Face model directory (model.safetensors or
                     shards + model.safetensors.index.json; F32/BF16/F16)
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
  --steps N          number of steps (default 1; 0 with --export-weights/-hf)
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
  --export-hf DIR    after the run, write a directory transformers loads:
                     model.safetensors (save_pretrained's names), config.json
                     (--hf-config's, or the --weights directory's, with
                     torch_dtype), tokenizer files found next to that config;
                     never the --weights directory
  --hf-config FILE   the model's Hugging Face config.json for --export-hf
  --export-dtype T   f32 (default), bf16 or f16 (rounded to nearest even)
  --logits-out FILE  write the last step's logits (programs compiled with --logits)
  --backend NAME     cpu (default) or cuda
  --backend-info     print the backends built in, the CUDA libraries built with
                     and found, the driver and the devices; then exit
  --no-cuda-graph    run every CUDA step eagerly (by default a step or decode
                     entry the planner finds capturable runs once, is captured
                     as one CUDA graph on its second run and replayed; a
                     program that cannot be says why once)
  --graph-plan       print which part of each step a CUDA graph can hold and
                     where each host synchronisation goes (with --comm,
                     --check-numerics, --trace as given); no backend, no
                     device; then exit
  --comm KIND        the CUDA backend's collectives: nccl, mpi (staged through
                     host memory: several ranks may share a GPU) or auto
                     (default: nccl when every rank has a GPU of its own)
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
namespace {


/// A file the run reads or writes, with the option that names it.
struct FileOption {
  const char *option;
  std::string path;
};

std::vector<FileOption> inputFiles(const Options &o) {
  // A --weights directory is checked when opened (HfWeights::open).
  return {{"the program", o.program},
          {"--weights", isDirectory(o.weights) ? "" : o.weights},
          {"--hf-config", o.hfConfig},
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
          {"--export-hf", o.exportHfDir.empty() ? "" : o.exportHfDir + "/model.safetensors"},
          {"--export-hf", o.exportHfDir.empty() ? "" : o.exportHfDir + "/config.json"},
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

/// --export-hf's config and tokenizer sources; its directory is never the
/// --weights directory (whose files it would replace).
Status checkExportHf(Options &o) {
  if (o.exportHfDir.empty()) {
    if (!o.hfConfig.empty())
      return Status::error(StatusCode::InvalidArgument, "--hf-config needs --export-hf DIR");
    return Status::ok();
  }
  const bool weightsDir = isDirectory(o.weights);
  if (weightsDir && canonicalPath(o.exportHfDir) == canonicalPath(o.weights))
    return Status::error(StatusCode::InvalidArgument,
                         "--export-hf '" + o.exportHfDir +
                             "' is the --weights directory; refusing to overwrite it");
  struct stat st;
  if (::stat(o.exportHfDir.c_str(), &st) == 0 && !S_ISDIR(st.st_mode))
    return Status::error(StatusCode::InvalidArgument,
                         "--export-hf '" + o.exportHfDir + "' exists and is not a directory");
  if (o.hfConfig.empty()) {
    if (!weightsDir)
      return Status::error(StatusCode::InvalidArgument,
                           "--export-hf needs the model's config.json: --hf-config FILE, or "
                           "--weights DIR of a Hugging Face model");
    o.hfConfig = o.weights + "/config.json";
  }
  const size_t slash = o.hfConfig.find_last_of('/');
  o.hfSideFilesDir = weightsDir ? o.weights
                     : slash == std::string::npos ? "."
                                                  : o.hfConfig.substr(0, slash);
  return Status::ok();
}

/// --export-dtype's value.
Status checkExportOptions(Options &o) {
  LLMIR_RETURN_IF_ERROR(checkExportHf(o));
  if (!o.exports()) {
    if (!o.exportDTypeName.empty())
      return Status::error(StatusCode::InvalidArgument,
                           "--export-dtype needs --export-weights FILE or --export-hf DIR");
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

} // namespace

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
    if (a == "--graph-plan") { o.graphPlan = true; continue; }
    if (a == "--no-cuda-graph") { o.noCudaGraph = true; continue; }
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
    else if (a == "--export-hf") target = &o.exportHfDir;
    else if (a == "--hf-config") target = &o.hfConfig;
    else if (a == "--prompt") target = &o.gen.prompt;
    else if (a == "--lengths") target = &o.gen.lengths;
    else if (a == "--out") target = &o.gen.out;
    else if (a == "--lr-schedule") target = &o.schedule.kind;
    else if (a == "--trace") target = &o.trace;
    else if (a == "--comm") target = &o.comm;
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
  if (o.graphPlan) { // reads the program only; --comm, --check-numerics, --trace shape the plan
    if (o.comm != "nccl" && o.comm != "mpi" && o.comm != "auto")
      return Status::error(StatusCode::InvalidArgument,
                           "--comm " + o.comm + ": expected nccl, mpi or auto");
    return Status::ok();
  }
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
  if (o.comm != "nccl" && o.comm != "mpi" && o.comm != "auto")
    return Status::error(StatusCode::InvalidArgument,
                         "--comm " + o.comm + ": expected nccl, mpi or auto");
  if (o.comm == "nccl" && o.backend != "cuda")
    return Status::error(StatusCode::InvalidArgument,
                         "--comm nccl: needs --backend cuda (the cpu backend uses MPI)");
  if (o.steps == 0 && !o.exports())
    return Status::error(StatusCode::InvalidArgument,
                         "option --steps: expected a positive integer, found '0' "
                         "(0 steps only with --export-weights or --export-hf)");
  if (!o.trace.empty() && (o.generate || o.backend != "cpu"))
    return Status::error(StatusCode::InvalidArgument,
                         "--trace: only training/eval runs on the cpu backend are traced");
  LLMIR_RETURN_IF_ERROR(checkExportOptions(o));
  LLMIR_RETURN_IF_ERROR(checkDataOptions(o.data));
  return checkFiles(o);
}

StepGraphEnv stepGraphEnv(const Options &o) {
  StepGraphEnv env;
  env.communicatorCapturable = o.comm != "mpi";
  env.communicatorName = o.comm == "mpi" ? "staged (--comm mpi)" : "NCCL";
  env.checkNumerics = o.checkNumerics;
  env.trace = !o.trace.empty();
  return env;
}

} // namespace llmir::runtime

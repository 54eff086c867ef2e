// Checkpoints: one safetensors file with Hugging Face names holding the full
// (global) parameters, the AdamW moments (`<name>.exp_avg`, `.exp_avg_sq`) and
// the next step, so a run resumes in any parallel layout (resharding on load).
// Values are stored as f32 whatever the program's dtype; resume rounds them
// into the program's buffers. exportWeights writes the parameters alone.
#ifndef LLMIR_RUNTIME_CHECKPOINT_H
#define LLMIR_RUNTIME_CHECKPOINT_H

#include "llmir/runtime/Communicator.h"
#include "llmir/runtime/Executor.h"

#include <map>
#include <string>

namespace llmir::runtime {

/// `DIR/checkpoint.safetensors`.
std::string checkpointFile(const std::string &dir);

/// Gathers every rank's shards on rank 0, which writes the checkpoint
/// atomically (temp file + rename). Collective over all ranks. Pipeline
/// stages bind different parameters: each tensor comes from the ranks of one
/// stage that binds it (rank 0 need not hold it; a tensor bound on two
/// stages, like the tied embedding, is saved once).
/// `extraMeta` adds metadata entries (llm-run's data position).
Status saveCheckpoint(const Program &program, Executor &exec, Communicator &comm,
                      const std::string &dir, int64_t nextStep,
                      const std::map<std::string, std::string> &extraMeta = {});

/// Writes the global parameters (HF names, no optimizer state) gathered like
/// saveCheckpoint's to the safetensors file `path` as `dtype` (F32, or BF16/F16
/// rounded to nearest even). Collective; rank 0 writes atomically.
/// `hfNames`: under the names Hugging Face's save_pretrained writes
/// (hfSavedName: GPT-2's `transformer.` prefix).
Status exportWeights(const Program &program, Executor &exec, Communicator &comm,
                     const std::string &path, DType dtype, bool hfNames = false);

/// --export-hf: a directory transformers' from_pretrained loads. Rank 0
/// creates `dir` (when missing) and writes `dir/model.safetensors`
/// (exportWeights with hfNames), `dir/config.json` (hfExportConfig of
/// `configPath`) and copies the tokenizer files of `sideFilesDir` ("" for
/// none). Collective.
Status exportHf(const Program &program, Executor &exec, Communicator &comm,
                const std::string &dir, DType dtype, const std::string &configPath,
                const std::string &sideFilesDir);

/// Loads this rank's slices of the parameters and optimizer state from the
/// checkpoint in `dir`; returns the step to continue from. `meta`, when
/// given, receives the checkpoint's metadata.
StatusOr<int64_t> resumeCheckpoint(Executor &exec, const std::string &dir,
                                   std::map<std::string, std::string> *meta = nullptr);

} // namespace llmir::runtime

#endif // LLMIR_RUNTIME_CHECKPOINT_H

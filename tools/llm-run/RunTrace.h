// llm-run --trace FILE [--trace-steps A:B]: the run's per-instruction trace,
// gathered to rank 0 and written as Chrome/Perfetto JSON.
#ifndef LLMIR_TOOLS_LLM_RUN_RUNTRACE_H
#define LLMIR_TOOLS_LLM_RUN_RUNTRACE_H

#include "llmir/runtime/Communicator.h"
#include "llmir/runtime/Program.h"
#include "llmir/runtime/Status.h"
#include "llmir/runtime/Trace.h"

#include <cstdint>
#include <string>

namespace llmir::runtime {

/// --trace-steps "A:B" (0-based steps A..B-1; either end may be left out:
/// "3:" is step 3 on, ":5" steps 0..4) into [first, end).
Status parseTraceSteps(const std::string &value, int64_t &first, int64_t &end);

/// Every rank's spans to rank 0 (collective), which writes them to `path`
/// (atomically, like llm-run's other outputs).
Status writeRunTrace(const Program &program, const TraceRecorder &trace,
                     Communicator &comm, const std::string &path);

} // namespace llmir::runtime

#endif // LLMIR_TOOLS_LLM_RUN_RUNTRACE_H

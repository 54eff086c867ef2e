//===- ScheduleSVG.cpp - a simulated pipeline schedule as an SVG timeline -===//
//
// One row per rank, a box per action, a time axis scaled to the makespan and
// a legend; written by --llm-pipeline-schedule svg= and --llm-simulate svg=.
//
//===----------------------------------------------------------------------===//

#include "llmir/Partition/Pipeline/Schedule.h"

#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/raw_ostream.h"

#include <algorithm>
#include <cmath>

using namespace llmir::pipeline;
using llvm::StringRef;

/// A tick step of 1, 2 or 5 times a power of ten giving about `ticks` ticks.
static double niceStep(double span, int ticks) {
  double raw = span / ticks;
  double power = std::pow(10.0, std::floor(std::log10(raw)));
  for (double m : {1.0, 2.0, 5.0})
    if (m * power >= raw)
      return m * power;
  return 10 * power;
}

/// `t` for an axis label: seconds with an SI prefix chosen for the span.
static std::string formatTick(double t, double span, llvm::StringRef unit) {
  if (unit != "s")
    return llvm::formatv("{0}", t).str();
  if (span >= 1)
    return llvm::formatv("{0} s", t).str();
  if (span >= 1e-3)
    return llvm::formatv("{0} ms", t * 1e3).str();
  return llvm::formatv("{0} us", t * 1e6).str();
}

/// `text` with the XML metacharacters escaped.
static std::string escapeXML(StringRef text) {
  std::string out;
  for (char c : text) {
    switch (c) {
    case '<': out += "&lt;"; break;
    case '>': out += "&gt;"; break;
    case '&': out += "&amp;"; break;
    case '"': out += "&quot;"; break;
    default: out += c;
    }
  }
  return out;
}

/// Width in px of `chars` characters of the monospace font at `fontSize`
/// (an advance of 0.6 em, as DejaVu Sans Mono and Courier have).
static double textWidth(size_t chars, double fontSize) {
  return 0.6 * fontSize * chars;
}

std::string llmir::pipeline::renderSVG(const Schedule &schedule,
                                       const SimResult &result, StringRef unit,
                                       StringRef caption) {
  const double left = 70, top = 40, rowH = 28, gap = 6, drawWidth = 1200;
  const int titleSize = 13, textSize = 11; // px
  const double margin = 40;
  const double kindStep = 120, chunkStep = 90; // legend entry widths
  double span = result.makespan > 0 ? result.makespan : 1;
  double scale = drawWidth / span;
  std::string title = llvm::formatv(
      "{0}{1}{2}: pp={3} vpp={4} microbatches={5}  makespan {6}  bubble "
      "{7:F1}%",
      caption, caption.empty() ? "" : "  ", schedule.name, schedule.numRanks,
      schedule.chunksPerRank, schedule.numMicrobatches,
      formatTick(result.makespan, span, unit), 100 * result.bubbleFraction);
  // The legend: four action kinds, then one shade per chunk (see below).
  double legendWidth =
      4 * kindStep +
      (schedule.chunksPerRank > 1 ? schedule.chunksPerRank * chunkStep : 0);
  double width = std::max({left + drawWidth + margin,
                           left + textWidth(title.size(), titleSize) + margin,
                           left + legendWidth + margin});
  double height = top + schedule.numRanks * (rowH + gap) + 80;
  std::string out;
  llvm::raw_string_ostream os(out);
  os << llvm::formatv("<svg xmlns=\"http://www.w3.org/2000/svg\" "
                      "width=\"{0}\" height=\"{1}\" font-family=\"monospace\" "
                      "font-size=\"{2}\">\n",
                      int(std::ceil(width)), int(std::ceil(height)), textSize);
  os << llvm::formatv("<text x=\"{0}\" y=\"20\" font-size=\"{1}\">{2}</text>\n",
                      left, titleSize, escapeXML(title));
  auto colour = [](Action::Kind kind) {
    switch (kind) {
    case Action::F:
      return "#4e79a7";
    case Action::B:
      return "#59a14f";
    case Action::I:
      return "#f28e2b";
    case Action::W:
      return "#b07aa1";
    }
    return "#999999";
  };
  // Later chunks of a rank are drawn lighter.
  auto chunkOpacity = [&](int chunk) {
    return 1.0 - 0.35 * chunk / std::max(1, schedule.chunksPerRank);
  };
  for (int r = 0; r < schedule.numRanks; ++r)
    os << llvm::formatv("<text x=\"8\" y=\"{0}\">rank {1}</text>\n",
                        top + r * (rowH + gap) + rowH / 2 + 4, r);
  for (const SimEvent &e : result.events) {
    double x = left + e.start * scale, y = top + e.rank * (rowH + gap);
    double w = (e.end - e.start) * scale;
    int chunk = e.action.stage / schedule.numRanks;
    os << llvm::formatv("<rect x=\"{0:F2}\" y=\"{1}\" width=\"{2:F2}\" "
                        "height=\"{3}\" fill=\"{4}\" fill-opacity=\"{5:F2}\" "
                        "stroke=\"white\"><title>rank {6} {7} [{8}, {9}]"
                        "</title></rect>\n",
                        x, y, w, rowH, colour(e.action.kind), chunkOpacity(chunk),
                        e.rank, formatAction(e.action), formatTick(e.start, span, unit),
                        formatTick(e.end, span, unit));
    if (w >= 10)
      os << llvm::formatv("<text x=\"{0:F2}\" y=\"{1}\" fill=\"white\" "
                          "text-anchor=\"middle\">{2}</text>\n",
                          x + w / 2, y + rowH / 2 + 4, e.action.microbatch);
  }
  // Time axis: about ten ticks at 1/2/5 x 10^k, labelled with the unit.
  double axisY = top + schedule.numRanks * (rowH + gap) + 4;
  os << llvm::formatv("<line x1=\"{0}\" y1=\"{1}\" x2=\"{2:F2}\" y2=\"{1}\" "
                      "stroke=\"black\"/>\n",
                      left, axisY, left + drawWidth);
  double step = niceStep(span, 10);
  for (int i = 0; i * step <= span * (1 + 1e-9); ++i)
    os << llvm::formatv("<line x1=\"{0:F2}\" y1=\"{1}\" x2=\"{0:F2}\" "
                        "y2=\"{2}\" stroke=\"black\"/><text x=\"{0:F2}\" "
                        "y=\"{3}\" text-anchor=\"middle\">{4}</text>\n",
                        left + i * step * scale, axisY, axisY + 4, axisY + 16,
                        formatTick(i * step, span, unit));
  if (unit != "s")
    os << llvm::formatv("<text x=\"{0:F2}\" y=\"{1}\" text-anchor=\"end\">"
                        "({2})</text>\n",
                        left + drawWidth, axisY + 30, unit);
  double legendX = left, legendY = axisY + 24;
  for (auto [kind, label] :
       {std::pair{Action::F, "F forward"}, {Action::B, "B backward"},
        {Action::I, "I input-grad"}, {Action::W, "W weight-grad"}}) {
    os << llvm::formatv("<rect x=\"{0}\" y=\"{1}\" width=\"12\" height=\"12\" "
                        "fill=\"{2}\"/><text x=\"{3}\" y=\"{4}\">{5}</text>\n",
                        legendX, legendY, colour(kind), legendX + 16, legendY + 10,
                        label);
    legendX += kindStep;
  }
  // Virtual stages: the shade of each chunk.
  for (int c = 0; schedule.chunksPerRank > 1 && c < schedule.chunksPerRank; ++c) {
    os << llvm::formatv("<rect x=\"{0}\" y=\"{1}\" width=\"12\" height=\"12\" "
                        "fill=\"#4e79a7\" fill-opacity=\"{2:F2}\"/><text x=\"{3}\" "
                        "y=\"{4}\">chunk {5}</text>\n",
                        legendX, legendY, chunkOpacity(c), legendX + 16, legendY + 10, c);
    legendX += chunkStep;
  }
  os << "</svg>\n";
  return out;
}


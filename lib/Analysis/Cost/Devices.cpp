//===- Devices.cpp - device presets, links and cluster descriptions -------===//
//
// The hardware half of the cost model (CostModel.h): named GPU/CPU presets,
// interconnect overrides and the cluster JSON a user can hand the planner.
//
//===----------------------------------------------------------------------===//

#include "llmir/Analysis/Cost/CostModel.h"

#include "CostUtil.h"

#include "llvm/ADT/StringSwitch.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/JSON.h"

using namespace llmir;
using namespace llmir::cost;
using namespace llmir::cost::detail;

//===----------------------------------------------------------------------===//
// Hardware
//===----------------------------------------------------------------------===//

llvm::StringRef cost::devicePresetNames() {
  return "h100-80g, a100-80g, a100-40g, cpu";
}

llvm::Expected<Device> cost::getDevicePreset(llvm::StringRef name) {
  Device d;
  d.name = name.str();
  if (name == "h100-80g" || name == "h100") {
    // H100 SXM5: 989 TFLOP/s dense bf16, 67 fp32 (non-tensor), 3.35 TB/s,
    // NVLink 4 900 GB/s bidirectional = 450 per direction, one 400 Gb/s
    // NDR NIC per GPU.
    d.name = "h100-80g";
    d.peakFlopsLow = 989 * kTera;
    d.peakFlopsFp32 = 67 * kTera;
    d.hbmBandwidth = 3350 * kGB;
    d.memoryBytes = 80 * kGB;
    d.intraBandwidth = 450 * kGB;
    d.intraLatency = 3e-6;
    d.interBandwidth = 50 * kGB;
    d.interLatency = 8e-6;
    // H100 runs further from its peak than A100 (power/clock limits, GEMMs
    // of transformer size): Megatron-Core's GPT-3 175B at 390 model TFLOP/s
    // per GPU (bench/planner) calibrates ~57% of peak on the layer GEMMs.
    d.gemmEfficiency = 0.57;
    d.memEfficiency = 0.85;
    return d;
  }
  if (name == "a100-80g" || name == "a100-40g" || name == "a100") {
    // A100 SXM4: 312 TFLOP/s bf16, 19.5 fp32, 2.0 TB/s (80G) / 1.55 (40G),
    // NVLink 3 600 GB/s bidirectional = 300 per direction, 200 Gb/s HDR per
    // GPU (DGX A100 / Selene: 8 HCAs per node).
    bool big = name != "a100-40g";
    d.name = big ? "a100-80g" : "a100-40g";
    d.peakFlopsLow = 312 * kTera;
    d.peakFlopsFp32 = 19.5 * kTera;
    d.hbmBandwidth = (big ? 2039 : 1555) * kGB;
    d.memoryBytes = (big ? 80 : 40) * kGB;
    d.intraBandwidth = 300 * kGB;
    d.intraLatency = 3e-6;
    d.interBandwidth = 25 * kGB;
    d.interLatency = 8e-6;
    // Calibrated on Megatron-LM SC'21 Table 1 (bench/planner/megatron_table1.py):
    // cuBLAS reaches ~230 of 312 TFLOP/s on the layer GEMMs and streaming
    // kernels ~85% of HBM bandwidth.
    d.gemmEfficiency = 0.74;
    d.memEfficiency = 0.85;
    return d;
  }
  if (name == "cpu") {
    // LLMIR's CPU backend on a 2-core AVX2 host (this project's machine):
    // 2 cores x 32 fp32 FLOP/cycle x 2.5 GHz = 160 GFLOP/s peak, ~10 GB/s of
    // memory bandwidth. Shared-memory MPI (4 ranks on the 2 cores): 1.5 GB/s
    // and 7 us, fitted to the all-reduces of llm-run --trace
    // (bench/trace_vs_simulate.py --fit-link: 1.5-2.8 GB/s, 3.5-17 us over
    // five runs of gpt2-tiny and h=256 GPTs, dp2·tp2 / pp2·dp2 / pp4; a
    // loaded, oversubscribed host). Compute calibrated by
    // measurement (bench/planner/calibrate_cpu.py): one rank trains GPT-2
    // 124M at batch 4 x 256 in ~7 s per step (~110 GFLOP/s of model FLOPs),
    // an h=512 6-layer GPT in 3.2 s, an h=256 one in 1.9 s. Ranks sharing the
    // host share these numbers: describe a bigger host, or the per-rank
    // share, in a cluster file.
    d.name = "cpu";
    d.peakFlopsLow = 160e9;
    d.peakFlopsFp32 = 160e9;
    d.hbmBandwidth = 10 * kGB;
    d.memoryBytes = 16 * kGB;
    d.intraBandwidth = 1.5 * kGB;
    d.intraLatency = 7e-6;
    d.interBandwidth = 1.25 * kGB;
    d.interLatency = 50e-6;
    d.gemmEfficiency = 0.85;
    d.memEfficiency = 0.6;
    // OpenBLAS loses efficiency below ~384-wide operands (h=256 models run
    // at ~60 GFLOP/s here, h>=512 at ~100; bench/planner/calibrate_cpu.py).
    d.gemmSaturationDim = 384;
    d.kernelOverhead = 20e-6;
    return d;
  }
  return fail("unknown device '" + name + "' (presets: " + devicePresetNames() +
              "; or give a cluster JSON file)");
}

llvm::Error cost::applyIntraLink(Device &device, llvm::StringRef name) {
  double gbps = llvm::StringSwitch<double>(name)
                    .Case("nvlink", device.intraBandwidth / kGB)
                    .Case("nvlink3", 300)
                    .Case("nvlink4", 450)
                    .Case("pcie4", 25)
                    .Case("pcie5", 50)
                    .Default(-1);
  if (gbps < 0)
    return fail("unknown intra-node link '" + name +
                "' (nvlink, nvlink3, nvlink4, pcie4, pcie5)");
  device.intraBandwidth = gbps * kGB;
  return llvm::Error::success();
}

llvm::Error cost::applyInterLink(Device &device, llvm::StringRef name) {
  double gbit = llvm::StringSwitch<double>(name)
                    .Case("ib-400g", 400)
                    .Case("ib-200g", 200)
                    .Case("ib-100g", 100)
                    .Case("eth-100g", 100)
                    .Case("eth-25g", 25)
                    .Default(-1);
  if (gbit < 0)
    return fail("unknown inter-node link '" + name +
                "' (ib-400g, ib-200g, ib-100g, eth-100g, eth-25g)");
  device.interBandwidth = gbit / 8 * kGB;
  device.interLatency = name.starts_with("eth") ? 30e-6 : 8e-6;
  return llvm::Error::success();
}

llvm::Expected<Cluster> cost::parseClusterJSON(llvm::StringRef text) {
  llvm::Expected<llvm::json::Value> parsed = llvm::json::parse(text);
  if (!parsed)
    return fail("cluster JSON: " + llvm::toString(parsed.takeError()));
  const llvm::json::Object *root = parsed->getAsObject();
  if (!root)
    return fail("cluster JSON: expected an object");
  Cluster cluster;
  if (auto n = root->getInteger("nodes"))
    cluster.nodes = *n;
  if (auto n = root->getInteger("gpus_per_node"))
    cluster.gpusPerNode = *n;
  if (cluster.nodes < 1 || cluster.gpusPerNode < 1)
    return fail("cluster JSON: nodes and gpus_per_node must be >= 1");
  const llvm::json::Value *dev = root->get("device");
  if (!dev)
    return fail("cluster JSON: missing \"device\" (a preset name or an object)");
  if (auto name = dev->getAsString()) {
    auto d = getDevicePreset(*name);
    if (!d)
      return fail("cluster JSON: " + llvm::toString(d.takeError()));
    cluster.device = *d;
  } else if (const llvm::json::Object *o = dev->getAsObject()) {
    if (auto base = o->getString("base")) {
      auto d = getDevicePreset(*base);
      if (!d)
        return fail("cluster JSON: " + llvm::toString(d.takeError()));
      cluster.device = *d;
    }
    Device &d = cluster.device;
    if (auto name = o->getString("name"))
      d.name = name->str();
    if (d.name.empty())
      d.name = "custom";
    auto number = [&](llvm::StringRef key, double &field, double scale) {
      if (auto v = o->getNumber(key))
        field = *v * scale;
    };
    number("peak_tflops_bf16", d.peakFlopsLow, kTera);
    number("peak_tflops_fp32", d.peakFlopsFp32, kTera);
    number("hbm_gbps", d.hbmBandwidth, kGB);
    number("memory_gb", d.memoryBytes, kGB);
    number("gemm_efficiency", d.gemmEfficiency, 1);
    number("mem_efficiency", d.memEfficiency, 1);
    number("gemm_saturation_dim", d.gemmSaturationDim, 1);
    number("intra_gbps", d.intraBandwidth, kGB);
    number("intra_latency_us", d.intraLatency, 1e-6);
    number("inter_gbps", d.interBandwidth, kGB);
    number("inter_latency_us", d.interLatency, 1e-6);
    number("kernel_overhead_us", d.kernelOverhead, 1e-6);
    if (d.peakFlopsFp32 <= 0 && d.peakFlopsLow <= 0)
      return fail("cluster JSON: device needs peak_tflops_bf16 or "
                  "peak_tflops_fp32 (or a \"base\" preset)");
    if (d.peakFlopsLow <= 0)
      d.peakFlopsLow = d.peakFlopsFp32;
    if (d.peakFlopsFp32 <= 0)
      d.peakFlopsFp32 = d.peakFlopsLow;
    if (d.hbmBandwidth <= 0 || d.memoryBytes <= 0 || d.intraBandwidth <= 0 ||
        d.interBandwidth <= 0)
      return fail("cluster JSON: device needs hbm_gbps, memory_gb, intra_gbps "
                  "and inter_gbps (or a \"base\" preset)");
    if (d.kernelOverhead < 0)
      return fail("cluster JSON: kernel_overhead_us must be >= 0");
    // A measured speed relative to the base (bench/trace_vs_simulate.py
    // --fit): scales its FLOP rates and memory bandwidth together.
    if (auto speed = o->getNumber("compute_speed")) {
      if (*speed <= 0)
        return fail("cluster JSON: compute_speed must be > 0");
      d.peakFlopsLow *= *speed;
      d.peakFlopsFp32 *= *speed;
      d.hbmBandwidth *= *speed;
    }
    if (d.gemmEfficiency <= 0 || d.gemmEfficiency > 1 ||
        d.memEfficiency <= 0 || d.memEfficiency > 1)
      return fail("cluster JSON: efficiencies must be in (0, 1]");
  } else {
    return fail("cluster JSON: \"device\" must be a preset name or an object");
  }
  if (auto intra = root->getString("intra"))
    if (auto err = applyIntraLink(cluster.device, *intra))
      return fail("cluster JSON: " + llvm::toString(std::move(err)));
  if (auto inter = root->getString("inter"))
    if (auto err = applyInterLink(cluster.device, *inter))
      return fail("cluster JSON: " + llvm::toString(std::move(err)));
  return cluster;
}


"""compare_losses.py REF.jsonl OUT.jsonl [--rtol R]: the per-step losses of two
`llm-run --log-json` logs agree (same steps, |a - b| <= rtol * |a|)."""
import argparse
import json
import sys


def losses(path):
    with open(path) as f:
        return [json.loads(line)["loss"] for line in f if line.strip()]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("ref")
    p.add_argument("out")
    p.add_argument("--rtol", type=float, default=1e-5)
    args = p.parse_args()
    ref, out = losses(args.ref), losses(args.out)
    if not ref or len(ref) != len(out):
        print(f"error: {len(ref)} reference steps, {len(out)} steps", file=sys.stderr)
        return 1
    for step, (a, b) in enumerate(zip(ref, out)):
        if abs(a - b) > args.rtol * abs(a):
            print(f"error: step {step}: loss {b} != reference {a} (rtol {args.rtol})",
                  file=sys.stderr)
            return 1
    print(f"losses match: {len(ref)} steps")
    return 0


if __name__ == "__main__":
    sys.exit(main())

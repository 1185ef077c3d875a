"""Benchmark of lib.pieces (a script, not a test: pytest does not collect ``bench_*.py``).

    python tests/bench_pieces.py            # all cases, best of 3 runs each
    python tests/bench_pieces.py --quick    # one run each

Prints, per case, the exact count, the best wall time and pieces per second, and how the
decisions were taken (certified float64 / error-bound filter / exact expansions / cells
moved to rational arithmetic).  Timings depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import time

import torch

from lib import nets
from lib import pieces as P
from lib import sawtooth as st


def cases() -> list[tuple[str, torch.nn.Sequential, tuple[float, float]]]:
    out = [(f"sawtooth_net({L})", st.sawtooth_net(L), (0.0, 1.0)) for L in (16, 20)]
    out += [("sawtooth_net(20, float32)", st.sawtooth_net(20, torch.float32), (0.0, 1.0)),
            ("yarotsky_square_net(18)", st.yarotsky_square_net(18), (0.0, 1.0))]
    for init in ("he", "pytorch"):
        for seed in range(3):
            out.append((f"random 8x64 {init} seed {seed}",
                        nets.random_relu_net([64] * 8, init, seed), (-1.0, 1.0)))
    for rel in (1e-15, 1e-9, 1e-3):
        out.append((f"sawtooth_net(12) perturbed {rel:g}",
                    nets.perturbed_net(st.sawtooth_net(12), rel, seed=0), (0.0, 1.0)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one run per case")
    args = parser.parse_args()
    repeats = 1 if args.quick else 3
    torch.set_num_threads(1)
    print(f"{'case':38s} {'pieces':>9s} {'best s':>8s} {'pieces/s':>10s}  decisions")
    for name, net, interval in cases():
        best, a = float("inf"), None
        for _ in range(repeats):
            t0 = time.perf_counter()
            a = P.piece_analysis(net, interval)
            best = min(best, time.perf_counter() - t0)
        s = a.stats
        how = (f"cert {s['certified_signs']}, filt {s['filtered_signs']}, "
               f"exp {s['expansion_signs']}, exact cells {s['exact_cells']}")
        print(f"{name:38s} {a.count:9d} {best:8.3f} {a.count / best:10.3g}  {how}")


if __name__ == "__main__":
    main()

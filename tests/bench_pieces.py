"""Benchmark of lib.pieces (a script, not a test: pytest collects only ``test_*.py``).

    python tests/bench_pieces.py              # sawtooth table, then the mixed cases (best of 3)
    python tests/bench_pieces.py --quick      # one run of each
    python tests/bench_pieces.py --depths 20 22 --points 1000001 --no-cases

Part 1, in one run: the exact counter (:func:`lib.pieces.count_pieces`) on the depth-L
sawtooth, L = 20..24 by default (2^L pieces), beside grid sampling
(:func:`lib.pieces.grid_count`) at 10^7 points on the same network: wall time, CPU time of
this process (``time.process_time``, which a loaded machine does not inflate) and the rates,
pieces/s for the counter and points/s for the grid, with the pieces the grid sees.
Part 2: mixed cases (dyadic, float32, Yarotsky, random and perturbed nets) with the count,
the best wall time, pieces per second, and how the decisions were taken (certified float64 /
error-bound filter / exact expansions / cells moved to rational arithmetic).

Torch runs on one thread; numpy's BLAS is not used by the counter.  Timings depend on the
machine and its load: compare rates measured in the same run.
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


def timed(f, *args, **kw):
    """``(result, wall seconds, CPU seconds of this process)``."""
    w0, c0 = time.perf_counter(), time.process_time()
    out = f(*args, **kw)
    return out, time.perf_counter() - w0, time.process_time() - c0


def sawtooth_table(depths: list[int], points: int, repeats: int) -> None:
    print(f"exact counter vs grid sampling at {points:,} points, sawtooth_net(L) on [0, 1]")
    print(f"{'L':>3s} {'pieces':>10s} {'wall s':>7s} {'cpu s':>7s} {'pieces/s':>9s} "
          f"{'(cpu)':>9s} | {'grid sees':>10s} {'wall s':>7s} {'cpu s':>7s} {'points/s':>9s}")
    for L in depths:
        net = st.sawtooth_net(L)
        best = None
        for _ in range(repeats):
            n, w, c = timed(P.count_pieces, net, max_pieces=None)
            best = (w, c) if best is None or w < best[0] else best
        assert n == 2**L, (L, n)
        g, gw, gc = timed(P.grid_count, net, (0.0, 1.0), points)
        print(f"{L:3d} {n:10,d} {best[0]:7.2f} {best[1]:7.2f} {n / best[0]:9.3g} "
              f"{n / best[1]:9.3g} | {g:10,d} {gw:7.2f} {gc:7.2f} {points / gw:9.3g}", flush=True)


def mixed_cases(repeats: int) -> None:
    print(f"\n{'case':38s} {'pieces':>9s} {'best s':>8s} {'pieces/s':>10s}  decisions")
    for name, net, interval in cases():
        best, a = float("inf"), None
        for _ in range(repeats):
            t0 = time.perf_counter()
            a = P.piece_analysis(net, interval)
            best = min(best, time.perf_counter() - t0)
        s = a.stats
        how = (f"cert {s['certified_signs']}, filt {s['filtered_signs']}, "
               f"exp {s['expansion_signs']}, exact cells {s['exact_cells']}")
        print(f"{name:38s} {a.count:9d} {best:8.3f} {a.count / best:10.3g}  {how}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one run per case")
    parser.add_argument("--depths", type=int, nargs="+", default=[20, 21, 22, 23, 24],
                        help="sawtooth depths of the table (default 20..24)")
    parser.add_argument("--points", type=int, default=10**7, help="grid points (default 1e7)")
    parser.add_argument("--no-cases", action="store_true", help="only the sawtooth table")
    args = parser.parse_args()
    torch.set_num_threads(1)
    sawtooth_table(args.depths, args.points, 1)
    if not args.no_cases:
        mixed_cases(1 if args.quick else 3)


if __name__ == "__main__":
    main()

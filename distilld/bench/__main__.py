"""``make bench``: one run, measured figures and ratios printed (nothing asserted).

Engine throughput (``process_batch`` on dict records with 8 features, and the
reduce step alone on pre-graded codes), bytes of state per key, the realised
rate with many keys, end-to-end throughput through the embedded broker next
to a bare consume loop, and representativeness against uniform random sampling
on generated streams over sliding windows of ~10,000 records, and on random
small configurations (bench/sweep.py).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from distilld.bench.alone import references
from distilld.bench.ceiling import ceilings
from distilld.bench.cellsizes import print_by_cell_size
from distilld.bench.decoding import decoding
from distilld.bench.quality import run_quality
from distilld.bench.streams import STREAMS, people
from distilld.encoding import NumericBinner
from distilld.features import build_graders
from distilld.processor import DistilledProcessor
from distilld.snapshot import dump, load

GOALS = {"category_tv": 10.0, "pair_tv": 3.0, "ks": 2.0, "corr": 1.5, "count": 2.0}
OTHER_CUTS = (4, 8, 10)  # pair TV where the numerics' cut is not the engine's (quintiles)


def _rate(n: int, seconds: float) -> str:
    return f"{n / seconds:>12,.0f} records/s"


def engine_throughput(n: int, batch: int) -> None:
    stream, labels, features = people(n)
    records = stream.records(labels)
    proc = DistilledProcessor(build_graders(features), 3600, 0.1, batch)
    proc.process_batch(records[:batch])  # compile the kernel, warm the encoders
    proc.reset()
    t0 = time.perf_counter()
    out = proc.process_batch(records)
    dt = time.perf_counter() - t0
    print(f"process_batch, dicts, 5 categorical + 3 numeric, batch {batch}: {_rate(n, dt)}  (sent {len(out):,})")

    # the reduce step alone: grade once (codes, and the numerics' standard scores), then time only
    # cells → window → budget → selection
    codes = np.empty((n, len(features)), dtype=np.int32)
    scores = []
    grader = DistilledProcessor(build_graders(features), 3600, 0.1, batch)
    for f, (g, enc) in enumerate(zip(grader._graders, grader._encoders, strict=True)):
        if isinstance(enc, NumericBinner):
            codes[:, f], score = enc.encode_scored(g.extract_batch(records), np.zeros(n, dtype=np.int64), 0)
            scores.append(score)
        else:
            codes[:, f] = enc.encode(g.extract_batch(records), np.zeros(n, dtype=np.int64), 0)
    score_matrix = np.column_stack(scores)
    proc = DistilledProcessor(build_graders(features), 3600, 0.1, batch)
    ts = np.full(batch, 1000.0)
    proc.select_codes(codes[:batch], ts, scores=score_matrix[:batch])
    t0 = time.perf_counter()
    for start in range(0, n, batch):
        stop = min(start + batch, n)
        proc.select_codes(codes[start:stop], ts[: stop - start], scores=score_matrix[start:stop])
    dt = time.perf_counter() - t0
    print(f"selection step alone (pre-graded codes), batch {batch}:           {_rate(n, dt)}")
    layout, panes = proc._layout, proc._windows.panes
    print(
        f"state per key: {proc.bytes_per_key:,} bytes ({layout.n_cells} cells; "
        f"the {layout.marginal_cells} marginal ones in {panes} panes)"
    )
    t0 = time.perf_counter()
    blob = dump(proc)
    t1 = time.perf_counter()
    load(DistilledProcessor(build_graders(features), 3600, 0.1, batch), blob)
    t2 = time.perf_counter()
    print(
        f"snapshot of one key's full window: {len(blob):,} bytes; dump {1000 * (t1 - t0):.1f} ms, "
        f"restore {1000 * (t2 - t1):.1f} ms"
    )


def many_keys(n_keys: int, per_key: int, rate: float = 0.1) -> None:
    rng = np.random.default_rng(7)
    keys = rng.integers(0, n_keys, n_keys * per_key)
    records = [{"k": int(k), "c": "ab"[int(k) % 2]} for k in keys.tolist()]
    proc = DistilledProcessor(
        build_graders([{"name": "c", "type": "categorical", "categories": ["a", "b"]}]),
        3600, rate, 5000, key_func=lambda r: r["k"], max_keys=n_keys,
    )  # fmt: skip
    t0 = time.perf_counter()
    sent = len(proc.process_batch(records))
    dt = time.perf_counter() - t0
    realised = sent / len(records)
    print(
        f"{n_keys:,} keys × {per_key} records at rate {rate}: realised rate {realised:.4f} "
        f"({(realised / rate - 1) * 100:+.2f} %), {_rate(len(records), dt)}"
    )


def _draw(i: int) -> int | None:
    """The i-th draw of a generated stream: its generator's own seed first, then 101, 102, …"""
    return None if i == 0 else 100 + i


def representativeness(n: int, seeds: int) -> None:
    print(f"\nrepresentativeness at rate 0.1, sliding windows of ~10,000 records, {n:,} records per stream")
    print("ratio = random sampling's error ÷ distilld's error (higher is better; random averaged over 5 seeds)")
    print(
        f"over {seeds} draws of each generated stream (its own seed, then 101, 102, …): the mean, and the"
        "\nlowest–highest below (distilld's tie-break seed barely matters: its binner's sample holds these windows)"
    )
    header = f"{'stream':<18}" + "".join(f"{m:>14}" for m in GOALS)
    print(header)
    worst = dict.fromkeys(GOALS, np.inf)
    other: dict[str, dict[str, float]] = {}
    for name in STREAMS:
        runs = [run_quality(name, cuts=OTHER_CUTS, n=n, stream_seed=_draw(s)) for s in range(seeds)]
        ratios = {m: np.array([r[m][1] / max(r[m][0], 1e-12) for r in runs]) for m in runs[0]}
        other[name] = {m: float(ratios[m].mean()) for m in ratios if m.startswith("pair_tv")}
        for m in GOALS:
            worst[m] = min(worst[m], float(ratios[m].mean()))
        print(f"{name:<18}" + "".join(f"{ratios[m].mean():>13.2f}x" for m in GOALS))
        print(f"{'':<18}" + "".join(f"{f'({ratios[m].min():.2f}–{ratios[m].max():.2f})':>14}" for m in GOALS))
    print(f"{'goal':<18}" + "".join(f"{GOALS[m]:>13.1f}x" for m in GOALS))
    print(f"{'worst vs goal':<18}" + "".join(f"{'met' if worst[m] >= GOALS[m] else 'BELOW':>14}" for m in GOALS))
    print(
        "\npairwise TV at other cuts of the numerics: the engine balances pairs at quintiles (pair_bins 5),"
        "\nthe cut above; an evaluation that cuts elsewhere splits its cells, and reads lower"
    )
    names = ["pair_tv", *(f"pair_tv@{q}" for q in OTHER_CUTS)]
    titles = ["quintiles", *(f"{q} bins" for q in OTHER_CUTS)]
    print(f"{'stream':<18}" + "".join(f"{t:>14}" for t in titles))
    for name, row in other.items():
        print(f"{name:<18}" + "".join(f"{row[m]:>13.2f}x" for m in names))
    print("\nmany keys: people cut into interleaved keys (sessions), a window each; the whole output's error")
    for per_key in (1000, 100, 10):
        runs = [run_quality("people", n=n, stream_seed=_draw(s), per_key=per_key) for s in range(seeds)]
        ratios = {m: np.array([r[m][1] / max(r[m][0], 1e-12) for r in runs]) for m in GOALS}
        print(f"{f'~{per_key} a key':<18}" + "".join(f"{ratios[m].mean():>13.2f}x" for m in GOALS))
    yardsticks = (
        (
            references,
            "reference (bench/alone.py): each feature, or each pair on the engine's pair cells, balanced alone"
            "\n(every 10th record of each cell); not a bound, a yardstick of what balancing everything at once costs",
        ),
        (
            ceilings,
            "ceiling (bench/ceiling.py): random's error ÷ the least any selection can have, a whole number of"
            "\nrecords in each cell (every cell of every feature and pair rounded best at once, in every window)",
        ),
    )
    for measure, title in yardsticks:
        print("\n" + title)
        for name in STREAMS:
            row = measure(name, n=n)
            print(f"{name:<18}" + "".join(f"{row[m]:>13.2f}x" if m in row else f"{'':>14}" for m in GOALS))
    print(
        "\nby cell size (bench/cellsizes.py): records each cell misses, |count − ideal|, summed over the windows;"
        "\nfloor: the least a whole count that is right on average can miss, 2f(1−f) a cell (f: the ideal's fraction)"
    )
    print_by_cell_size("clickstream", n=n)


def main(argv: list[str] | None = None, prog: str = "python -m distilld.bench") -> None:
    parser = argparse.ArgumentParser(prog=prog)
    parser.add_argument("--records", type=int, default=200_000, help="records for the throughput runs")
    parser.add_argument("--batch", type=int, default=5000)
    parser.add_argument("--quality-records", type=int, default=60_000)
    parser.add_argument(
        "--quality-seeds", type=int, default=5, help="draws of each stream for the representativeness means"
    )
    parser.add_argument("--kafka-records", type=int, default=300_000, help="0 skips the end-to-end run")
    parser.add_argument("--sweep", type=int, default=30, help="random configurations next to random sampling (0: none)")
    args = parser.parse_args(argv)
    print("== engine")
    engine_throughput(args.records, args.batch)
    many_keys(10_000, 25)
    decoding()
    if args.kafka_records:
        from distilld.bench.kafka import end_to_end

        print("\n== end to end")
        end_to_end(args.kafka_records, args.batch)
    print("\n== representativeness")
    representativeness(args.quality_records, args.quality_seeds)
    if args.sweep:
        from distilld.bench.sweep import sweep

        print(f"\n== {args.sweep} random configurations (bench/sweep.py): any ratio below 1×?")
        sweep(args.sweep)


if __name__ == "__main__":
    main()

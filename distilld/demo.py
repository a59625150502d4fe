"""``make demo`` (engine stage): distilld next to random sampling on a generated stream.

Streams the seed's people records through :class:`DistilledProcessor` in
batches, and every few batches redraws a table: records in and out, and for
each feature the drift (TV distance between the window's shares and the sent
shares) of distilld next to a random sample of the same size. Stops after
``--duration`` seconds or on Ctrl-C. The Kafka demo replaces this in the
daemon issue.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from distilld.bench.streams import STREAMS
from distilld.evaluation import random_selection
from distilld.features import build_graders
from distilld.processor import DistilledProcessor
from distilld.stats import total_variation


def _shares_tv(codes: np.ndarray, window: np.ndarray, chosen: np.ndarray) -> float:
    k = int(codes[window].max(initial=0)) + 1
    return float(total_variation(np.bincount(codes[window], minlength=k), np.bincount(codes[chosen], minlength=k)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make demo", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--stream", choices=sorted(STREAMS), default="people")
    parser.add_argument("--records", type=int, default=120_000)
    parser.add_argument("--rate", type=float, default=0.1)
    parser.add_argument("--window-records", type=int, default=10_000, help="sliding window size, in records")
    parser.add_argument("--duration", type=float, default=30.0, help="stop after this many seconds")
    parser.add_argument("--pace", type=float, default=40_000.0, help="records per second to replay at")
    args = parser.parse_args(argv)

    stream, labels, features = STREAMS[args.stream](args.records)
    records = stream.records(labels)
    per_s = 100.0  # the generators stamp 100 records per second of event time
    window_s = args.window_records / per_s
    batch = 1000
    proc = DistilledProcessor(build_graders(features), window_s, args.rate, batch, timestamp_func=lambda r: r["_t"])
    for i, (rec, t) in enumerate(zip(records, stream.timestamps.tolist(), strict=True)):
        rec["_t"], rec["_i"] = t, i
    random_mask, _ = random_selection(len(records), batch, args.rate, seed=1)
    ours = np.zeros(len(records), dtype=bool)
    binned = {n: np.searchsorted(np.quantile(v, [0.2, 0.4, 0.6, 0.8]), v) for n, v in stream.numeric.items()}
    columns = {**stream.categorical, **binned}
    tty = sys.stdout.isatty()
    started = time.monotonic()
    try:
        for start in range(0, len(records), batch):
            for dp in proc.process_batch(records[start : start + batch]):
                ours[dp.data["_i"]] = True
            done = start + batch
            if (done // batch) % 10 and done < len(records):
                continue
            window = np.arange(max(0, done - args.window_records), done)
            lines = [
                f"distilld demo — {args.stream} stream, rate {args.rate:.0%}, window {args.window_records:,} records",
                f"in: {done:,} records   out: distilld {int(ours[:done].sum()):,}"
                f"  random {int(random_mask[:done].sum()):,}",
                "",
                f"{'feature':<18}{'distilld drift':>16}{'random drift':>16}{'better by':>12}",
            ]
            for name, codes in columns.items():
                d = _shares_tv(codes, window, window[ours[window]])
                r = _shares_tv(codes, window, window[random_mask[window]])
                lines.append(f"{name:<18}{d:>16.4f}{r:>16.4f}{r / max(d, 1e-9):>11.1f}x")
            lines.append(
                "\n(drift: TV distance between the window's shares and the sent shares; numerics in quintiles)"
            )
            if tty:
                print("\x1b[2J\x1b[H", end="")
            print("\n".join(lines), flush=True)
            if time.monotonic() - started > args.duration:
                break
            time.sleep(max(0.0, batch * 10 / args.pace))
    except KeyboardInterrupt:
        print("\nstopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

#!/usr/bin/env python3
"""Cost per hop of several exported models, measured side by side in one process.

Each model runs on one thread (as in export.py's report); the models take turns in interleaved rounds,
so a slower or busier stretch of a shared machine falls on all of them alike.  Prints, per model, the
mean cost per call of each round and the median over rounds, as a share of the hop.

Usage: compare_cost.py [--clip some.wav] [--rounds 5] [--calls 600] a.onnx b.onnx ...
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from export import one_thread_session, clip_magnitude, cost_per_call_ms  # noqa: E402
from model import HOP, SR  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("onnx", nargs="+")
    ap.add_argument("--clip", default=None, help="wav whose frames feed the models (default: as export.py)")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--calls", type=int, default=600, help="timed calls per model per round")
    a = ap.parse_args()
    magn, clip_name = clip_magnitude(a.clip, a.seconds)
    magn = magn.numpy().astype(np.float32)
    sessions = {p: one_thread_session(p) for p in a.onnx}
    hop_ms = HOP / SR * 1000
    rounds = {p: [] for p in a.onnx}
    for _ in range(a.rounds):
        for p, sess in sessions.items():
            rounds[p].append(float(cost_per_call_ms(sess, magn, a.calls).mean()))
    print("frames of %s; %d rounds of %d calls per model, one thread" % (clip_name, a.rounds, a.calls))
    for p, r in rounds.items():
        r = np.array(r)
        print("%-40s rounds %s ms; median %.3f ms = %.1f %% of the %.2f ms hop; lowest %.3f ms = %.1f %%" % (
            p, " ".join("%.3f" % v for v in r), np.median(r), np.median(r) / hop_ms * 100, hop_ms,
            r.min(), r.min() / hop_ms * 100))


if __name__ == "__main__":
    main()

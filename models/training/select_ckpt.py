#!/usr/bin/env python3
"""Compare checkpoints on the held-out slice of the synthetic corpus (never the dev set):
spectral SDR per stem (mixture phase) on the fixed validation crops used by train.py, plus the
uniform-mask (mixture/4) and oracle-IRM references.  Prints a table; the best mean wins.

Usage: select_ckpt.py work/run2/last.pt work/run3/best.pt ...
"""
import sys

import numpy as np
import torch

import train as tr
from model import build_net

torch.set_num_threads(2)
val = tr.make_val(tr.os.path.join(tr.os.path.dirname(tr.os.path.abspath(tr.__file__)), "work", "corpus"), 16, 5.0)
mix, tgt = val[0], val[1]


def score(fn):
    out = []
    for i in range(0, len(mix), 4):
        X, S = tr.spectra(mix[i:i + 4], tgt[i:i + 4])
        sdr, num = tr.spec_sdr(fn(X, S), X, S)
        out.append(torch.where(num > 1e-3, sdr, torch.full_like(sdr, float("nan"))))
    s = torch.cat(out).numpy()
    per = [float(np.nanmean(s[:, k])) for k in range(4)]
    return per, float(np.mean(per))


rows = [("uniform", score(lambda X, S: torch.full((X.shape[0], 4) + X.shape[1:], 0.25))),
        ("oracle IRM", score(lambda X, S: S.abs() / (S.abs().sum(1, keepdim=True) + 1e-10)))]
best = None
for path in sys.argv[1:]:
    ck = torch.load(path, map_location="cpu")
    net = build_net(ck["cfg"])
    net.load_state_dict(ck["model"])
    net.eval()
    with torch.no_grad():
        r = score(lambda X, S: net(X.abs()))
    rows.append((path, r))
    if best is None or r[1] > best[1]:
        best = (path, r[1])
print("| checkpoint | vocals | drums | bass | other | mean |\n|---|---|---|---|---|---|")
for name, (per, mean) in rows:
    print("| %s | %s | %.2f |" % (name, " | ".join("%.2f" % v for v in per), mean))
if best:
    print("BEST", best[0], "%.2f" % best[1])

#!/usr/bin/env python3
"""Uniform average of the weights of several checkpoints of one network (a "model soup").
Checkpoints that share a starting point (one run continued from another, or several fine-tuned
from the same weights) often average to a better model than any of them alone. Choose between
the average and its parts with `select_ckpt.py`, as for any checkpoint.

The output holds the averaged weights, the common config and, in its state, where the weights came
from (`averaged_from`: path, steps and training minutes of each part); `export.py --ckpt` exports
it and `train.py --init` continues from it (a fresh optimiser and schedule).

Usage: average_checkpoints.py OUT.pt A.pt B.pt [...]
"""
import os
import sys

import torch


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    out, paths = sys.argv[1], sys.argv[2:]
    parts = [torch.load(p, map_location="cpu") for p in paths]
    cfg = parts[0]["cfg"]
    for path, ck in zip(paths, parts):
        if ck["cfg"] != cfg:
            sys.exit("%s has config %s, not %s: only one network's checkpoints can be averaged" % (path, ck["cfg"], cfg))
        if ck["model"].keys() != parts[0]["model"].keys():
            sys.exit("%s has other parameters than %s" % (path, paths[0]))
    model = {name: sum(ck["model"][name].float() for ck in parts) / len(parts) for name in parts[0]["model"]}
    origin = [{"path": os.path.relpath(p), "step": ck.get("state", {}).get("step", 0),
               "train_minutes": ck.get("state", {}).get("train_seconds", 0.0) / 60} for p, ck in zip(paths, parts)]
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    torch.save({"model": model, "cfg": cfg, "state": {"averaged_from": origin}}, out + ".tmp")
    os.replace(out + ".tmp", out)
    print("wrote %s: the mean of %s" % (out, ", ".join(paths)))


if __name__ == "__main__":
    main()

"""Find songs whose vocal stem a generator defect spoiled, and optionally delete them so that
generate_corpus.py (same --out, --songs and --seed) makes them again with the fixed generator.

Two defects are looked for, both fixed in generate_corpus.py but present in songs made before:
* click: the vocal stem's peak is a lone spike in its first 10 ms (the formant singer's inverse
  STFT); the click set the song's level and turned the voice down;
* lost voice: the melody asks for singing but the vocal stem is within 30 dB of its loudest
  100 ms in under a third of the melody's time (a Sinsy blow-up normalised the voice away and
  shifted it, or left a burst and silence); generate_corpus.py now puts every Sinsy render through
  the same test (`voice_is_lost`) and gives a lost one to the formant singer.

Usage: scan_corpus.py CORPUS [CORPUS ...] [--delete] [--include-held-out] [--list FILE]
Held-out songs (index % 25 == 0) are reported but kept unless --include-held-out, so that the
checkpoint rule (select_ckpt.py) keeps scoring the same songs.
"""
import argparse
import glob
import json
import os
import shutil
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import soundfile as sf

from generate_corpus import voice_is_lost
from train import is_val

SR = 44100


def vocal_defects(song_dir):
    """The defects (list of names) of one song's vocal stem."""
    x = sf.read(os.path.join(song_dir, "vocals.flac"), dtype="float32", always_2d=True)[0]
    a = np.abs(x).max(axis=1)
    defects = []
    if len(a) > 2000 and a.max() > 0:
        head = a[:SR // 100].max()
        if head > 0.5 * a.max() and head > 4 * np.sort(a[SR // 100:])[-100]:
            defects.append("click")
    melody = json.load(open(os.path.join(song_dir, "meta.json"))).get("melody", [])
    if voice_is_lost(x.mean(axis=1), melody, SR):
        defects.append("lost voice")
    return defects


def scan(song_dir):
    try:
        return song_dir, vocal_defects(song_dir)
    except Exception as e:  # an unreadable song is a defect too
        return song_dir, ["unreadable: %r" % e]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("corpora", nargs="+")
    ap.add_argument("--delete", action="store_true", help="delete the spoiled songs (training songs only, see above)")
    ap.add_argument("--include-held-out", action="store_true")
    ap.add_argument("--list", default=None, help="write the spoiled songs' folders here, one per line")
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args()
    songs = sorted(os.path.dirname(p) for c in a.corpora for p in glob.glob(os.path.join(c, "*", "meta.json"))
                   if ".part" not in p)
    with ProcessPoolExecutor(a.workers) as ex:
        found = [(d, f) for d, f in ex.map(scan, songs, chunksize=8) if f]
    for c in a.corpora:
        here = [(d, f) for d, f in found if os.path.dirname(d) == os.path.normpath(c)]
        n = sum(1 for s in songs if os.path.dirname(s) == os.path.normpath(c))
        counts = {}
        for _, f in here:
            for k in f:
                counts[k.split(":")[0]] = counts.get(k.split(":")[0], 0) + 1
        print("%s: %d songs, %d spoiled (%s), %d of them held out" % (
            c, n, len(here), ", ".join("%s %d" % kv for kv in sorted(counts.items())) or "none",
            sum(1 for d, _ in here if is_val(d))))
    chosen = [d for d, _ in found if a.include_held_out or not is_val(d)]
    if a.list:
        with open(a.list, "w") as f:
            f.write("".join(d + "\n" for d in chosen))
    if a.delete:
        for d in chosen:
            shutil.rmtree(d)
        print("deleted", len(chosen), "songs; rerun generate_corpus.py with the same --out/--songs/--seed to make them again")


if __name__ == "__main__":
    main()

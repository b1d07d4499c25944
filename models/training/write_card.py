#!/usr/bin/env python3
"""Write models/MODEL_CARD.md from what was measured: <run>/export_report.json (export.py),
<run>/eval.json (evaluate.py --json), the checkpoint's training state and the corpus on disk.

Usage: write_card.py [--run work/run] [--eval work/run/eval.json] [--out ../MODEL_CARD.md]
"""
import argparse
import glob
import json
import os
import time

import soundfile as sf

from evaluate import BLOCK_BINS
from train import is_val

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCES = ["vocals", "drums", "bass", "other"]


def corpus_stats(corpora):
    """Songs, hours, held-out songs, and counts (dicts) of vocal kinds, accompaniment sources,
    stems per renderer (oscillator synth, lo-fi treated, each soundfont) and Festival voices,
    summed over the corpus folders."""
    songs = sorted(d for c in corpora for d in glob.glob(os.path.join(c, "*")) if os.path.exists(os.path.join(d, "meta.json")))
    st = {"songs": len(songs), "hours": 0.0, "kinds": {}, "srcs": {}, "synth": {}, "lofi": {}, "fonts": {}, "festival": {}}

    def count(table, key):
        st[table][key] = st[table].get(key, 0) + 1

    for d in songs:
        m = json.load(open(os.path.join(d, "meta.json")))
        st["hours"] += m.get("seconds", 0) / 3600
        count("kinds", m.get("vocals", "?"))
        count("srcs", m.get("source", "?"))
        if m.get("vocals") == "speech_festival" and m.get("vocal_voice"):
            count("festival", m["vocal_voice"])
        for s in SOURCES[1:]:
            font = m.get(s + "_font")
            st["synth"][s] = st["synth"].get(s, 0) + (font == "oscillators")
            st["lofi"][s] = st["lofi"].get(s, 0) + bool(m.get(s + "_lofi"))
            if font and font != "oscillators":
                count("fonts", font)
    st["n_val"] = sum(1 for d in songs if is_val(d))
    return st


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", default=os.path.join(HERE, "work", "run"))
    ap.add_argument("--eval", default=None)
    ap.add_argument("--report", default=None, help="default: <run>/export_report.json")
    ap.add_argument("--out", default=os.path.normpath(os.path.join(HERE, "..", "MODEL_CARD.md")))
    ap.add_argument("--corpus", action="append", help="corpus folder the model trained on (repeatable; default work/corpus)")
    ap.add_argument("--notes", default="")
    ap.add_argument("--notes-file", default=None)
    ap.add_argument("--trained-on", default=None, help="where the last run trained (default: the build machine's CPU; unused for averaged weights)")
    a = ap.parse_args()
    report_path = a.report or os.path.join(a.run, "export_report.json")
    eval_path = a.eval or os.path.join(a.run, "eval.json")
    rep = json.load(open(report_path))
    ev = json.load(open(eval_path))
    st = rep.get("train_state", {})
    import torch
    ck = torch.load(rep["checkpoint"], map_location="cpu")
    hist = ck.get("state", {}).get("history", [])
    corpora = [os.path.join(HERE, c) for c in (a.corpus or [os.path.join("work", "corpus")])]
    cs = corpus_stats(corpora)
    synth, lofi = cs["synth"], cs["lofi"]
    man = rep["manifest"]
    L = man["streaming"]["lookahead_frames"]
    hop, nfft, sr = man["hop"], man["n_fft"], man["sample_rate"]
    t = ev["table"]
    lines = []
    w = lines.append
    w("# Demix default model — model card\n")
    w("`models/default.onnx` — %s, a small stateful streaming mask estimator for 4 stems "
      "(vocals, drums, bass, other). Rebuilt from nothing by `models/training/build_model.sh` "
      "(see `models/training/README.md`).\n" % man["name"])
    w("## Numbers at a glance\n")
    w("| | |\n|---|---|")
    w("| file size | %.2f MB (%d bytes) |" % (rep["bytes"] / 1e6, rep["bytes"]))
    w("| parameters | %d (%.2f M) |" % (rep["params"], rep["params"] / 1e6))
    w("| sample rate / STFT | %d Hz, n_fft %d, hop %d, periodic Hann analysis, %d bins, stereo linear magnitude in |" % (sr, nfft, hop, nfft // 2 + 1))
    w("| output | masks [1, 4, 2, 1025, 1], softmax over sources (sum 1; `renormalize_masks` true) |")
    wiener_s = man.get("stereo_wiener", {}).get("time_constant_s")
    if wiener_s:
        em_steps = man["stereo_wiener"].get("em_steps", 0)
        w("| engine post-filter | stereo Wiener filter (manifest `stereo_wiener`, time constant %g s%s): each source's running spatial covariance (pooled over %d-bin blocks) refines its masks%s, no added latency (docs/model-contract.md) |" % (
            wiener_s, ", `em_steps` %d" % em_steps if em_steps else "", BLOCK_BINS,
            ", and %d EM step%s per frame refine each source's power from its estimate" % (em_steps, "s" if em_steps > 1 else "") if em_steps else ""))
    if rep.get("channel_swap_tta"):
        w("| test-time augmentation | the graph runs the network on the frame and on its channel-swapped copy as one batch of two and averages the two views' masks (channels swapped back): twice the network's work per hop, same latency (`export.py --channel-swap-tta`, model.ChannelSwapAverage) |")
    if rep.get("input_level_dbfs") is not None:
        lo, hi = (("%g" % v).replace("-", "−") for v in rep["input_level_dbfs"])
        w("| input level | the graph keeps the magnitudes the network sees within a tracked RMS level of %s..%s dBFS (the training mixtures' range): a gated one-pole mean of each frame's power (time constant %g s) is left alone inside the range and brought to its nearer edge outside it (gain within ±40 dB; two numbers of state); the masks apply to the unscaled mixture, so the output level follows the input. No added latency (`export.py --input-level`, model.InputLevelNormaliser) |" % (
            lo, hi, rep["input_level_time_constant_s"]))
    w("| streaming | stateful, one frame per call, `lookahead_frames` = %d, state `state_in`/`state_out` %s (zero-initialised) |" % (L, man["streaming"]["state"][0]["shape"]))
    w("| latency | STFT %d samples (n_fft − 1) + lookahead %d × %d = %d samples → %d samples = %.1f ms at %d Hz, before the engine's compute slack D·hop and any resampler delay |" % (
        nfft - 1, L, hop, L * hop, nfft - 1 + L * hop, (nfft - 1 + L * hop) / sr * 1000, sr))
    w("| cost per hop (onnxruntime %s, 1 thread, %d calls) | mean %.3f ms, p50 %.3f ms, p99 %.3f ms, min %.3f ms = %.1f %% (mean) / %.1f %% (p99) of the %.2f ms hop |" % (
        rep["ort_version"], rep.get("bench_calls", 3000), rep["cost_ms_mean"], rep["cost_ms_p50"], rep["cost_ms_p99"], rep.get("cost_ms_min", float("nan")), rep["cost_pct_of_hop_mean"], rep["cost_pct_of_hop_p99"], rep["hop_ms"]))
    w("| step graph vs full-sequence PyTorch | max abs mask difference %.2g over %d frames of %s (after the %d-frame delay) |" % (
        rep["step_vs_full_max_abs_diff"], rep["verify_frames"], "seeded noise" if rep["verify_clip"] == "noise" else "`%s`" % os.path.relpath(rep["verify_clip"], HERE), L))
    w("")
    w("Cost was measured by `export.py` on the 2-core build machine, a shared VM whose timings vary from run to run (repeated runs of the same file there differ by up to about 2×); the notes below give back-to-back comparisons.\n")
    w("## Evaluation (dev set, `/work/shared/eval/dev`, 6 clips × 10 s)\n")
    w("Global SDR in dB (per stem over both channels, non-silent references only; mean over clips; overall = mean of the stem means), computed by `models/training/evaluate.py`, which runs the ONNX step graph frame by frame in onnxruntime exactly like the engine (periodic Hann analysis, masks renormalised, dual-window overlap-add, latency trimmed%s).\n" % (
        (", the stereo Wiener post-filter as the manifest asks" + (" with its %d EM steps per frame" % ev["stereo_wiener_em_steps"] if ev.get("stereo_wiener_em_steps") else "")) if ev.get("stereo_wiener_s") else ""))
    w("| | vocals | drums | bass | other | overall |\n|---|---|---|---|---|---|")
    for name in ["model", "mixture/4", "oracle IRM"]:
        if name in t:
            r = t[name]
            label = "this model" if name == "model" else name
            w("| %s | %s | %.2f |" % (label, " | ".join("%.2f" % r[s] for s in SOURCES), r["overall"]))
    if "model" in t and "mixture/4" in t and "oracle IRM" in t:
        m, b, o = t["model"], t["mixture/4"], t["oracle IRM"]
        w("\nVersus the target (beat mixture/4 by ≥ 3 dB on every stem; close ≥ half the gap to the oracle IRM on vocals and drums):\n")
        met = {True: "met", False: "not met"}
        ok = True
        for s in SOURCES:
            over, gap = m[s] - b[s], o[s] - b[s]
            share = 100 * over / gap if gap else float("nan")
            plus3 = over >= 3
            line = "- %s: +3 dB %s (%+.2f dB over mixture/4); " % (s, met[plus3], over)
            ok = ok and plus3
            if s in ("vocals", "drums"):
                half = over >= 0.5 * gap
                line += "half the gap %s (%.1f %% of the mixture/4 → IRM gap)" % (met[half], share)
                ok = ok and half
            else:
                line += "%.1f %% of the gap, not required" % share
            w(line)
        w("\nTarget met: **%s**.\n" % ("yes" if ok else "no"))
    w("The dev set was used for reporting only (no training, no tuning on it). Its clips come from sources reserved for evaluation that the training corpus never touches (tracker modules from Debian games, Scratch vocals, MuseScore General, MBROLA).\n")
    w("## Training data\n")
    w("Fully synthetic, generated by `models/training/generate_corpus.py` from Debian/PyPI packages only. At the time this card was written the corpus (%s) held **%d songs, %.2f hours** (each song 4 stereo stems at 44.1 kHz, 16-bit FLAC); %d songs (index %% 25 == 0) are held out for validation. The corpus kept growing while the model trained, so the model saw the songs present at each cache refresh, not necessarily all of them.\n" % (
        ", ".join("`%s`" % os.path.relpath(c, HERE) for c in corpora), cs["songs"], cs["hours"], cs["n_val"]))
    w("- accompaniment source: %s" % ", ".join("%s %d" % kv for kv in sorted(cs["srcs"].items())))
    w("- vocals: %s" % ", ".join("%s %d" % kv for kv in sorted(cs["kinds"].items())))
    if any(synth.values()):
        w("- stems rendered by the oscillator synth (band-limited saw/pulse, triangle, sine, 2-operator FM or detuned saws with ADSR, vibrato and a low-pass; a synthetic drum kit) instead of FluidSynth: %s; treated by the lo-fi sampler (sample-and-hold, 6–12 bits): %s" % (
            ", ".join("%s %d" % (s, synth[s]) for s in SOURCES[1:]), ", ".join("%s %d" % (s, lofi[s]) for s in SOURCES[1:])))
    w("- `mma` grooves (769 from the standard library; random tempo 60–175 BPM, key, progression) split into drums / bass (Bass/Walk tracks, programs 32–39) / other, or a procedural pretty_midi band; rendered per stem with FluidSynth (stems per soundfont: %s), random program substitutions, FluidSynth reverb/chorus on or off" % ", ".join("%s %d" % kv for kv in sorted(cs["fonts"].items())))
    w("- vocals: procedural formant singer (glottal pulse train, spectral tilt, 5 formants with vowel/consonant trajectories, fricatives, plosives, nasals, breaths, vibrato, jitter, shimmer, glides; random register and formant scale), the Sinsy HTS singer via `pysinsy` re-pitched / formant-warped with `pyworld`, and sung speech: random lyrics spoken by espeak-ng (non-MBROLA voices and variants, ~30 languages) or Festival (songs per voice: %s), analysed with `pyworld`, voiced units time-warped onto the melody's notes and F0 replaced by the melody; harmonies/doubles; `sox` reverb" % ", ".join("%s %d" % kv for kv in sorted(cs["festival"].items())))
    w("- every stem: random low-/high-pass and tilt filters, pan/width, level; at training time random remixing of stems across songs (60 % of examples), per-stem gain −6..+3 dB, channel swap, 10 % silent stems, random mixture level")
    w("- never used (reserved for evaluation): Debian game packages, the scratch package's sounds, Frets on Fire, MuseScore General soundfonts, MBROLA voices\n")
    w("## Model and training\n")
    cfg = ck.get("cfg", {})
    if cfg.get("arch") == "bandsplit":
        w("- architecture (`BandSplitNet` in model.py): log1p(1000·|X|) + learned per-bin normalisation → 45 frequency bands (4 bins wide below ~1 kHz, widening to 64 bins above 16.5 kHz), each encoded by its own linear map of its 2 channels' bins to %d features (RMS norm, GELU) → depthwise-separable conv over frames m−2 … m+%d (residual) → %d causal dilated conv blocks over time (kernel 3, dilations %s; weights shared by all bands; residual) with a linear mixing across the 45 bands after every other block → per-band linear decoders to 4 sources × 2 channels × the band's bins + a per-(source, channel, bin) affine term of the normalised log-magnitude → softmax over sources" % (
            cfg.get("dim", 32), L, len(cfg.get("dilations", (1, 2, 4, 8, 16, 2))), list(cfg.get("dilations", (1, 2, 4, 8, 16, 2)))))
    else:
        w("- architecture (`Net` in model.py): log1p(1000·|X|) + learned per-bin normalisation → linear 2×1025 → %d (LayerNorm, GELU) → depthwise-separable conv over frames m−2 … m+%d (residual) → %d minGRU blocks (input-gated linear recurrence, hidden %d, each with an MLP, residual) → linear head to 4 × 1025 logits shared by both channels + a per-(source, channel, bin) affine term of that channel's normalised log-magnitude → softmax over sources" % (cfg.get("hidden", 256), L, cfg.get("layers", 2), cfg.get("hidden", 256)))
    w("- loss: negative spectral SDR per (example, source) with the mixture phase, eps = 0.025 × mixture energy (`train.py --loss sdr`); masks/loss on every frame, or on every other frame (random phase) for speed (`--frame-stride`; per run in the training history below)")
    w("- optimiser: Adam with warm-up and a cosine decay over each run's training-time budget; gradient clipping 5; batch and crop length per run in the training history below")
    parts = ck.get("state", {}).get("averaged_from")
    if parts:
        w("- weights: the uniform average (`average_checkpoints.py`) of %s; checkpoint `%s`" % (
            " and ".join("`%s` (%d steps, %.1f minutes of training time)" % (p["path"], p["step"], p["train_minutes"]) for p in parts),
            os.path.relpath(rep["checkpoint"], os.path.join(HERE, ".."))))
    else:
        w("- last run: **%d steps, %.1f minutes** of training time on %s, checkpoint `%s`" % (
            st.get("step", 0), st.get("train_seconds", 0) / 60, a.trained_on or "2 shared CPU cores (Debian `python3-torch` %s)" % torch.__version__, os.path.relpath(rep["checkpoint"], os.path.join(HERE, ".."))))
    if hist:
        h = hist[-1]
        w("- last validation (held-out synthetic songs, 16 crops × 5 s, spectral SDR with mixture phase): step %d, loss %.4f, %s" % (
            h["step"], h["val_loss"], ", ".join("%s %.2f dB" % (s, v) for s, v in zip(SOURCES, h["sdr"]))))
    w("")
    w("## Limitations\n")
    w("- Trained briefly on synthetic General-MIDI renderings and synthetic singing only; expect weak separation on real recordings, real voices and genres far from MMA grooves.")
    w("- Masks only (mixture phase); the model cannot undo phase cancellation between sources.")
    w("- Magnitudes are the engine's unnormalised FFT magnitudes of the periodic-Hann frame; the input level range seen in training is a mixture peak of −18..−0.5 dBFS%s." % (
        " (%s..%s dBFS RMS on generated songs), which the input-level keeper holds quieter and louder input to; within the range, the separation still depends on the level" % tuple(("%g" % v).replace("-", "−") for v in rep["input_level_dbfs"])
        if rep.get("input_level_dbfs") is not None else ""))
    if a.notes_file:
        a.notes = open(a.notes_file).read()
    if a.notes:
        w("\n" + a.notes.strip("\n"))
    w("\n_Card written %s by `models/training/write_card.py` from `%s` and `%s`._" % (
        time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), os.path.relpath(report_path, HERE),
        os.path.relpath(eval_path, HERE)))
    with open(a.out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("wrote", a.out)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Regenerates tests/fixtures/open_unmix/: two small randomly initialised Open-Unmix models
exported with export_open_unmix.py, a synthesised clip, and PyTorch's own separation of the
clip by each model, which tests/tests/open_unmix.rs compares with `demix separate`.

    /tmp/umx-venv/bin/python models/export/make_open_unmix_fixture.py

(the venv of docs/bring-your-own-model.md: Debian's python3-torch, onnx, onnxruntime,
openunmix). Deterministic: the same machine writes the same files again. Nothing is downloaded.

Files written (all WAVs are 44.1 kHz stereo float32):

    clip.wav                     2 s of synthesised bass, drums, a voice-like tone and chords
    umx_stateful.onnx            unidirectional LSTM (hidden 8, 3 layers), stateful
    umx_windowed.onnx            bidirectional LSTM (hidden 4, 3 layers), windowed T=16 K=4 L=4
    reference_stateful/<target>.wav, reference_windowed/<target>.wav
                                 PyTorch's separation of clip.wav with each model

The reference separation uses Demix's framing, computed here independently of Demix:
periodic Hann window, n_fft 4096, hop 1024; the clip is preceded by n_fft - hop zeros and
framed with torch.stft(center=False); the upstream OpenUnmix.forward gives each target's
magnitude estimate; ratio masks est_s / sum(est) (the last target where every estimate is 0)
multiply the mixture STFT; the inverse is overlap-add of irfft frames times the synthesis
window w_s[n] = w[n] / sum_k w[n - k hop]^2, trimmed by n_fft - hop samples so that it lines
up with the input. For the windowed model the frames go through the model exactly as the
manifest schedules them: every K frames the last T frames, keeping the K estimates that end
L frames before the window's end (frames before the start are zero).
"""

import os
import struct
import sys
import warnings

import numpy as np
import torch

warnings.filterwarnings("ignore", category=UserWarning)
warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import export_open_unmix as umx  # noqa: E402

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
OUT = os.path.join(ROOT, "tests", "fixtures", "open_unmix")

RATE = 44100
N_FFT = 4096
HOP = 1024
SECONDS = 2.0
TARGETS = umx.TARGETS
WINDOWED = {"context": 16, "step": 4, "lookahead": 4}


def write_wav_f32(path, planar):
    """Writes planar float32 samples [channels, frames] as an IEEE-float WAV file."""
    data = np.ascontiguousarray(np.asarray(planar, dtype="<f4").T).tobytes()
    channels = planar.shape[0]
    fmt = struct.pack("<HHIIHHH", 3, channels, RATE, RATE * 4 * channels, 4 * channels, 32, 0)
    fact = struct.pack("<I", planar.shape[1])
    body = (b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
            + b"fact" + struct.pack("<I", len(fact)) + fact
            + b"data" + struct.pack("<I", len(data)) + data)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(b"RIFF" + struct.pack("<I", len(body)) + body)
    os.replace(tmp, path)


def synthesise_clip():
    """2 s of stereo 'music': a bass line, kick and hi-hat noise bursts, a vibrato voice-like
    tone with harmonics and a two-note chord pad, panned apart; peak 0.5."""
    n = int(RATE * SECONDS)
    t = np.arange(n) / RATE
    rng = np.random.default_rng(2024)
    bass_f = np.where(t < 1.0, 55.0, 73.4)
    bass_phase = 2 * np.pi * np.cumsum(bass_f) / RATE
    bass = sum(np.sin(k * bass_phase) / k for k in range(1, 6)) * 0.5
    drums = np.zeros(n)
    for start in np.arange(0.0, SECONDS, 0.25):
        i = int(start * RATE)
        m = n - i
        tau = np.arange(m) / RATE
        if int(start * 4) % 2 == 0:
            sweep = 2 * np.pi * (50 * tau + 60 * (1 - np.exp(-tau * 30)) / 30)
            drums[i:] += np.sin(sweep) * np.exp(-tau * 12)
        drums[i:] += rng.normal(0, 0.3, m) * np.exp(-tau * 40)
    vib = 440.0 + 6.0 * np.sin(2 * np.pi * 5.0 * t)
    voice_phase = 2 * np.pi * np.cumsum(vib) / RATE
    voice = sum(np.sin(k * voice_phase) * 0.6 ** k for k in range(1, 8))
    voice *= np.clip(np.sin(np.pi * t / SECONDS) * 2, 0, 1)
    chord = sum(np.sin(2 * np.pi * f * t + p) for f, p in [(261.6, 0.3), (329.6, 1.1),
                                                           (392.0, 2.0)]) / 3
    left = 0.9 * bass + 0.7 * drums + 0.5 * voice + 0.8 * chord
    right = 0.9 * bass + 0.5 * drums + 0.6 * voice + 0.3 * chord
    clip = np.stack([left, right])
    fade = int(0.01 * RATE)
    ramp = np.linspace(0.0, 1.0, fade)
    clip[:, :fade] *= ramp
    clip[:, -fade:] *= ramp[::-1]
    return (0.5 * clip / np.abs(clip).max()).astype(np.float32)


def frames_of(clip, tail):
    """Demix's framing of `clip` [C, N] followed by `tail` zeros: complex STFT [C, F, M]."""
    padded = np.concatenate([np.zeros((clip.shape[0], N_FFT - HOP)), clip.astype(np.float64),
                             np.zeros((clip.shape[0], tail))], axis=1)
    window = torch.hann_window(N_FFT, periodic=True, dtype=torch.float64)
    return torch.stft(torch.from_numpy(padded), N_FFT, HOP, window=window, center=False,
                      return_complex=True).numpy()


def overlap_add(spectra, length):
    """Inverse of frames_of: [C, F, M] -> [C, length], synthesis window w / sum w^2."""
    window = torch.hann_window(N_FFT, periodic=True, dtype=torch.float64).numpy()
    power = np.zeros(N_FFT)
    for n in range(N_FFT):
        power[n] = np.sum(window[n % HOP::HOP] ** 2)
    synthesis = window / power
    frames = np.fft.irfft(spectra, n=N_FFT, axis=1)
    channels, _, count = spectra.shape
    out = np.zeros((channels, (count - 1) * HOP + N_FFT))
    for m in range(count):
        out[:, m * HOP:m * HOP + N_FFT] += frames[:, :, m] * synthesis
    start = N_FFT - HOP
    return out[:, start:start + length]


def ratio_masks(estimates):
    """[S, C, F, M] magnitude estimates -> ratio masks; the last source where all are 0."""
    estimates = np.maximum(estimates.astype(np.float64), 0.0)
    total = estimates.sum(axis=0, keepdims=True)
    tiny = np.finfo(np.float32).tiny
    masks = np.where(total > tiny, estimates / np.maximum(total, tiny), 0.0)
    masks[-1] = np.where(total[0] > tiny, masks[-1], 1.0)
    return masks


def run_full(models, magnitude):
    """Upstream OpenUnmix.forward of every target on the whole [1, C, F, M] magnitude."""
    with torch.no_grad():
        x = torch.from_numpy(magnitude.astype(np.float32))
        return np.stack([models[t].eval()(x)[0].numpy() for t in TARGETS])


def run_windowed(models, magnitude, context, step, lookahead):
    """The windowed schedule of docs/model-contract.md applied with upstream forward."""
    _, channels, bins, count = magnitude.shape
    out = np.full((len(TARGETS), channels, bins, count), np.nan, np.float32)
    for pushed in range(step, count + 1, step):
        window = np.zeros((1, channels, bins, context), np.float32)
        for t in range(context):
            frame = pushed - context + t
            if frame >= 0:
                window[..., t] = magnitude[..., frame]
        est = run_full(models, window)
        for j in range(step):
            frame = pushed - lookahead - step + j
            if frame >= 0:
                out[..., frame] = est[..., context - lookahead - step + j]
    return out


def separate(estimates, spectra, length):
    """Stems [S, C, length] from estimates [S, C, F, M] and the mixture STFT [C, F, M]."""
    masks = ratio_masks(estimates)
    return np.stack([overlap_add(masks[s] * spectra, length) for s in range(len(TARGETS))])


def sdr(reference, estimate):
    err = np.sum((reference - estimate) ** 2)
    return 10 * np.log10(np.sum(reference ** 2) / max(err, 1e-30))


def fixture_models(seed, hidden, unidirectional, magnitude):
    """Random Open-Unmix models whose parameters all matter: input statistics from the clip
    (as Open-Unmix training computes them), randomised batch-norm statistics and output
    scaling, so masks vary strongly across bins, frames and targets."""
    max_bin = int(umx.utils.bandwidth_to_max_bin(RATE, N_FFT, 16000))
    models = umx.random_models(TARGETS, N_FFT, 2, hidden, 3, unidirectional, max_bin, seed)
    gen = torch.Generator().manual_seed(seed + 1)
    mean = torch.from_numpy(magnitude[0].mean(axis=(0, 2))[:max_bin]).float()
    std = torch.from_numpy(magnitude[0].std(axis=(0, 2))[:max_bin]).float()
    with torch.no_grad():
        for model in models.values():
            model.input_mean.copy_(-mean)
            model.input_scale.copy_(1.0 / (std + 1e-3))
            for bn in (model.bn1, model.bn2, model.bn3):
                size = bn.num_features
                bn.running_mean.copy_(0.1 * torch.randn(size, generator=gen))
                bn.running_var.copy_(0.5 + 1.5 * torch.rand(size, generator=gen))
                bn.weight.copy_(0.5 + torch.rand(size, generator=gen))
                bn.bias.copy_(0.1 * torch.randn(size, generator=gen))
            # Long LSTM memory with a strong say in the output, so that a streaming run that
            # mishandled the recurrent state would be far from the reference.
            hidden_lstm = model.lstm.hidden_size
            for name, value in model.lstm.named_parameters():
                if name.startswith("bias_ih"):
                    value[hidden_lstm:2 * hidden_lstm] += 4.0
                if name.startswith("weight_hh"):
                    value.mul_(3.0)
            model.fc2.weight[:, model.hidden_size:].mul_(4.0)
            bins = model.nb_output_bins
            model.output_scale.copy_(2.0 + 4.0 * torch.rand(bins, generator=gen))
            model.output_mean.copy_(torch.randn(bins, generator=gen))
    return models


def write_stems(folder, stems):
    os.makedirs(folder, exist_ok=True)
    for name, stem in zip(TARGETS, stems):
        write_wav_f32(os.path.join(folder, f"{name}.wav"), stem.astype(np.float32))


def main():
    os.makedirs(OUT, exist_ok=True)
    clip = synthesise_clip()
    write_wav_f32(os.path.join(OUT, "clip.wav"), clip)
    length = clip.shape[1]
    tail = N_FFT + HOP * (WINDOWED["context"] + 2)
    spectra = frames_of(clip, tail)
    magnitude = np.abs(spectra)[None].astype(np.float32)

    stateful = fixture_models(11, 8, True, magnitude)
    path = os.path.join(OUT, "umx_stateful.onnx")
    meta = umx.export(stateful, path, name="open-unmix-fixture-stateful", rate=RATE, hop=HOP,
                      style="stateful")
    print(f"wrote {os.path.relpath(path, ROOT)} ({os.path.getsize(path)} bytes), "
          f"ONNX Runtime vs PyTorch {umx.check_export(stateful, path, meta):.1e}")
    estimates = run_full(stateful, magnitude)
    stems = separate(estimates, spectra, length)
    write_stems(os.path.join(OUT, "reference_stateful"), stems)
    # How far a separation that lost the LSTM state would be (what the test would catch):
    # the first half and the second half run from zero state each.
    half = magnitude.shape[-1] // 2
    restarted = np.concatenate([run_full(stateful, magnitude[..., :half]),
                                run_full(stateful, magnitude[..., half:])], axis=-1)
    broken = separate(restarted, spectra, length)
    print("stateful: SDR of a state-dropping run vs the reference: "
          + ", ".join(f"{t} {sdr(s, b):.1f} dB" for t, s, b in zip(TARGETS, stems, broken)))

    windowed = fixture_models(23, 4, False, magnitude)
    path = os.path.join(OUT, "umx_windowed.onnx")
    meta = umx.export(windowed, path, name="open-unmix-fixture-windowed", rate=RATE, hop=HOP,
                      style="windowed", context=WINDOWED["context"],
                      step_frames=WINDOWED["step"], lookahead=WINDOWED["lookahead"])
    print(f"wrote {os.path.relpath(path, ROOT)} ({os.path.getsize(path)} bytes), "
          f"ONNX Runtime vs PyTorch {umx.check_export(windowed, path, meta):.1e}")
    estimates = run_windowed(windowed, magnitude, **WINDOWED)
    needed = (length - 1 + N_FFT - HOP) // HOP + 1
    if np.isnan(estimates[..., :needed]).any():
        raise RuntimeError("the tail is too short for the windowed schedule")
    estimates = np.nan_to_num(estimates)
    stems = separate(estimates, spectra, length)
    write_stems(os.path.join(OUT, "reference_windowed"), stems)
    offline = separate(run_full(windowed, magnitude), spectra, length)
    print("windowed: SDR of the whole-clip (offline) bidirectional run vs the windowed "
          "reference: " + ", ".join(f"{t} {sdr(s, o):.1f} dB"
                                    for t, s, o in zip(TARGETS, stems, offline)))
    print("stem energies (dB re clip): " + ", ".join(
        f"{t} {10 * np.log10(np.sum(s ** 2) / np.sum(clip.astype(np.float64) ** 2)):.1f}"
        for t, s in zip(TARGETS, stems)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

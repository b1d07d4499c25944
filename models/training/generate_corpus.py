#!/usr/bin/env python3
"""Synthetic 4-stem corpus generator for the Demix default model.

Every song is written to <out>/<song-id>/{vocals,drums,bass,other}.flac (44.1 kHz, stereo, 16-bit)
plus meta.json.  Sources (all from Debian/PyPI packages; nothing from the evaluation-reserved list):

* accompaniment MIDI: `mma` grooves (random groove/tempo/key/progression) or a procedural
  pretty_midi band (drum patterns, bass lines, pads/comping/arpeggios/lead instruments); tracks are
  split into drums (drum channel), bass (Bass/Walk tracks, programs 32-39) and other (the rest;
  the General-MIDI choir/voice programs 52-54 are played by string ensembles there); 40 % of songs
  add a solo instrument to "other" with its own melody in the singer's range (mod-wheel vibrato,
  scooped onsets);
* rendering: FluidSynth CLI with FluidR3_GM / TimGM6mb / the csound GM bank (and the avldrums kits
  when installed; OPL-3 FM for 20 % of these stems), or for drums a sampler playing the
  hydrogen-drumkits kits,
  random FluidSynth reverb/chorus, random program substitutions; or (20-30 % of stems) an
  oscillator synth (band-limited saw/pulse, triangle, sine, 2-operator FM, detuned saws with ADSR,
  vibrato and low-pass; a synthetic drum kit), sometimes through a lo-fi sampler (sample-and-hold,
  6-12 bit quantisation); or (--tracker-share of songs, none by default) played as a tracker module would play them: each bass
  and other instrument a short 8-bit sample at 8.8-22 kHz (one soundfont note or a single-cycle
  chip waveform), looped and resampled without anti-aliasing, per-tick vibrato / arpeggios / slides
  / volume slides, hard-panned channels, the drums through the lo-fi sampler; --no-synth turns all
  of these off;
* vocals: a procedural formant singing synthesizer (band-limited glottal pulse train, spectral
  tilt, cascaded vowel formants with trajectories, consonant noise bursts/plosives/nasals (noise
  level drawn per singer),
  vibrato, jitter, shimmer, glides, breaths, random singer register/formant scale; the melody is
  centred low (MIDI 50-57) for 40 % of songs, mid for 20 %, high for 40 %), optional
  pysinsy singing (when the `pysinsy` module is importable) varied with pyworld, and "sung speech":
  random lyrics (English words or pseudo-words in ~30 languages) spoken by espeak-ng (non-MBROLA
  voices + variants) or, for half of them, festival (recorded-speech voices of both sexes: English
  kal/ked diphones and cmu_us_slt_arctic_hts, Italian, Finnish, Czech, Russian and Catalan voices,
  whichever are installed), analysed with pyworld,
  syllable-ish voiced units time-warped onto the melody notes, F0 replaced by the melody (glides,
  scoops, vibrato, jitter), optional formant shift, resynthesized at 44.1 kHz.  Lead source mix:
  ~45% sung speech, ~20% pysinsy, rest formant (fallbacks when a synthesizer is missing or, for pysinsy, loses the voice;
  --vocal-kind forces one).  MBROLA voices are never used (reserved for evaluation).  Harmonies /
  doubles (formant or the same sung-speech singer), for half of them a low shelf (a warm, chesty voice),
  reverb with sox;
* mixing: random low-pass / high-pass filters on every stem, pan/width, per-stem loudness.

Usage: generate_corpus.py --out work/corpus --songs 200 [--seed 1] [--worker 0 --workers 1]
                          [--vocal-kind auto|formant|sinsy|speech|speech_espeak|speech_festival] [--no-speech]
                          [--no-synth] [--tracker-share 0.25]
Resumable: songs that already exist are skipped.
"""
import argparse
import glob
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np
import scipy.signal as sps
import soundfile as sf

SR = 44100
# Which version of this script made a song (recorded in its meta.json): the start of its SHA-1.
with open(os.path.abspath(__file__), "rb") as _f:
    GENERATOR_ID = hashlib.sha1(_f.read()).hexdigest()[:12]
SF2_DIR = "/usr/share/sounds/sf2"
# Share of songs whose lead vocal gets a low shelf (+6..+15 dB below 150-300 Hz): a voice whose
# first harmonics carry most of its energy, as a low chest voice or a close microphone gives. The
# formant singer and sung speech alone rarely put more than a third of a voice below 250 Hz.
WARM_VOCAL_PROBABILITY = 0.5
# Share of songs whose "other" stem gets a solo instrument playing its own melody in the singer's range
# (flute, sax, trumpet, violin, synth lead...; mod-wheel vibrato and scooped onsets where the
# soundfont follows them): a monophonic, expressive line that is not a voice. The dev set's tracker
# leads and MMA melodies went up to 46 % into the vocal mask.
OTHER_LEAD_PROBABILITY = 0.4
# General-MIDI sample sets, one drawn per stem: FluidR3 (fluid-soundfont-gm), TimGM6mb and the small
# (4 MB) csound GM bank of csound-soundfont, all 128 programs and the drum notes 35-81.
GM_FONTS = [f for f in ["FluidR3_GM.sf2", "TimGM6mb.sf2", "sf_GMbank.sf2"] if os.path.exists(os.path.join(SF2_DIR, f))]
# OPL-3 FM emulation (Debian opl3-soundfont): a General-MIDI set of 2-/4-operator FM timbres, drums
# included, taken for FM_FONT_PROBABILITY of the stems rendered with a soundfont.
FM_FONT = "OPL-3_FM_128M.sf2" if os.path.exists(os.path.join(SF2_DIR, "OPL-3_FM_128M.sf2")) else None
FM_FONT_PROBABILITY = 0.2
DRUM_FONTS = [f for f in ["Black_Pearl_4_LV2.sf2", "Red_Zeppelin_4_LV2.sf2"]
              if os.path.exists(os.path.join(SF2_DIR, f))]
MMA_LIB = "/usr/share/mma/lib/stdlib"
# Sampled drum kits of Debian's hydrogen-drumkits (acoustic, electronic and break kits with several
# kicks each, many multi-velocity), played by a small sampler for HYDROGEN_PROBABILITY of the drum
# stems not rendered by the oscillator synth: kicks that are long, boomy or tonal belong to drums too.
HYDROGEN_DIR = "/usr/share/hydrogen/data/drumkits"
HYDROGEN_PROBABILITY = 0.35

NOTE_NAMES = ["C", "Db", "D", "Eb", "E", "F", "Gb", "G", "Ab", "A", "Bb", "B"]
MAJOR = [0, 2, 4, 5, 7, 9, 11]
MINOR = [0, 2, 3, 5, 7, 8, 10]
# chord qualities: intervals and MMA suffix
QUAL = {"": [0, 4, 7], "m": [0, 3, 7], "7": [0, 4, 7, 10], "m7": [0, 3, 7, 10],
        "M7": [0, 4, 7, 11], "sus4": [0, 5, 7], "dim": [0, 3, 6], "6": [0, 4, 7, 9],
        "m6": [0, 3, 7, 9], "9": [0, 4, 7, 10, 14]}
MAJ_PROGS = [[1, 5, 6, 4], [1, 6, 4, 5], [2, 5, 1, 1], [1, 4, 5, 4], [6, 4, 1, 5], [1, 4, 1, 5],
             [1, 1, 4, 4, 5, 4, 1, 5], [1, 3, 4, 5], [4, 5, 3, 6], [1, 5, 4, 4], [1, 2, 4, 5]]
MIN_PROGS = [[1, 6, 3, 7], [1, 4, 5, 1], [1, 7, 6, 7], [1, 4, 7, 3], [1, 6, 4, 5], [1, 1, 4, 5],
             [6, 7, 1, 1], [1, 3, 7, 4]]


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, flush=True)


# ----------------------------------------------------------------------------- harmony / chart
def make_chart(rng):
    minor = rng.random() < 0.4
    key = rng.randrange(12)
    scale = MINOR if minor else MAJOR
    tempo = int(rng.choice([rng.uniform(60, 100), rng.uniform(90, 140), rng.uniform(120, 175)]))
    if rng.random() < 0.75:
        prog = rng.choice(MIN_PROGS if minor else MAJ_PROGS)
    else:
        prog = [1] + [rng.randrange(1, 8) for _ in range(rng.choice([3, 5, 7]))]
    chords = []
    for deg in prog:
        root = (key + scale[deg - 1]) % 12
        third = (scale[(deg + 1) % 7] - scale[deg - 1]) % 12
        fifth = (scale[(deg + 3) % 7] - scale[deg - 1]) % 12
        q = "m" if third == 3 else ""
        if fifth == 6:
            q = "dim"
        r = rng.random()
        if q != "dim" and r < 0.25:
            q = {"": rng.choice(["7", "M7", "6", "sus4", "9"]), "m": rng.choice(["m7", "m6"])}[q]
        chords.append((root, q))
    return {"key": key, "minor": minor, "scale": scale, "tempo": tempo, "chords": chords}


def chord_name(c):
    return NOTE_NAMES[c[0]] + c[1]


def chord_pcs(c):
    return [(c[0] + i) % 12 for i in QUAL[c[1]]]


# ----------------------------------------------------------------------------- MIDI helpers
def split_mma_midi(path, rng, out_paths, avl_drums):
    """Split an MMA midi into drums/bass/other midi files (mido)."""
    import mido
    m = mido.MidiFile(path)
    cls = []
    for t in m.tracks:
        chans, progs = set(), set()
        for msg in t:
            if msg.type == "note_on":
                chans.add(msg.channel)
            if msg.type == "program_change":
                progs.add(msg.program)
        name = (t.name or "").lower()
        if not chans:
            cls.append(None)
        elif 9 in chans or name.startswith("drum"):
            cls.append("drums")
        elif name.startswith("bass") or name.startswith("walk") or (progs and all(32 <= p <= 39 for p in progs)):
            cls.append("bass")
        else:
            cls.append("other")
    # random program substitution for variety
    sub = {}
    for stem in ("bass", "other"):
        if rng.random() < 0.4:
            sub[stem] = True
    has = {}
    for stem in ("drums", "bass", "other"):
        nm = mido.MidiFile(ticks_per_beat=m.ticks_per_beat, type=1)
        n_notes = 0
        for t, c in zip(m.tracks, cls):
            if c is None:
                nm.tracks.append(t)
                continue
            nt = mido.MidiTrack()
            keep = c == stem
            acc = 0
            newprog = None
            if keep and stem in sub:
                newprog = rng.randrange(32, 40) if stem == "bass" else rng.choice(OTHER_PROGRAMS)
            voice_sub = rng.randrange(48, 52)
            for msg in t:
                acc += msg.time
                if msg.is_meta:
                    nt.append(msg.copy(time=acc)); acc = 0
                    continue
                if not keep and msg.type in ("note_on", "note_off"):
                    continue
                if keep and stem == "drums" and avl_drums and hasattr(msg, "channel") and msg.channel == 9:
                    msg = msg.copy(channel=0)
                    if msg.type == "program_change":
                        msg = msg.copy(program=0)
                if keep and newprog is not None and msg.type == "program_change":
                    msg = msg.copy(program=newprog)
                elif keep and stem == "other" and msg.type == "program_change" and msg.program in VOICE_PROGRAMS:
                    msg = msg.copy(program=voice_sub)
                if msg.type == "note_on" and keep:
                    n_notes += 1
                nt.append(msg.copy(time=acc)); acc = 0
            if keep and stem == "drums" and avl_drums:
                nt.insert(0, mido.Message("program_change", channel=0, program=0, time=0))
            nm.tracks.append(nt)
        nm.save(out_paths[stem])
        has[stem] = n_notes > 0
    return has


# General-MIDI Choir Aahs, Voice Oohs and Synth Voice: sung vowels, which multitrack datasets count as
# (backing) vocals. They are never rendered into "other", where they would teach that a sustained
# vowel is not a voice: an MMA track that asks for one plays a string ensemble (48-51) instead.
VOICE_PROGRAMS = (52, 53, 54)
OTHER_PROGRAMS = (list(range(0, 8)) + list(range(8, 16)) + list(range(16, 24)) + list(range(24, 32))
                  + list(range(40, 52)) + [55] + list(range(56, 72)) + list(range(72, 80))
                  + list(range(80, 96)) + list(range(104, 112)))
LEAD_PROGRAMS = [40, 41, 42, 56, 57, 64, 65, 66, 68, 69, 71, 73, 74, 75, 79, 80, 81, 82, 83, 84, 85, 87,
                 22, 16, 17, 18, 19, 26, 27, 29, 30, 11, 12, 13]


def add_other_lead(path, chart, rng, bar, beats, nbars, t_offset):
    """Append a solo melody track (a LEAD_PROGRAMS instrument on a free channel) to the "other"
    MIDI file at path, in place: its own melody over the chord chart, centred in the singer's range,
    with mod-wheel vibrato that sets in after a note's onset and scooped onsets (pitch bend) on some
    notes. Returns the program."""
    import mido
    m = mido.MidiFile(path)
    used = {msg.channel for t in m.tracks for msg in t if hasattr(msg, "channel")}
    free = [c for c in range(16) if c != 9 and c not in used]
    if not free:
        return None
    ch, prog = free[0], rng.choice(LEAD_PROGRAMS)
    tempo_us = mido.bpm2tempo(chart["tempo"])
    vibrato = rng.random() < 0.6
    depth = rng.randint(40, 110)
    events = [(0.0, mido.Message("program_change", channel=ch, program=prog))]
    center = rng.randint(55, 79)
    for p, t0, t1 in melody_notes(chart, rng, bar, beats, nbars, center, dens=rng.uniform(0.3, 0.9), t_offset=t_offset):
        if rng.random() < 0.25:  # scoop up into the note
            for k, bend in enumerate((-1800, -1000, -400, 0)):
                events.append((t0 + k * 0.025, mido.Message("pitchwheel", channel=ch, pitch=bend)))
        if vibrato:
            events.append((t0, mido.Message("control_change", channel=ch, control=1, value=0)))
            if t1 - t0 > 0.35:
                events.append((t0 + 0.25, mido.Message("control_change", channel=ch, control=1, value=depth)))
        velocity = int(np.clip(rng.gauss(95, 12), 40, 127))
        events.append((t0, mido.Message("note_on", channel=ch, note=p, velocity=velocity)))
        events.append((t1, mido.Message("note_off", channel=ch, note=p, velocity=0)))
    events.sort(key=lambda e: (e[0], e[1].type != "note_off"))
    track = mido.MidiTrack()
    track.append(mido.MetaMessage("track_name", name="lead", time=0))
    tick = 0
    for t, msg in events:
        at = int(round(mido.second2tick(t, m.ticks_per_beat, tempo_us)))
        track.append(msg.copy(time=max(0, at - tick)))
        tick = max(tick, at)
    m.tracks.append(track)
    m.save(path)
    return prog


def render_midi(mid, wav, font, rng):
    args = ["fluidsynth", "-ni", "-q", "-r", str(SR), "-g", "%.2f" % rng.uniform(0.3, 0.8),
            "-T", "wav", "-O", "s16", "-F", wav]
    if rng.random() < 0.4:
        args += ["-R", "0"]
    else:
        args += ["-o", "synth.reverb.room-size=%.2f" % rng.uniform(0.1, 0.9),
                 "-o", "synth.reverb.level=%.2f" % rng.uniform(0.2, 0.9)]
    if rng.random() < 0.5:
        args += ["-C", "0"]
    args += [font, mid]
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
    x, sr = sf.read(wav, dtype="float32", always_2d=True)
    assert sr == SR
    return x


def mma_song(chart, rng, tmp):
    grooves = GROOVES
    for _ in range(8):
        groove = rng.choice(grooves)
        bars = max(6, int(round(rng.uniform(16, 26) * chart["tempo"] / 240)))
        chords = chart["chords"]
        # MMA randomises velocities, timing and skipped notes; seeded, a song can be made again
        lines = ["RndSeed %d" % rng.randrange(1 << 30), "Tempo %d" % chart["tempo"], "Groove %s" % groove]
        if rng.random() < 0.3:
            lines.append("Transpose %d" % rng.choice([-12, 0, 0, 12]))
        for b in range(bars):
            c = chords[b % len(chords)]
            lines.append("%d %s" % (b + 1, chord_name(c)))
        with open(os.path.join(tmp, "s.mma"), "w") as f:
            f.write("\n".join(lines) + "\n")
        r = subprocess.run(["mma", "-f", os.path.join(tmp, "s.mid"), os.path.join(tmp, "s.mma")],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
        if r.returncode == 0 and os.path.exists(os.path.join(tmp, "s.mid")):
            return groove, bars, os.path.join(tmp, "s.mid")
    raise RuntimeError("mma failed")


def procedural_band(chart, rng, tmp, avl_drums):
    """pretty_midi band: returns per-stem midi paths, bar length (s), n bars, timesig."""
    import pretty_midi as pm
    tempo = chart["tempo"]
    beats = 3 if rng.random() < 0.15 else 4
    beat = 60.0 / tempo
    bar = beats * beat
    nbars = max(6, int(round(rng.uniform(16, 26) / bar)))
    chords = chart["chords"]
    swing = rng.random() < 0.25
    hum = rng.uniform(0.0, 0.015)

    def t16(b, k):  # time of 16th k within bar b
        t = b * bar + k * beat / 4
        if swing and k % 2 == 1:
            t += beat / 4 * 0.33
        return t + rng.gauss(0, hum)

    mids = {}
    # ---- drums
    drum = pm.Instrument(program=0, is_drum=not avl_drums)
    style = rng.choice(["rock", "disco", "half", "break", "sparse", "busy"])
    n16 = beats * 4
    kick_p = np.zeros(n16); snare_p = np.zeros(n16); hat_p = np.zeros(n16)
    if style == "rock":
        kick_p[[0, 8 % n16]] = 1; kick_p[[6 % n16, 10 % n16]] = 0.3; snare_p[[4, 12 % n16]] = 1; hat_p[::2] = 1
    elif style == "disco":
        kick_p[::4] = 1; snare_p[[4, 12 % n16]] = 1; hat_p[2::4] = 1; hat_p[::2] = np.maximum(hat_p[::2], .6)
    elif style == "half":
        kick_p[0] = 1; kick_p[[3, 10 % n16]] = 0.4; snare_p[8 % n16] = 1; hat_p[::2] = 1
    elif style == "break":
        kick_p[[0, 10 % n16]] = 1; kick_p[[3, 7]] = 0.4; snare_p[[4, 12 % n16]] = 1; snare_p[[9 % n16, 15 % n16]] = .3
        hat_p[:] = .8
    elif style == "sparse":
        kick_p[0] = 1; snare_p[8 % n16] = .8; hat_p[::4] = .7
    else:
        kick_p[:] = .25; kick_p[0] = 1; snare_p[[4, 12 % n16]] = 1; snare_p[1::2] = .15; hat_p[:] = 1
    hat_note = rng.choice([42, 42, 44, 46, 51, 53, 70, 69])
    kick_note = rng.choice([35, 36]); snare_note = rng.choice([38, 38, 40, 37, 39])
    pattern = [(kick_note, kick_p), (snare_note, snare_p), (hat_note, hat_p)]
    if rng.random() < 0.3:
        extra = np.zeros(n16); extra[rng.randrange(n16)] = 1; extra[rng.randrange(n16)] = .5
        pattern.append((rng.choice([54, 56, 60, 61, 62, 63, 64, 75, 76, 39]), extra))
    fixed = [[k for k in range(n16) if rng.random() < p[k]] for _, p in pattern]
    for b in range(nbars):
        for (note, p), fx in zip(pattern, fixed):
            hits = fx if rng.random() < 0.8 else [k for k in range(n16) if rng.random() < p[k]]
            for k in hits:
                t = max(0.0, t16(b, k)); v = int(np.clip(rng.gauss(95 if k % 4 == 0 else 75, 12), 30, 127))
                drum.notes.append(pm.Note(v, note, t, t + 0.1))
        if b % 4 == 0 and rng.random() < 0.6:
            drum.notes.append(pm.Note(110, rng.choice([49, 57]), b * bar, b * bar + 1))
        if b % 4 == 3 and rng.random() < 0.4:
            for k in range(n16 // 2, n16):
                if rng.random() < 0.6:
                    t = t16(b, k)
                    drum.notes.append(pm.Note(rng.randint(70, 115), rng.choice([41, 43, 45, 47, 48, 50, 38]), t, t + .1))
    # ---- bass
    bass = pm.Instrument(program=rng.randrange(32, 40))
    bstyle = rng.choice(["whole", "eighth", "rootfifth", "sync", "arp", "octave", "walk"])
    low = rng.choice([28, 31, 33, 36])
    for b in range(nbars):
        c = chords[b % len(chords)]
        root = low + (c[0] - low) % 12
        pcs = chord_pcs(c)
        if bstyle == "whole":
            evs = [(0, n16, root)]
        elif bstyle == "eighth":
            evs = [(k, 2, root) for k in range(0, n16, 2)]
        elif bstyle == "rootfifth":
            evs = [(k, 4, root if (k // 4) % 2 == 0 else root + 7) for k in range(0, n16, 4)]
        elif bstyle == "sync":
            evs = [(0, 3, root), (3, 3, root), (6, 2, root + 12 if rng.random() < .3 else root), (10, 4, root + 7)]
            evs = [e for e in evs if e[0] < n16]
        elif bstyle == "arp":
            evs = [(k, 2, root + ((pcs[(k // 2) % len(pcs)] - c[0]) % 12)) for k in range(0, n16, 2)]
        elif bstyle == "octave":
            evs = [(k, 2, root + 12 * ((k // 2) % 2)) for k in range(0, n16, 2)]
        else:
            sc = chart["scale"]
            evs = [(k, 4, root + ((sc[rng.randrange(7)] + chart["key"] - c[0]) % 12 if k else 0)) for k in range(0, n16, 4)]
        for k, d, n in evs:
            t = max(0.0, t16(b, k))
            bass.notes.append(pm.Note(int(np.clip(rng.gauss(95, 12), 40, 127)), int(n), t,
                                      t + d * beat / 4 * rng.uniform(0.6, 1.0)))
    # ---- other: 1..3 parts
    others = []
    for _ in range(rng.choice([1, 2, 2, 3])):
        kind = rng.choice(["pad", "comp", "arp", "strum", "lead", "stabs"])
        if kind == "pad":
            prog = rng.choice([48, 49, 50, 51, 88, 89, 90, 91, 92, 94, 95, 16, 17, 19, 61])
        elif kind in ("comp", "stabs"):
            prog = rng.choice([0, 1, 2, 4, 5, 6, 7, 16, 18, 11, 61, 62, 26, 27, 81])
        elif kind == "arp":
            prog = rng.choice([0, 4, 6, 8, 10, 11, 12, 13, 45, 46, 80, 81, 24, 25, 105, 107, 108])
        elif kind == "strum":
            prog = rng.choice([24, 25, 26, 27, 28, 29, 30, 31, 105])
        else:
            prog = rng.choice(LEAD_PROGRAMS)
        inst = pm.Instrument(program=prog)
        center = rng.choice([52, 55, 60, 64, 67])
        if kind == "lead":
            for (p, t0, t1) in melody_notes(chart, rng, bar, beats, nbars, rng.choice([60, 67, 72]), dens=rng.uniform(.4, .9)):
                inst.notes.append(pm.Note(int(np.clip(rng.gauss(90, 10), 40, 127)), p, t0, t1))
        else:
            for b in range(nbars):
                c = chords[b % len(chords)]
                voicing = sorted(center - 6 + (pc - center + 6) % 12 for pc in chord_pcs(c))
                if kind == "pad":
                    evs = [(0, n16)]
                elif kind == "comp":
                    evs = [(k, 2) for k in range(n16) if rng.random() < (0.5 if k % 2 == 0 else 0.1)]
                elif kind == "stabs":
                    evs = [(k, 1) for k in range(n16) if rng.random() < 0.2]
                elif kind == "strum":
                    evs = [(k, 2) for k in range(0, n16, 2) if rng.random() < 0.7]
                else:
                    evs = [(k, 1) for k in range(n16)]
                for i, (k, d) in enumerate(evs):
                    t = max(0.0, t16(b, k)); dur = d * beat / 4 * rng.uniform(0.7, 1.0)
                    v = int(np.clip(rng.gauss(80, 12), 30, 127))
                    if kind == "arp":
                        p = voicing[(k + b) % len(voicing)] + 12 * ((k // len(voicing)) % 2)
                        inst.notes.append(pm.Note(v, p, t, t + dur))
                    else:
                        for j, p in enumerate(voicing):
                            dt = j * 0.012 if kind == "strum" else 0.0
                            inst.notes.append(pm.Note(v, p, t + dt, t + dur))
        others.append(inst)
    for stem, insts in (("drums", [drum]), ("bass", [bass]), ("other", others)):
        m = pm.PrettyMIDI(initial_tempo=tempo)
        m.instruments.extend(insts)
        path = os.path.join(tmp, stem + ".mid")
        m.write(path)
        mids[stem] = path
    return mids, bar, nbars, beats


def melody_notes(chart, rng, bar, beats, nbars, center, dens=0.7, t_offset=0.0):
    """A singable melody: list of (midi_pitch, t0, t1) following the chord chart."""
    beat = bar / beats
    scale = [(chart["key"] + s) % 12 for s in chart["scale"]]
    chords = chart["chords"]
    notes = []
    pitch = center
    b = 0
    phrase_len = rng.choice([1, 2, 2, 4])
    while b < nbars:
        if rng.random() > dens:  # rest for this phrase
            b += phrase_len
            continue
        t = t_offset + b * bar + rng.choice([0, 0, 0.5, 1]) * beat
        end = t_offset + min(nbars, b + phrase_len) * bar - rng.choice([0.5, 1, 1.5]) * beat
        while t < end - 0.1:
            bi = int((t - t_offset) // bar)
            c = chords[bi % len(chords)]
            pcs = chord_pcs(c)
            strong = abs(((t - t_offset) / beat) - round((t - t_offset) / beat)) < 0.01
            cands = [p for p in range(center - 9, center + 13) if (p % 12) in (pcs if strong or rng.random() < .5 else scale)]
            w = np.array([np.exp(-abs(p - pitch) / 2.5) * np.exp(-abs(p - center) / 8) for p in cands])
            pitch = cands[int(np.searchsorted(np.cumsum(w / w.sum()), rng.random()))]
            d = rng.choice([0.5, 0.5, 1, 1, 1, 1.5, 2, 3]) * beat
            d = min(d, end - t)
            if d < 0.08:
                break
            notes.append((int(pitch), t, t + d * rng.uniform(0.85, 1.0)))
            t += d
        b += phrase_len
    return notes


# ----------------------------------------------------------------------------- formant singer
VOWELS = {  # F1..F5 (Hz), adult male reference
    "a": [730, 1090, 2440, 3400, 4200], "e": [530, 1840, 2480, 3400, 4300], "i": [270, 2290, 3010, 3500, 4500],
    "o": [570, 840, 2410, 3300, 4100], "u": [300, 870, 2240, 3200, 4100], "ae": [660, 1720, 2410, 3400, 4300],
    "@": [500, 1500, 2500, 3400, 4300], "O": [640, 1000, 2500, 3300, 4200], "I": [390, 1990, 2550, 3400, 4300],
    "U": [440, 1020, 2240, 3300, 4100],
}
VOWEL_LIST = list(VOWELS)
# consonants: (type, duration s, noise centre Hz, noise bandwidth Hz, voiced)
CONS = {
    "s": ("fric", 0.10, 7000, 5000, False), "sh": ("fric", 0.10, 3500, 3000, False),
    "f": ("fric", 0.08, 5000, 9000, False), "th": ("fric", 0.07, 6000, 9000, False),
    "h": ("asp", 0.07, 0, 0, False), "z": ("fric", 0.08, 6500, 5000, True), "v": ("fric", 0.06, 4000, 8000, True),
    "p": ("stop", 0.03, 900, 1500, False), "t": ("stop", 0.03, 4500, 4000, False), "k": ("stop", 0.04, 2500, 2500, False),
    "b": ("stop", 0.02, 800, 1500, True), "d": ("stop", 0.02, 4000, 4000, True), "g": ("stop", 0.03, 2300, 2500, True),
    "m": ("nasal", 0.07, 0, 0, True), "n": ("nasal", 0.07, 0, 0, True), "l": ("liquid", 0.06, 0, 0, True),
    "r": ("liquid", 0.06, 0, 0, True), "w": ("glide", 0.06, 0, 0, True), "y": ("glide", 0.05, 0, 0, True),
    "ch": ("fric", 0.09, 3800, 3000, False),
}
CONS_LIST = list(CONS)
LIQUID_F = {"m": [250, 1100, 2200, 3300, 4200], "n": [250, 1500, 2500, 3300, 4200],
            "l": [360, 1300, 2700, 3400, 4300], "r": [420, 1300, 1700, 3300, 4200],
            "w": [300, 700, 2200, 3300, 4200], "y": [260, 2200, 3000, 3500, 4400]}


# Level of the formant singer's fricative and stop noise (log-uniform range). At 1..4 the voice
# keeps 4-8 kHz at about -25..-14 dB of its energy and 8-16 kHz at -31..-19 dB, the range of sung
# voices; the fixed 12 used before put -7 / -11 dB there, brighter than any singer (a third of
# the songs have a formant lead, and most doubles are formant voices).
CONSONANT_NOISE_GAIN = (1.0, 4.0)


def smooth(x, n):
    if n <= 1:
        return x
    k = np.hanning(2 * n + 1); k /= k.sum()
    return np.convolve(np.pad(x, (n, n), mode="edge"), k, mode="valid")


def remove_spikes(x, sr, limit=None, ratio=6.0, margin=0.01):
    """x with every stretch where |x| exceeds `limit` (default: `ratio` times its 99.9th
    percentile) faded out, `margin` seconds on each side."""
    a = np.abs(x)
    if limit is None:
        limit = ratio * np.percentile(a, 99.9)
    bad = a > limit
    if limit <= 0 or not bad.any():
        return x
    w = int(margin * sr)
    near = np.convolve(bad.astype(np.float64), np.ones(2 * w + 1), mode="same") > 0
    fade = np.hanning(w + 1); fade /= fade.sum()
    return x * np.clip(1.0 - np.convolve(near.astype(np.float64), fade, mode="same"), 0.0, 1.0)


def voice_is_lost(y, notes, sr=SR):
    """True when a rendered vocal line (mono) is within 30 dB of its loudest 100 ms for under a
    third of the time its melody (notes of (pitch, start, end) seconds) asks for singing: the voice
    was lost (a synthesizer blow-up left a burst and silence)."""
    sung = sum(max(0.0, t1 - t0) for _, t0, t1 in notes)
    frame = sr // 10
    n = len(y) // frame * frame
    if sung <= 1.0 or not n:
        return False
    level = 10 * np.log10(np.mean(np.reshape(y[:n], (-1, frame)) ** 2, axis=1) + 1e-12)
    return np.sum(level > level.max() - 30) * frame / sr < sung / 3


def synth_voice(notes, dur, rng, singer=None):
    """Render a list of (pitch, t0, t1) notes as sung syllables. Returns mono float32 signal."""
    if singer is None:
        singer = {}
    fs_scale = singer.get("formant_scale", rng.uniform(0.92, 1.25))
    tilt_fc = singer.get("tilt", rng.uniform(120, 600))
    breathy = singer.get("breathy", rng.uniform(0.01, 0.25))
    vib_rate = singer.get("vib_rate", rng.uniform(4.5, 6.8))
    vib_depth = singer.get("vib_depth", rng.uniform(0.1, 0.7))  # semitones
    jitter = singer.get("jitter", rng.uniform(0.02, 0.25))      # semitones
    glide = singer.get("glide", rng.uniform(0.02, 0.12))
    bw_scale = singer.get("bw", rng.uniform(0.7, 1.6))
    consonant_gain = singer.get("consonant_gain", float(np.exp(rng.uniform(*np.log(CONSONANT_NOISE_GAIN)))))
    n = int(dur * SR)
    hop = 256
    nfr = n // hop + 2
    tf = np.arange(nfr) * hop / SR
    # frame-rate control tracks
    f0_st = np.full(nfr, np.nan)    # semitone pitch (midi)
    amp = np.zeros(nfr)
    voiced = np.zeros(nfr)
    formants = np.zeros((nfr, 5))
    formants[:] = np.array(VOWELS["@"])
    noise_amp = np.zeros(nfr); noise_fc = np.full(nfr, 5000.0); noise_bw = np.full(nfr, 4000.0)
    asp = np.zeros(nfr)
    vib_env = np.zeros(nfr)
    prev_end = -1.0
    for i, (p, t0, t1) in enumerate(notes):
        if t0 >= dur:
            break
        t1 = min(t1, dur - 0.02)
        # breath before a phrase
        if t0 - prev_end > 0.35 and rng.random() < 0.6:
            b0, b1 = max(0, t0 - rng.uniform(0.2, 0.4)), t0 - 0.05
            sel = (tf >= b0) & (tf < b1)
            if sel.any():
                env = np.sin(np.linspace(0, np.pi, sel.sum()))
                asp[sel] = np.maximum(asp[sel], env * rng.uniform(0.03, 0.12))
                formants[sel] = np.array(VOWELS[rng.choice(["a", "@", "ae"])])
        cons = rng.choice(CONS_LIST) if rng.random() < 0.75 else None
        vow = rng.choice(VOWEL_LIST)
        coda = rng.choice(["n", "m", "s", "t", "l", "r", "k", "d"]) if rng.random() < 0.25 else None
        a = rng.uniform(0.5, 1.0)
        sel = (tf >= t0) & (tf < t1)
        idx = np.nonzero(sel)[0]
        if len(idx) < 3:
            continue
        # legato pitch with glide from previous note
        f0_st[idx] = p
        voiced[idx] = 1
        att = max(1, int(rng.uniform(0.02, 0.08) * SR / hop))
        rel = max(1, int(rng.uniform(0.03, 0.12) * SR / hop))
        env = np.ones(len(idx))
        env[:att] = np.linspace(0.2, 1, min(att, len(idx)))[:len(env[:att])]
        env[-rel:] *= np.linspace(1, 0.1, len(env[-rel:]))
        env *= np.linspace(1, rng.uniform(0.6, 1.1), len(idx))
        amp[idx] = a * env
        ve = np.clip((tf[idx] - t0 - rng.uniform(0.1, 0.35)) / 0.2, 0, 1)
        vib_env[idx] = ve
        formants[idx] = np.array(VOWELS[vow]) * np.array([rng.uniform(0.95, 1.05) for _ in range(5)])
        # consonant at onset
        if cons is not None:
            typ, cd, fc, bw, cv = CONS[cons]
            cd *= rng.uniform(0.7, 1.4)
            c0 = max(0.0, t0 - cd * 0.6)
            csel = (tf >= c0) & (tf < t0 + cd * 0.4)
            cidx = np.nonzero(csel)[0]
            if len(cidx):
                if typ in ("fric", "stop"):
                    lvl = rng.uniform(0.1, 0.4) if typ == "fric" else rng.uniform(0.2, 0.6)
                    e = np.hanning(len(cidx) + 2)[1:-1] if typ == "fric" else np.exp(-np.arange(len(cidx)) / 2.0)
                    noise_amp[cidx] = np.maximum(noise_amp[cidx], lvl * e)
                    noise_fc[cidx] = fc * rng.uniform(0.85, 1.2); noise_bw[cidx] = bw
                    if not cv:
                        pre = cidx[tf[cidx] < t0]
                        voiced[pre] = 0; amp[pre] = 0
                elif typ == "asp":
                    asp[cidx] = np.maximum(asp[cidx], rng.uniform(0.1, 0.3))
                    pre = cidx[tf[cidx] < t0]; voiced[pre] = 0
                else:
                    pre = cidx[tf[cidx] < t0 + cd * 0.2]
                    formants[pre] = np.array(LIQUID_F[cons])
                    amp[pre] = np.maximum(amp[pre], a * 0.35)
                    voiced[pre] = 1
                    f0_st[pre] = p
        if coda is not None:
            typ, cd, fc, bw, cv = CONS[coda]
            csel = (tf >= t1 - cd) & (tf < t1 + 0.02)
            cidx = np.nonzero(csel)[0]
            if len(cidx):
                if coda in LIQUID_F:
                    formants[cidx] = np.array(LIQUID_F[coda]); amp[cidx] *= 0.5
                else:
                    noise_amp[cidx] = np.maximum(noise_amp[cidx], rng.uniform(0.1, 0.35) * np.hanning(len(cidx) + 2)[1:-1])
                    noise_fc[cidx] = fc; noise_bw[cidx] = bw
        prev_end = t1
    # pitch track: fill gaps by holding, glide between notes
    st = f0_st.copy()
    if np.all(np.isnan(st)):
        return np.zeros(n, np.float32)
    good = ~np.isnan(st)
    st = np.interp(np.arange(nfr), np.nonzero(good)[0], st[good])
    st = smooth(st, max(1, int(glide * SR / hop / 2)))
    # overshoot / scoop at note onsets is partly produced by the smoothing; add vibrato + jitter + drift
    vib = vib_depth * vib_env * np.sin(2 * np.pi * np.cumsum(np.full(nfr, vib_rate) * (1 + 0.05 * np.sin(tf))) * hop / SR)
    jit = smooth(np.random.default_rng(rng.randrange(1 << 30)).normal(0, 1, nfr), 6) * jitter
    drift = smooth(np.random.default_rng(rng.randrange(1 << 30)).normal(0, 1, nfr), 60) * 0.3
    st = st + vib + jit + drift
    f0 = 440.0 * 2 ** ((st - 69) / 12)
    # smooth control tracks
    formants = np.stack([smooth(formants[:, k], 5) for k in range(5)], 1) * fs_scale
    amp = smooth(amp * voiced, 2)
    shimmer = 1 + 0.08 * smooth(np.random.default_rng(rng.randrange(1 << 30)).normal(0, 1, nfr), 3)
    amp = amp * shimmer * (1 + 0.1 * vib / max(vib_depth, 1e-3) * vib_env * 0.3)
    # sample-rate source: band-limited pulse train (Dirichlet kernel)
    ts = np.arange(n) / SR
    f0s = np.interp(ts, tf, f0)
    phase = 2 * np.pi * np.cumsum(f0s) / SR
    fmax = rng.uniform(9000, 16000)
    K = np.maximum(1, np.floor(fmax / f0s))
    half = np.sin(phase / 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        pulse = np.where(np.abs(half) > 1e-6, np.sin((K + 0.5) * phase) / (2 * half) - 0.5, K)
    pulse = pulse / np.sqrt(K)
    amps = np.interp(ts, tf, amp)
    nz = np.random.default_rng(rng.randrange(1 << 30)).normal(0, 1, n)
    # aspiration synchronised with glottal cycle
    gl = 0.5 + 0.5 * np.cos(phase)
    src_v = pulse * amps + breathy * nz * gl * amps * 3
    src_n = nz * np.interp(ts, tf, asp) * 0.8
    # STFT-domain filtering. The sources get nfft zeros on both sides, cut off after the inverse:
    # without them the inverse divides the first and last samples by a window sum near zero, which
    # left a click at t = 0 that the peak normalisation below then turned into the loudest sample.
    nfft = 1024
    edge = nfft
    f, _, Zv = sps.stft(np.pad(src_v, edge), SR, nperseg=nfft, noverlap=nfft - hop, boundary=None, padded=True)
    _, _, Zn = sps.stft(np.pad(src_n, edge), SR, nperseg=nfft, noverlap=nfft - hop, boundary=None, padded=True)
    _, _, Zc = sps.stft(np.pad(nz, edge), SR, nperseg=nfft, noverlap=nfft - hop, boundary=None, padded=True)
    T = Zv.shape[1]
    fr_idx = np.clip(np.arange(T) + (nfft // hop) // 2 - edge // hop, 0, nfr - 1)
    F = formants[fr_idx]  # T x 5
    bws = np.array([80, 90, 120, 150, 200]) * bw_scale
    H = np.ones((len(f), T))
    for k in range(5):
        Fk = F[:, k][None, :]
        bw = bws[k] / 2
        H *= (Fk ** 2 + bw ** 2) / (np.sqrt((f[:, None] - Fk) ** 2 + bw ** 2) * np.sqrt((f[:, None] + Fk) ** 2 + bw ** 2))
    H /= np.sqrt(1 + (f[:, None] / tilt_fc) ** 2)
    H *= np.minimum(1.0, f[:, None] / 80.0)  # remove DC rumble
    Hn = np.exp(-0.5 * ((f[:, None] - noise_fc[fr_idx][None, :]) / (noise_bw[fr_idx][None, :] / 2)) ** 2)
    Hn *= noise_amp[fr_idx][None, :]
    Y = Zv * H + Zn * H * 0.5 + Zc * Hn * consonant_gain
    with warnings.catch_warnings():
        # scipy warns that the window sum near the ends is ~0 ("NOLA"); those samples are cut off
        warnings.filterwarnings("ignore", message="NOLA condition failed")
        _, y = sps.istft(Y, SR, nperseg=nfft, noverlap=nfft - hop, boundary=False)
    y = y[edge:]
    y = np.pad(y, (0, max(0, n - len(y))))[:n]
    y = y / (np.max(np.abs(y)) + 1e-9)
    return y.astype(np.float32)


def sinsy_voice(notes, dur, rng, tmp):
    """Optional pysinsy voice (Japanese HTS singer), varied by pyworld. None if unavailable."""
    try:
        import pysinsy
        import pyworld as pw
    except Exception:
        return None
    if not notes:
        return None
    kana = ["ら", "ら", "な", "ま", "か", "さ", "た", "は", "や", "あ", "い", "う", "え", "お", "の", "る", "み", "こ", "そ", "と"]
    tempo = 120.0
    div = 8  # divisions per quarter -> 1/32 resolution
    q = 60.0 / tempo
    names = ["C", "C", "D", "D", "E", "F", "F", "G", "G", "A", "A", "B"]
    alters = [0, 1, 0, 1, 0, 0, 1, 0, 1, 0, 1, 0]
    events = []  # (start_div, dur_div, pitch or None)
    cur = 0
    for (p, t0, t1) in notes:
        if t0 >= dur:
            break
        s0 = int(round(t0 / q * div)); s1 = int(round(t1 / q * div))
        if s0 < cur:
            s0 = cur
        if s1 <= s0:
            continue
        if s0 > cur:
            events.append((cur, s0 - cur, None))
        events.append((s0, s1 - s0, int(np.clip(p, 55, 79))))
        cur = s1
    meas = 4 * div
    total = (cur // meas + 2) * meas
    events.append((cur, total - cur, None))
    body = []
    for (s0, d, p) in events:
        first = True
        while d > 0:
            room = meas - s0 % meas
            k = min(d, room)
            last = k == d
            if s0 % meas == 0:
                body.append("</measure><measure number=\"%d\">" % (s0 // meas + 1))
            if p is None:
                body.append("<note><rest/><duration>%d</duration></note>" % k)
            else:
                tie = ("" if first else '<tie type="stop"/>') + ("" if last else '<tie type="start"/>')
                tied = ("" if first else '<tied type="stop"/>') + ("" if last else '<tied type="start"/>')
                lyr = "<lyric><text>%s</text></lyric>" % rng.choice(kana) if first else ""
                body.append("<note><pitch><step>%s</step><alter>%d</alter><octave>%d</octave></pitch>"
                            "<duration>%d</duration>%s%s%s</note>" % (names[p % 12], alters[p % 12], p // 12 - 1, k, tie,
                                                                     "<notations>%s</notations>" % tied if tied else "", lyr))
            s0 += k; d -= k; first = False
    body = "".join(body)
    body = body[len("</measure><measure number=\"1\">"):]
    xml = ['<?xml version="1.0" encoding="UTF-8"?>',
           '<score-partwise><part-list><score-part id="P1"><part-name>V</part-name></score-part></part-list>'
           '<part id="P1"><measure number="1"><attributes><divisions>%d</divisions><time><beats>4</beats>'
           '<beat-type>4</beat-type></time></attributes><direction><sound tempo="%d"/></direction>' % (div, tempo),
           body, "</measure></part></score-partwise>"]
    path = os.path.join(tmp, "v.xml")
    with open(path, "w") as f:
        f.write("".join(xml))
    try:
        wav, sr = pysinsy.synthesize(path)
        wav = np.asarray(wav, dtype=np.float64)
    except Exception as e:
        log("sinsy failed", e)
        return None
    # notes were rendered at 120 bpm with quantised times; our note times are already in seconds
    # and quantised to 1/32 at 120 bpm, so the timeline matches.
    # The HTS engine now and then blows up (samples far beyond its 16-bit range, up to 1e9, for up
    # to a few seconds); normalising by that peak left the voice all but silent and the onset
    # alignment below then shifted it by seconds. Such stretches are cut out first.
    wav = remove_spikes(wav, sr, limit=32767.0, margin=0.05)
    wav = remove_spikes(wav, sr)
    if np.abs(wav).max() < 1.0:
        return None
    wav = wav / np.abs(wav).max()
    # pyworld: vibrato, pitch / formant shift
    try:
        f0, tt = pw.dio(wav, sr, frame_period=5.0)
        f0 = pw.stonemask(wav, f0, tt, sr)
        sp = pw.cheaptrick(wav, f0, tt, sr)
        ap = pw.d4c(wav, f0, tt, sr)
        shift = rng.uniform(-7, 5)
        vib = rng.uniform(0.1, 0.6) * np.sin(2 * np.pi * rng.uniform(4.5, 6.5) * tt)
        f0n = f0 * 2 ** ((shift + vib) / 12)
        fw = rng.uniform(0.85, 1.2)
        nb = sp.shape[1]
        src = np.clip(np.arange(nb) / fw, 0, nb - 1)
        sp2 = np.stack([np.interp(src, np.arange(nb), row) for row in sp])
        y = pw.synthesize(f0n, sp2, ap, sr, frame_period=5.0)
    except Exception as e:
        log("pyworld failed", e)
        y = wav
    y = sps.resample_poly(y, SR, int(sr)).astype(np.float32)
    # align the first sung onset with the first note (sinsy may add a leading measure)
    env = np.abs(y)
    on = int(np.argmax(env > 0.05 * env.max()))
    want = int(notes[0][1] * SR)
    if on > want:
        y = y[on - want:]
    else:
        y = np.pad(y, (want - on, 0))
    y = np.pad(y, (0, max(0, int(dur * SR) - len(y))))[:int(dur * SR)]
    y = remove_spikes(y, SR)
    if voice_is_lost(y, [n for n in notes if n[1] < dur]):
        log("sinsy lost the voice; another singer takes the song")
        return None
    return y / (np.abs(y).max() + 1e-9)


# ----------------------------------------------------------------------------- sung speech
# Speech synthesizers (Debian): espeak-ng (many languages / variants) and festival (diphone + HTS
# voices).  MBROLA voices (espeak-ng mb-*, mbrola packages) are reserved for evaluation: never used.
ESPEAK_LANGS = ["en-us", "en-gb", "en-gb-x-rp", "en-gb-scotland", "en-029", "en-us-nyc", "en-gb-x-gbclan",
                "de", "fr-fr", "es", "es-419", "it", "pt", "pt-br", "nl", "sv", "da", "nb", "fi", "pl", "cs",
                "ro", "hu", "id", "sw", "tr", "ca", "la", "eo", "cy", "hr", "sk", "et", "ms"]
ESPEAK_VARIANTS_SKIP = ("whisper", "whisperf", "mb")
# (voice, folder, speaks English): recorded-speech voices (diphone, unit selection, HTS) of several
# languages and both sexes; a non-English voice mostly gets pseudo-words in its own letter-to-sound rules.
FESTIVAL_VOICES = [("kal_diphone", "/usr/share/festival/voices/english/kal_diphone", True),
                   ("ked_diphone", "/usr/share/festival/voices/english/ked_diphone", True),
                   ("cmu_us_slt_arctic_hts", "/usr/share/festival/voices/us/cmu_us_slt_arctic_hts", True),
                   ("pc_diphone", "/usr/share/festival/voices/italian/pc_diphone", False),
                   ("lp_diphone", "/usr/share/festival/voices/italian/lp_diphone", False),
                   ("hy_fi_mv_diphone", "/usr/share/festival/voices/finnish/hy_fi_mv_diphone", False),
                   ("suo_fi_lj_diphone", "/usr/share/festival/voices/finnish/suo_fi_lj_diphone", False),
                   ("msu_ru_nsh_clunits", "/usr/share/festival/voices/russian/msu_ru_nsh_clunits", False),
                   ("czech_machac", "/usr/share/festival/voices/czech/czech_machac", False),
                   ("czech_ph", "/usr/share/festival/voices/czech/czech_ph", False),
                   ("czech_dita", "/usr/share/festival/voices/czech/czech_dita", False),
                   ("upc_ca_ona_hts", "/usr/share/festival/voices/catalan/upc_ca_ona_hts", False)]
FESTIVAL_ENGLISH = {n for n, _, english in FESTIVAL_VOICES if english}
LYRIC_WORDS = (
    "love heart night light day away stay baby fire higher dream believe tonight forever never together "
    "alone home road time mind rain again fall call sky eyes cry fly hold gold soul whole world girl "
    "boy shine sun run free see me you we go know show slow down town around sound find kind blind "
    "feel real dance chance hand stand understand open broken river ocean summer winter morning evening "
    "shadow window yellow silver golden little only lonely everybody somebody nobody tomorrow yesterday "
    "remember surrender wonder thunder under over sweet street feet beat heat moonlight starlight "
    "sunshine paradise take make break wake shake give live leave breathe say way play pray stay "
    "back black crazy lazy maybe promise kiss miss this is the a my your our in on with all oh yeah "
    "hey la na ooh whoa only want need got can't won't don't hold me tell me let go carry me "
    "walking talking dancing running falling calling waiting singing burning turning coming going "
    "beautiful wonderful electric magic diamond paper people seven heaven angel devil desire "
    "station radio telephone highway midnight silence violence memory melody harmony").split()
SYLL_ON = ["", "b", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "z", "j",
           "br", "tr", "st", "pl", "kr", "fl", "sh", "ch", "gr", "sp", "dr", "bl"]
SYLL_V = ["a", "e", "i", "o", "u", "a", "e", "o", "ai", "ou", "ei", "ia", "ue"]
SYLL_CODA = ["", "", "", "", "n", "m", "l", "r", "s", "t", "k", "ns", "nd", "st"]


def count_syll(w):
    v = "aeiouy"
    n, prev = 0, False
    for ch in w.lower():
        isv = ch in v
        if isv and not prev:
            n += 1
        prev = isv
    if w.endswith("e") and n > 1 and not w.endswith("le"):
        n -= 1
    return max(1, n)


def lyric_text(rng, n_syll, english=True):
    """Random lyric-ish text with about n_syll syllables, in short lines (sentences)."""
    lines, cur, total = [], [], 0
    line_len = rng.randint(4, 10)
    while total < n_syll:
        if english or rng.random() < 0.25:
            w = rng.choice(LYRIC_WORDS)
            k = count_syll(w)
        else:
            k = rng.choice([1, 1, 2, 2, 2, 3])
            w = "".join(rng.choice(SYLL_ON) + rng.choice(SYLL_V) + (rng.choice(SYLL_CODA) if rng.random() < .4 else "")
                        for _ in range(k))
        cur.append(w)
        total += k
        if sum(count_syll(x) for x in cur) >= line_len:
            lines.append(cur); cur = []; line_len = rng.randint(4, 10)
    if cur:
        lines.append(cur)
    out = []
    for ln in lines:
        s = " ".join(ln)
        out.append(s[0].upper() + s[1:] + rng.choice([".", ".", ",", "!", "?", ";"]))
    return " ".join(out)


def espeak_variants():
    try:
        r = subprocess.run(["espeak-ng", "--voices=variant"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                           timeout=20, text=True)
        vs = []
        for line in r.stdout.splitlines()[1:]:
            w = line.split()
            if len(w) >= 5:
                v = w[4].split("/")[-1]
                if v and not any(v.lower().startswith(s) for s in ESPEAK_VARIANTS_SKIP):
                    vs.append(v)
        return sorted(set(vs))
    except Exception:
        return []


def speak_espeak(text, rng, tmp, english):
    lang = rng.choice([l for l in ESPEAK_LANGS if l.startswith("en")] if english else ESPEAK_LANGS)
    var = rng.choice(ESPEAK_VARIANTS) if ESPEAK_VARIANTS and rng.random() < 0.85 else None
    voice = lang + ("+" + var if var else "")
    assert "mb-" not in voice and not voice.startswith("mb")
    wav = os.path.join(tmp, "sp.wav")
    args = ["espeak-ng", "-v", voice, "-s", str(rng.randint(110, 200)), "-p", str(rng.randint(25, 75)),
            "-g", str(rng.choice([0, 0, 2, 5])), "-w", wav, text]
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
    x, sr = sf.read(wav, dtype="float64")
    return x, sr, voice


def speak_festival(text, name, rng, tmp):
    txt = os.path.join(tmp, "sp.txt"); wav = os.path.join(tmp, "sp.wav")
    with open(txt, "w") as f:
        f.write(text + "\n")
    args = ["text2wave", "-eval", "(voice_%s)" % name,
            "-eval", "(Parameter.set 'Duration_Stretch %.2f)" % rng.uniform(0.85, 1.4), txt, "-o", wav]
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
    x, sr = sf.read(wav, dtype="float64")
    return x, sr, name


def speech_units(f0, sp, fp):
    """Syllable-ish voiced units (frame ranges) from a pyworld analysis of speech."""
    voiced = f0 > 0
    e = 10 * np.log10(np.sum(sp, axis=1) + 1e-12)
    e = np.convolve(e, np.ones(5) / 5, mode="same")
    mins, _ = sps.find_peaks(-e, prominence=3.0, distance=int(60 / fp))
    cuts = set(int(m) for m in mins)
    units = []
    i, T = 0, len(f0)
    min_len = int(35 / fp)
    while i < T:
        if not voiced[i]:
            i += 1; continue
        j = i
        while j < T and voiced[j]:
            j += 1
        a = i
        for c in range(i + min_len, j - min_len):
            if c in cuts:
                units.append((a, c)); a = c
        if j - a >= min_len:
            units.append((a, j))
        i = j
    return units


def speech_voice(notes, dur, rng, tmp, engine=None, cache=None):
    """'Sung speech': speech from espeak-ng / festival, warped by pyworld onto the melody.

    Speech is cut into syllable-ish voiced units (voicing + energy dips); units are mapped in order to
    notes (several units squeezed into a note, or one unit spread over several notes), each stretched
    to its note span; consonants / unvoiced parts between units keep (about) their natural length,
    placed just before the next note onset (codas after the previous note).  F0 is replaced with the
    melody (glides, scoops, vibrato, jitter); optional formant shift.  Returns (y, kind, voice) with y
    a 44.1 kHz float32 mono signal of length dur, or None.
    """
    try:
        import pyworld as pw
    except Exception:
        return None
    notes = [nt for nt in notes if nt[1] < dur - 0.05]
    if not notes:
        return None
    fp = 5.0
    if cache is not None and "f0" in cache:
        f0s, sp, ap, units, sr, kind, voice = (cache[k] for k in ("f0", "sp", "ap", "units", "sr", "kind", "voice"))
    else:
        if engine is None:
            engine = "festival" if (FESTIVAL_VOICES_OK and rng.random() < 0.5) else "espeak"
        if engine == "espeak" and not HAVE_ESPEAK:
            engine = "festival" if FESTIVAL_VOICES_OK else None
        if engine == "festival" and not FESTIVAL_VOICES_OK:
            engine = "espeak" if HAVE_ESPEAK else None
        if engine is None:
            return None
        festival_voice = rng.choice(FESTIVAL_VOICES_OK) if engine == "festival" else None
        english = (festival_voice in FESTIVAL_ENGLISH) or rng.random() < 0.55
        n_syll = int(len(notes) * rng.uniform(0.6, 1.2)) + 1
        text = lyric_text(rng, n_syll, english)
        try:
            if engine == "espeak":
                x, sr, voice = speak_espeak(text, rng, tmp, english)
            else:
                x, sr, voice = speak_festival(text, festival_voice, rng, tmp)
        except Exception as e:
            log("speech synth failed", engine, repr(e))
            return None
        if x.ndim > 1:
            x = x.mean(1)
        if len(x) < sr * 0.3 or np.abs(x).max() < 1e-4:
            return None
        x = x / np.abs(x).max() * 0.9
        kind = "speech_" + engine
        f0s, tt = pw.dio(x, sr, f0_floor=60.0, f0_ceil=600.0, frame_period=fp)
        f0s = pw.stonemask(x, f0s, tt, sr)
        sp = pw.cheaptrick(x, f0s, tt, sr)
        ap = pw.d4c(x, f0s, tt, sr)
        units = speech_units(f0s, sp, fp)
        if cache is not None:
            cache.update(f0=f0s, sp=sp, ap=ap, units=units, sr=sr, kind=kind, voice=voice)
    if not units:
        return None
    T = int(dur * 1000 / fp) + 1
    fr = lambda t: int(round(t * 1000 / fp))  # noqa: E731
    # ---- group notes / units
    K, M = len(notes), len(units)
    pairs = []  # (note indices, unit indices)
    if M >= K:
        bounds = np.round(np.linspace(0, M, K + 1)).astype(int)
        pairs = [([k], list(range(bounds[k], bounds[k + 1]))) for k in range(K)]
    else:
        bounds = np.round(np.linspace(0, K, M + 1)).astype(int)
        pairs = [(list(range(bounds[j], bounds[j + 1])), [j]) for j in range(M)]
    src = np.full(T, -1.0)  # source frame (float) for every output frame, -1 = silence
    tgt = np.zeros(T)       # target midi pitch (0 = none)
    prev_end, prev_src_end, prev_len = 0, 0, 0
    max_on, max_coda = int(0.14 * 1000 / fp), int(0.09 * 1000 / fp)
    for ni, ui in pairs:
        o0, o1 = fr(notes[ni[0]][1]), min(T, fr(notes[ni[-1]][2]))
        s0, s1 = units[ui[0]][0], units[ui[-1]][1]
        if o1 - o0 < 2:
            continue
        # coda of the previous unit (natural length), then onset consonants right before this note
        gap_src = s0 - prev_src_end
        if prev_end > 0 and gap_src > 0:
            cl = min(max_coda, gap_src // 2, max(0, o0 - prev_end))
            src[prev_end:prev_end + cl] = prev_src_end + np.arange(cl)
        on = min(max_on, gap_src if prev_end > 0 else max_on, s0)
        on = min(on, max(0, o0 - prev_end) + int(0.3 * prev_len), o0)
        if on > 0:
            src[o0 - on:o0] = s0 - on + np.arange(on)
        src[o0:o1] = np.linspace(s0, s1 - 1, o1 - o0)
        for k in ni:
            a, b = fr(notes[k][1]), min(T, fr(notes[k][2]))
            tgt[max(o0, a):b] = notes[k][0]
            if k != ni[-1]:  # legato inside a melisma: hold pitch into the next note
                tgt[b:min(T, fr(notes[k + 1][1]))] = notes[k][0]
        prev_end, prev_src_end, prev_len = o1, s1, o1 - o0
    if prev_end > 0:
        cl = min(max_coda, len(f0s) - prev_src_end, T - prev_end)
        if cl > 0:
            src[prev_end:prev_end + cl] = prev_src_end + np.arange(cl)
    # ---- target F0: glides between notes, scoops, vibrato, jitter, drift
    have = tgt > 0
    if not have.any():
        return None
    idx = np.arange(T)
    tg = np.interp(idx, idx[have], tgt[have])
    glide = rng.uniform(0.02, 0.09)
    tg = smooth(tg, max(1, int(glide * 1000 / fp)))
    t_s = idx * fp / 1000
    vib_rate, vib_depth = rng.uniform(4.5, 6.5), rng.uniform(0.1, 0.6)
    onset = np.zeros(T)  # vibrato fades in inside each note
    for (p, a, b) in notes:
        i0, i1 = fr(a), min(T, fr(b))
        if i1 > i0:
            onset[i0:i1] = np.clip((np.arange(i1 - i0) * fp / 1000 - 0.15) / 0.25, 0, 1)
    vib = vib_depth * onset * np.sin(2 * np.pi * vib_rate * t_s + rng.uniform(0, 6.3))
    nrng = np.random.default_rng(rng.randrange(1 << 30))
    jit = smooth(nrng.normal(0, 1, T), 4) * rng.uniform(0.03, 0.15)
    drift = smooth(nrng.normal(0, 1, T), 80) * rng.uniform(0.0, 0.6)
    scoop = np.zeros(T)
    if rng.random() < 0.6:
        depth = rng.uniform(0.3, 1.5)
        for (p, a, b) in notes:
            i0 = fr(a); n_s = min(int(0.08 * 1000 / fp), max(0, min(T, fr(b)) - i0))
            scoop[i0:i0 + n_s] -= depth * (1 - np.arange(n_s) / max(1, n_s))
    midi = tg + vib + jit + drift + scoop
    f0o = 440.0 * 2 ** ((midi - 69) / 12)
    # ---- spectral envelope / aperiodicity at 44.1 kHz (extrapolate above the speech Nyquist)
    fft_o = 2048
    nb_o = fft_o // 2 + 1
    nb_s = sp.shape[1]
    fw = rng.uniform(0.85, 1.2) if rng.random() < 0.7 else 1.0
    f_o = np.arange(nb_o) * SR / fft_o
    f_src = f_o / fw  # formant shift: envelope feature at f moves to f*fw
    nyq = sr / 2.0
    pos = np.clip(f_src / nyq * (nb_s - 1), 0, nb_s - 1)
    lo = np.floor(pos).astype(int); hi = np.minimum(lo + 1, nb_s - 1); w = pos - lo
    hf_slope = rng.uniform(-24, -9)  # dB / octave above the speech Nyquist
    hf_gain = np.where(f_src > nyq * 0.97, 10 ** (hf_slope / 20 * np.log2(np.maximum(f_src, 1) / (nyq * 0.97))), 1.0)
    valid = src >= 0
    si = np.clip(np.round(np.where(valid, src, 0)).astype(int), 0, len(f0s) - 1)
    spf, apf = sp[si], ap[si]
    sp_o = (spf[:, lo] * (1 - w) + spf[:, hi] * w) * hf_gain[None, :] ** 2
    ap_o = apf[:, lo] * (1 - w) + apf[:, hi] * w
    ap_o[:, f_src > nyq * 0.97] = np.maximum(ap_o[:, f_src > nyq * 0.97], 0.5)
    floor = 1e-12
    sp_o[~valid] = floor
    ap_o[~valid] = 1.0
    # voicing: sung frames voiced; consonant frames keep the speech voicing decision
    vmask = valid & (f0s[si] > 0)
    f0o = np.where(vmask, f0o, 0.0)
    ap_o = np.clip(ap_o, 0.0, 1.0)
    try:
        y = pw.synthesize(np.ascontiguousarray(f0o), np.ascontiguousarray(sp_o), np.ascontiguousarray(ap_o),
                          SR, frame_period=fp)
    except Exception as e:
        log("pyworld speech synth failed", repr(e))
        return None
    y = np.pad(y, (0, max(0, int(dur * SR) - len(y))))[:int(dur * SR)]
    if not np.all(np.isfinite(y)):
        return None
    y = remove_spikes(y, SR)
    pk = np.abs(y).max()
    if pk < 1e-6:
        return None
    return (y / pk).astype(np.float32), kind, voice


# ----------------------------------------------------------------------------- oscillator synth
# An alternative to FluidSynth for drums/bass/other: every instrument of the stem's MIDI gets one
# random oscillator patch (band-limited saw/pulse, triangle, sine, 2-operator FM, detuned saws;
# ADSR, vibrato, a low-pass per note), drums get one synthetic kit (pitch-swept sine kicks and
# toms, noise snares, metallic/noise hats and cymbals).  Synthesizer and chip-style timbres are
# common in real music and absent from General-MIDI soundfonts.
SYNTH_PROBABILITY = {"drums": 0.2, "bass": 0.3, "other": 0.3}
LOFI_PROBABILITY = {"synth": 0.35, "fluidsynth": 0.08, "sampler": 0.08, "tracker": 0.0}


def polyblep(t, dt):
    """Band-limiting correction for a unit downward step of a phase ramp at phase 0."""
    r = np.zeros_like(t)
    a = t < dt
    x = t[a] / dt[a]
    r[a] = x + x - x * x - 1
    b = t > 1 - dt
    x = (t[b] - 1) / dt[b]
    r[b] = x * x + x + x + 1
    return r


def random_patch(rng, stem):
    """One instrument's oscillator settings."""
    pad = stem == "other" and rng.random() < 0.3
    return {"shape": rng.choice(["saw", "pulse", "pulse", "triangle", "sine", "fm", "supersaw"]
                                if stem == "other" else ["saw", "pulse", "triangle", "sine", "fm"]),
            "pw": rng.choice([0.5, 0.25, 0.125, rng.uniform(0.1, 0.5)]),
            "fm_ratio": rng.choice([1, 2, 3, 0.5]), "fm_index": rng.uniform(0.5, 6.0),
            "detune": rng.uniform(0.003, 0.02),
            "attack": rng.uniform(0.1, 0.6) if pad else rng.uniform(0.001, 0.03),
            "decay": rng.uniform(0.05, 0.8), "sustain": rng.uniform(0.2, 1.0),
            "release": rng.uniform(0.2, 0.8) if pad else rng.uniform(0.01, 0.25),
            "vibrato": rng.uniform(0.05, 0.3) if rng.random() < 0.3 else 0.0, "vib_rate": rng.uniform(4, 7),
            "cutoff": rng.uniform(2, 30) if rng.random() < 0.6 else None,
            "octave": 0 if stem != "bass" else rng.choice([0, 0, 12, -12])}


def synth_note(pitch, seconds, velocity, patch, rng):
    """One note as a mono float array (held `seconds`, then the release)."""
    n_on = max(1, int(seconds * SR)); n = n_on + int(patch["release"] * SR)
    t = np.arange(n) / SR
    f0 = 440.0 * 2 ** ((pitch + patch["octave"] - 69) / 12)
    freq = np.full(n, f0)
    if patch["vibrato"]:
        freq *= 2 ** (patch["vibrato"] / 12 * np.sin(2 * np.pi * patch["vib_rate"] * t) * np.clip(t / 0.3, 0, 1))
    dt = np.minimum(freq / SR, 0.45)

    def ramp(f):
        return (rng.random() + np.cumsum(f)) % 1.0

    shape = patch["shape"]
    if shape in ("saw", "supersaw"):
        y = np.zeros(n)
        for d in ((0.0,) if shape == "saw" else (-patch["detune"], 0.0, patch["detune"])):
            ph = ramp(dt * (1 + d))
            y += 2 * ph - 1 - polyblep(ph, dt * (1 + d))
    elif shape == "pulse":
        ph = ramp(dt)
        y = np.where(ph < patch["pw"], 1.0, -1.0) + polyblep(ph, dt) - polyblep((ph - patch["pw"]) % 1.0, dt)
    elif shape == "triangle":
        y = 4 * np.abs(ramp(dt) - 0.5) - 1
    elif shape == "sine":
        y = np.sin(2 * np.pi * ramp(dt))
    else:
        ph = ramp(dt)
        index = patch["fm_index"] * np.exp(-t / max(0.05, patch["decay"] * 2))
        y = np.sin(2 * np.pi * ph + index * np.sin(2 * np.pi * ((ph * patch["fm_ratio"]) % 1.0)))
    a = max(1, int(patch["attack"] * SR)); d = max(1, int(patch["decay"] * SR))
    env = np.full(n, patch["sustain"])
    env[:min(a, n)] = np.linspace(0, 1, a)[:n]
    if a < n:
        k = min(d, n - a)
        env[a:a + k] = patch["sustain"] + (1 - patch["sustain"]) * np.exp(-np.arange(k) / (d / 4))
    held = env[min(n_on, n) - 1]
    env[n_on:] = held * np.exp(-np.arange(n - n_on) / max(1.0, (n - n_on) / 5))
    y = y * env * (velocity / 127.0) ** 1.5
    if patch["cutoff"] is not None:
        fc = min(0.45 * SR, f0 * patch["cutoff"])
        y = sps.lfilter(*sps.butter(2, fc, "low", fs=SR), y)
    return y


def drum_kit(rng):
    """A synthetic kit: one mono sound per drum class, and one per tom note (keyed by the note)."""
    def noise(n):
        return np.random.default_rng(rng.randrange(1 << 30)).normal(0, 1, n)

    def decay(n, tau):
        return np.exp(-np.arange(n) / (tau * SR))

    def swept_sine(f_hi, f_lo, sweep, tau, seconds):
        n = int(seconds * SR); t = np.arange(n) / SR
        f = f_lo + (f_hi - f_lo) * np.exp(-t / sweep)
        return np.sin(2 * np.pi * np.cumsum(f) / SR) * decay(n, tau)

    def band(x, lo, hi):
        return sps.sosfilt(sps.butter(2, [lo, min(hi, 0.45 * SR)], "band", fs=SR, output="sos"), x)

    def high(x, fc):
        return sps.sosfilt(sps.butter(2, fc, "high", fs=SR, output="sos"), x)

    def metallic(seconds, tau):
        n = int(seconds * SR); t = np.arange(n) / SR
        base = rng.uniform(250, 450)
        y = sum(np.sign(np.sin(2 * np.pi * base * r * t)) for r in (1.0, 1.48, 1.65, 2.05, 2.52, 2.88))
        return high(y, 6000) * decay(n, tau)

    kick = swept_sine(rng.uniform(120, 260), rng.uniform(40, 65), rng.uniform(0.01, 0.06), rng.uniform(0.08, 0.4), 0.7)
    kick[:200] += noise(200) * rng.uniform(0, 0.5) * decay(200, 0.001)
    n_sn = int(0.4 * SR); sn_tau = rng.uniform(0.05, 0.2)
    snare = (band(noise(n_sn), rng.uniform(800, 2500), rng.uniform(5000, 12000)) * decay(n_sn, sn_tau)
             + rng.uniform(0.2, 0.8) * swept_sine(rng.uniform(200, 300), rng.uniform(150, 200), 0.02, 0.05, 0.4))
    metal_hats = rng.random() < 0.5

    def hat(seconds, tau_lo, tau_hi):
        if metal_hats:
            return metallic(seconds, rng.uniform(tau_lo, tau_hi))
        n = int(seconds * SR)
        return high(noise(n), rng.uniform(5000, 9000)) * decay(n, rng.uniform(tau_lo, tau_hi))

    closed = hat(0.2, 0.01, 0.04)
    open_ = hat(0.8, 0.1, 0.3)
    n_cy = int(2.0 * SR)
    cymbal = high(noise(n_cy), rng.uniform(3000, 7000)) * decay(n_cy, rng.uniform(0.3, 0.9))
    perc = band(noise(int(0.15 * SR)), 1500, 6000) * decay(int(0.15 * SR), 0.02)
    tom_tau = rng.uniform(0.1, 0.35)
    kit = {"kick": kick, "snare": snare, "closed": closed, "open": open_, "cymbal": cymbal, "perc": perc}
    kit = {k: v / (np.abs(v).max() + 1e-9) for k, v in kit.items()}
    for pitch in TOM_NOTES:
        f = 440.0 * 2 ** ((pitch - 69) / 12)
        kit[pitch] = swept_sine(f * 1.6, f, 0.03, tom_tau, 0.6)
    return kit


TOM_NOTES = (41, 43, 45, 47, 48, 50)


def drum_sound(kit, note):
    """The kit's sound for a General-MIDI drum note: its own tom per tom note, else its class's."""
    if note in kit:
        return kit[note]
    if note in (35, 36):
        return kit["kick"]
    if note in (37, 38, 39, 40):
        return kit["snare"]
    if note in (42, 44, 70, 69, 54):
        return kit["closed"]
    if note == 46:
        return kit["open"]
    if note in (49, 51, 52, 53, 55, 57, 59):
        return kit["cymbal"]
    return kit["perc"]


# Hydrogen instrument names -> drum class, first match wins (lower case).
HYDROGEN_CLASSES = [("kick", ("kick", "bass drum", "bassdrum")), ("stick", ("stick", "rim click")),
                    ("clap", ("clap", "snap")), ("snare", ("snare",)), ("pedal", ("pedal",)),
                    ("open", ("open", "hat op", "hh op", "semi-open", "swish")),
                    ("closed", ("closed", "hat", "hh")), ("tom_low", ("floor", "tom low", "low tom", "tom 2")),
                    ("tom_high", ("tom hi", "high tom", "tom high", "tomhi", "tom 1")), ("tom_mid", ("tom",)),
                    ("crash", ("crash", "splash", "cymbal")), ("ride", ("ride", "bell")),
                    ("perc", ("cowbell", "conga", "bongo", "tambourine", "clave", "woodblock", "maraca", "drum"))]
# General-MIDI drum note -> drum classes to try in order (a kit without the first falls back).
HYDROGEN_NOTES = {35: ("kick",), 36: ("kick",), 37: ("stick", "snare"), 38: ("snare",), 40: ("snare",),
                  39: ("clap", "snare"), 42: ("closed",), 44: ("pedal", "closed"), 46: ("open", "closed"),
                  41: ("tom_low", "tom_mid", "tom_high"), 43: ("tom_low", "tom_mid", "tom_high"),
                  45: ("tom_mid", "tom_low", "tom_high"), 47: ("tom_mid", "tom_high", "tom_low"),
                  48: ("tom_high", "tom_mid", "tom_low"), 50: ("tom_high", "tom_mid", "tom_low"),
                  49: ("crash", "ride", "open"), 52: ("crash", "ride", "open"), 55: ("crash", "ride", "open"),
                  57: ("crash", "ride", "open"), 51: ("ride", "crash", "closed"), 53: ("ride", "crash", "closed"),
                  59: ("ride", "crash", "closed")}


def hydrogen_kits():
    """Drum kits of hydrogen-drumkits that have a kick and a snare: folder paths, sorted."""
    folders = sorted(os.path.dirname(d) for d in glob.glob(os.path.join(HYDROGEN_DIR, "*", "drumkit.xml")))
    return [f for f in folders if {"kick", "snare"} <= set(hydrogen_instruments(f))]


def hydrogen_instruments(folder):
    """A Hydrogen kit's <instrument> elements by drum class (instruments of no class left out)."""
    by_class = {}
    for inst in hydrogen_xml(os.path.join(folder, "drumkit.xml")).iter("instrument"):
        cls = hydrogen_class((inst.findtext("name") or "").lower())
        if cls is not None:
            by_class.setdefault(cls, []).append(inst)
    return by_class


def hydrogen_xml(path):
    """A drumkit.xml's root element with the namespace taken off every tag (newer kits declare one)."""
    import xml.etree.ElementTree as ET
    root = ET.parse(path).getroot()
    for el in root.iter():
        el.tag = el.tag.rsplit("}", 1)[-1]
    return root


def hydrogen_class(name):
    """The drum class (HYDROGEN_CLASSES) of a Hydrogen instrument's lower-case name, or None."""
    for cls, words in HYDROGEN_CLASSES:
        if any(w in name for w in words):
            return cls
    return None


def load_hydrogen_kit(folder, rng):
    """One instrument per drum class of a Hydrogen kit, drawn at random among the kit's instruments of
    that class: {class: [(min velocity, max velocity, stereo samples [n, 2] at 44.1 kHz), ...]}."""
    kit = {}
    for cls, insts in hydrogen_instruments(folder).items():
        inst = rng.choice(insts)
        volume = float(inst.findtext("volume") or 1) * float(inst.findtext("gain") or 1)
        layers = []
        # older kits give one sample per instrument, as a <filename> of the instrument itself
        for layer in list(inst.iter("layer")) or [inst]:
            path = os.path.join(folder, layer.findtext("filename") or "")
            if not os.path.isfile(path):
                continue
            x, sr = sf.read(path, dtype="float32", always_2d=True)
            x = x[:, :2] if x.shape[1] > 1 else np.repeat(x, 2, axis=1)
            if sr != SR:
                x = sps.resample_poly(x, SR, sr, axis=0).astype(np.float32)
            layers.append((float(layer.findtext("min") or 0), float(layer.findtext("max") or 1),
                           x * volume * float(layer.findtext("gain") or 1)))
        if layers:
            kit[cls] = layers
    return kit


def hydrogen_render(mid, rng, tmp):
    """Render a drum stem's MIDI file (General-MIDI drum notes on any channel) with a random
    hydrogen-drumkits kit: stereo float array [n, 2] and the kit's folder name."""
    import pretty_midi as pm
    folder = rng.choice(HYDROGEN_KITS)
    kit = load_hydrogen_kit(folder, rng)
    m = pm.PrettyMIDI(mid)
    out = np.zeros((int((m.get_end_time() + 3.0) * SR) + 1, 2), dtype=np.float32)
    for inst in m.instruments:
        for note in inst.notes:
            cls = next((c for c in HYDROGEN_NOTES.get(note.pitch, ("perc", "closed")) if c in kit), None)
            if cls is None:
                continue
            v = note.velocity / 127.0
            layers = [l for l in kit[cls] if l[0] <= v <= l[1]] or kit[cls]
            y = rng.choice(layers)[2] * v
            add_at(out, y, note.start)
    if rng.random() < 0.3:
        out = sox_reverb(out, rng, tmp)
    return out, os.path.basename(folder)


def add_at(buf, y, start):
    """Add the sound y into buf from start seconds on (along the first axis), cut at buf's end."""
    i = int(start * SR)
    k = min(len(y), len(buf) - i)
    if k > 0:
        buf[i:i + k] += y[:k]


def synth_render(mid, stem, rng, tmp):
    """Render a stem's MIDI file with the oscillator synth: stereo float array [n, 2]."""
    import pretty_midi as pm
    m = pm.PrettyMIDI(mid)
    end = m.get_end_time() + 3.0
    out = np.zeros((int(end * SR) + 1, 2))
    kit = drum_kit(rng) if stem == "drums" else None
    for inst in m.instruments:
        if not inst.notes:
            continue
        track = np.zeros(len(out))
        patch = random_patch(rng, stem) if kit is None else None
        for note in inst.notes:
            if kit is not None:
                y = drum_sound(kit, note.pitch) * (note.velocity / 127.0) ** 1.5
            else:
                y = synth_note(note.pitch, note.end - note.start, note.velocity, patch, rng)
            add_at(track, y, note.start)
        peak = np.abs(track).max()
        if peak > 0:
            out += pan_stereo(track / peak * rng.uniform(0.4, 1.0), rng)
    if rng.random() < 0.3:
        out = sox_reverb(out.astype(np.float32), rng, tmp)
    return out.astype(np.float32)


# Share of songs rendered as a tracker module would play them (drums, bass and other; the vocals stay
# as they are): every instrument a short sample (one note rendered from a training soundfont, or a
# single-cycle chip waveform) stored at a low rate in 8 bits, looped, and played back by resampling,
# so its timbre moves with its pitch; per-tick effects (vibrato, arpeggios, slides, volume slides),
# notes cut hard, channels panned hard left/right with a random stereo separation. The dev set's
# tracker clips put up to 43 % of their "other" energy into the vocal mask, against 14-22 % on the
# songs generated without this.
# Off by default (--tracker-share sets it): run tk22 trained soup14 on, among others, 25 % such songs and
# gained on the dev tracker clips' "other" stem but lost overall (see the model card).
TRACKER_PROBABILITY = 0.0
TRACKER_RATES = (8820, 11025, 14700, 22050)  # 44.1 kHz divided by 5, 4, 3 and 2
CHIP_PROBABILITY = 0.3
TRACKER_DRUM_LOFI_PROBABILITY = 0.8  # a tracker's drums are 8-bit samples too


def tracker_samples(programs, base_pitch, rng, tmp):
    """One dry note per General-MIDI program, rendered by FluidSynth with one training soundfont in a
    single call: a list of mono float arrays (up to 1.2 s each)."""
    import mido
    m = mido.MidiFile(ticks_per_beat=480)
    tr = mido.MidiTrack()
    m.tracks.append(tr)
    tr.append(mido.MetaMessage("set_tempo", tempo=500000, time=0))  # 1 beat = 0.5 s
    for k, prog in enumerate(programs):
        ch = k % 9
        tr.append(mido.Message("program_change", channel=ch, program=prog, time=0 if k == 0 else 240))
        tr.append(mido.Message("note_on", channel=ch, note=base_pitch, velocity=110, time=0))
        tr.append(mido.Message("note_off", channel=ch, note=base_pitch, velocity=0, time=1200))
    mid = os.path.join(tmp, "samples.mid")
    m.save(mid)
    wav = os.path.join(tmp, "samples.wav")
    font = FM_FONT if FM_FONT and rng.random() < FM_FONT_PROBABILITY else rng.choice(GM_FONTS)
    subprocess.run(["fluidsynth", "-ni", "-q", "-r", str(SR), "-g", "0.6", "-R", "0", "-C", "0", "-T", "wav",
                    "-O", "s16", "-F", wav, os.path.join(SF2_DIR, font), mid],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
    x, _ = sf.read(wav, dtype="float32", always_2d=True)
    x = x.mean(1)
    seg = int(1.5 * SR)
    return [x[k * seg:k * seg + int(1.2 * SR)] for k in range(len(programs))]


def tracker_instrument(note_sample, base_pitch, rng):
    """A tracker instrument made from note_sample (mono, 44.1 kHz, at MIDI pitch base_pitch) or, for
    CHIP_PROBABILITY of instruments or a silent render, a single-cycle chip waveform: a dict with the
    8-bit sample at its storage rate, its pitch, and its loop (start, end) in samples or None."""
    rate = rng.choice(TRACKER_RATES)
    y = np.asarray(note_sample, dtype=np.float64)
    peak = np.abs(y).max() if len(y) else 0.0
    if rng.random() < CHIP_PROBABILITY or peak < 1e-4:
        length = rng.choice([16, 32, 32, 64])
        ph = np.arange(length) / length
        kind = rng.choice(["square", "saw", "triangle", "table"])
        if kind == "square":
            y = np.where(ph < rng.choice([0.5, 0.25, 0.125]), 1.0, -1.0)
        elif kind == "saw":
            y = 2 * ph - 1
        elif kind == "triangle":
            y = 4 * np.abs(ph - 0.5) - 1
        else:
            y = np.array([rng.uniform(-1, 1) for _ in range(length)])
        return {"data": np.round(y * 127) / 128, "rate": rate, "pitch": 69 + 12 * np.log2(rate / length / 440.0),
                "loop": (0, length)}
    on = np.flatnonzero(np.abs(y) > 0.02 * peak)
    y = y[on[0]:on[-1] + 1]
    k = SR // rate
    y = sps.resample_poly(y, 1, k) if rng.random() < 0.6 else y[::k]  # sampled with or without a filter
    y = np.round(y / (np.abs(y).max() + 1e-9) * 127) / 128
    loop = None
    if len(y) > rate // 10 and rng.random() < 0.7:  # a sustain loop of whole periods near the end
        period = rate / (440.0 * 2 ** ((base_pitch - 69) / 12))
        span = max(1, int(round(rng.choice([1, 2, 4, 8, 16, 32]) * period)))
        end = int(len(y) * rng.uniform(0.6, 1.0))
        if end - span > 0:
            loop = (end - span, end)
            y = y[:end]
    return {"data": y, "rate": rate, "pitch": float(base_pitch), "loop": loop}


def tracker_note(inst, pitch, seconds, velocity, fx, offsets=(0,), slide_from=None):
    """One note of a tracker instrument, mono: the sample resampled (nearest or linear, no
    anti-aliasing) to `pitch`, with the effects in fx applied per tick; cut after `seconds`."""
    n = max(1, int(seconds * SR))
    t = np.arange(n) / SR
    tick = np.floor(t / fx["tick"])
    semis = np.full(n, float(pitch) - inst["pitch"])
    if len(offsets) > 1:  # arpeggio: the chord's notes in turn, one per tick
        semis += np.asarray(offsets, dtype=np.float64)[tick.astype(np.int64) % len(offsets)]
    if fx["vibrato"]:
        semis += fx["vibrato"] * np.sin(2 * np.pi * fx["vib_rate"] * tick * fx["tick"]) * (t > fx["vib_delay"])
    if slide_from is not None:
        semis += (slide_from - pitch) * np.clip(1 - tick * fx["tick"] / fx["slide"], 0, 1)
    step = inst["rate"] / SR * 2 ** (semis / 12)
    pos = np.cumsum(step) - step[0]
    data = inst["data"]
    if inst["loop"] is None:
        n = int(np.searchsorted(pos, len(data) - 1))
        pos = pos[:n]; tick = tick[:n]
    else:
        a, b = inst["loop"]
        over = pos >= b
        pos[over] = a + (pos[over] - a) % (b - a)
    if fx["linear"]:
        i = np.minimum(pos.astype(np.int64), len(data) - 1)
        frac = pos - i
        y = data[i] * (1 - frac) + data[np.minimum(i + 1, len(data) - 1)] * frac
    else:
        y = data[np.minimum(pos.astype(np.int64), len(data) - 1)]
    vol = (velocity / 127.0) * np.clip(1 - fx["fade"] * tick, 0, 1)
    ramp = min(len(y), 32)  # the few-sample de-click ramp modern players add
    if ramp:
        vol[:ramp] *= np.linspace(0, 1, ramp)
        vol[-ramp:] *= np.linspace(1, 0, ramp)
    return y * vol


def tracker_render(mid, stem, rng, tmp):
    """Render a bass or other stem's MIDI file as a tracker module would play it: stereo [n, 2]."""
    import pretty_midi as pm
    m = pm.PrettyMIDI(mid)
    insts = [i for i in m.instruments if i.notes and not i.is_drum]
    out = np.zeros((int((m.get_end_time() + 1.0) * SR) + 1, 2))
    if not insts:
        return out.astype(np.float32)
    base = 48 if stem == "bass" else 60
    programs = [(i.program if rng.random() < 0.7 else
                 (rng.randrange(32, 40) if stem == "bass" else rng.choice(OTHER_PROGRAMS + LEAD_PROGRAMS)))
                for i in insts]
    renders = tracker_samples(programs, base, rng, tmp)
    tick = 2.5 / rng.choice([125, 125, 110, 140, 150, 100]) * rng.choice([1, 1, 2])
    separation = rng.uniform(0.2, 1.0)
    side = rng.choice([-1, 1])
    for inst, render in zip(insts, renders):
        sample = tracker_instrument(render, base, rng)
        fx = {"tick": tick, "linear": rng.random() < 0.6, "vibrato": rng.uniform(0.1, 0.6) if rng.random() < 0.4 else 0.0,
              "vib_rate": rng.uniform(3.5, 8), "vib_delay": rng.choice([0.0, 0.1, 0.25]),
              "slide": rng.uniform(0.04, 0.25), "fade": rng.choice([0.0, 0.0, rng.uniform(0.005, 0.05)])}
        arpeggio = rng.random() < 0.4
        slides = rng.random() < 0.3
        notes = sorted(inst.notes, key=lambda x: (x.start, x.pitch))
        groups = []
        for note in notes:  # notes that start together: one chord
            if groups and note.start - groups[-1][0].start < 0.01:
                groups[-1].append(note)
            else:
                groups.append([note])
        track = np.zeros(len(out))
        prev = None
        for g in groups:
            if arpeggio and len(g) > 1:
                root = g[0]
                offsets = tuple(sorted({x.pitch - root.pitch for x in g}))[:4]
                y = tracker_note(sample, root.pitch, max(x.end for x in g) - root.start, root.velocity, fx, offsets)
                add_at(track, y, root.start)
                prev = root.pitch
                continue
            for note in g:
                slide_from = prev if slides and len(g) == 1 and prev is not None and abs(prev - note.pitch) <= 12 else None
                add_at(track, tracker_note(sample, note.pitch, note.end - note.start, note.velocity, fx,
                                           slide_from=slide_from), note.start)
                prev = note.pitch
        peak = np.abs(track).max()
        if peak == 0:
            continue
        track = track / peak * rng.uniform(0.4, 1.0)
        side = -side  # channels alternate between the hard left and hard right
        near, far = (1 + separation) / 2, (1 - separation) / 2
        left, right = (near, far) if side < 0 else (far, near)
        out += np.stack([track * left, track * right], 1)
    return out.astype(np.float32)


def lofi(x, rng):
    """Retro sampler character: sample-and-hold to a low rate (no anti-aliasing) and coarse
    quantisation, as in 8-bit samplers and trackers."""
    hold = rng.choice([2, 2, 3, 4, 5, 6])
    y = np.repeat(x[::hold], hold, axis=0)[:len(x)]
    bits = rng.choice([6, 7, 8, 8, 10, 12])
    peak = np.abs(y).max() + 1e-9
    q = 2.0 ** (bits - 1)
    y = np.round(y / peak * q) / q * peak
    if rng.random() < 0.5:
        y = sps.sosfilt(sps.butter(2, SR / hold * 0.45, "low", fs=SR, output="sos"), y, axis=0)
    return y.astype(np.float32)


def sox_reverb(x, rng, tmp):
    """x: [n, 2] -> reverberated stereo via sox."""
    a = os.path.join(tmp, "rv_in.wav"); b = os.path.join(tmp, "rv_out.wav")
    sf.write(a, x, SR, subtype="FLOAT")
    args = ["sox", a, b, "reverb", "%d" % rng.randint(10, 90), "%d" % rng.randint(10, 90), "%d" % rng.randint(20, 100),
            "%d" % rng.randint(30, 100), "%d" % rng.randint(0, 60), "%d" % rng.randint(-8, 0)]
    try:
        subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
        y, _ = sf.read(b, dtype="float32", always_2d=True)
        return y[:len(x)]
    except Exception:
        return x


def random_filter(x, rng, p_lp=0.3, p_hp=0.2):
    if rng.random() < p_lp:
        fc = rng.choice([rng.uniform(2500, 6000), rng.uniform(6000, 16000)])
        sos = sps.butter(rng.choice([2, 4, 6]), fc, "low", fs=SR, output="sos")
        x = sps.sosfilt(sos, x, axis=0)
    if rng.random() < p_hp:
        sos = sps.butter(2, rng.uniform(60, 500), "high", fs=SR, output="sos")
        x = sps.sosfilt(sos, x, axis=0)
    if rng.random() < 0.3:  # peaking-ish tilt via shelving combination
        x = shelf(x, rng.uniform(300, 5000), rng.uniform(-6, 6), "high", order=1)
    return x.astype(np.float32)


def shelf(x, fc, gain_db, btype, order):
    """x changed by about gain_db on one side of fc Hz ("low" or "high", as `btype`) and flat on the
    other: x plus a Butterworth filter of x of the given order."""
    part = sps.sosfilt(sps.butter(order, fc, btype, fs=SR, output="sos"), x, axis=0)
    return (x + (10 ** (gain_db / 20) - 1) * part).astype(np.float32)


def pan_stereo(x, rng, width=None):
    """x [n,2] or [n]; random pan / width."""
    if x.ndim == 1:
        x = np.stack([x, x], 1)
    w = rng.uniform(0.0, 1.3) if width is None else width
    mid = (x[:, 0] + x[:, 1]) / 2; side = (x[:, 0] - x[:, 1]) / 2 * w
    l, r = mid + side, mid - side
    p = rng.uniform(-0.5, 0.5) if rng.random() < 0.5 else 0.0
    gl, gr = np.cos((p + 1) * np.pi / 4) * np.sqrt(2), np.sin((p + 1) * np.pi / 4) * np.sqrt(2)
    return np.stack([l * gl, r * gr], 1).astype(np.float32)


def fit(x, n):
    if x.ndim == 1:
        x = np.stack([x, x], 1)
    if len(x) >= n:
        return x[:n]
    return np.pad(x, ((0, n - len(x)), (0, 0)))


# ----------------------------------------------------------------------------- one song
def make_song(song_dir, seed):
    rng = random.Random(seed)
    tmp = tempfile.mkdtemp(prefix="demixgen_")
    try:
        chart = make_chart(rng)
        avl = bool(DRUM_FONTS) and rng.random() < 0.35
        meta = {"generator": GENERATOR_ID, "seed": seed, "tempo": chart["tempo"], "key": chart["key"], "minor": chart["minor"],
                "chords": [chord_name(c) for c in chart["chords"]]}
        stems = {}
        if rng.random() < 0.6:
            groove, bars, mid = mma_song(chart, rng, tmp)
            paths = {s: os.path.join(tmp, s + ".mid") for s in ("drums", "bass", "other")}
            split_mma_midi(mid, rng, paths, avl)
            import pretty_midi as pm
            pmid = pm.PrettyMIDI(mid)
            downs = pmid.get_downbeats()
            bar = float(np.median(np.diff(downs))) if len(downs) > 1 else 240.0 / chart["tempo"]
            beats = max(2, int(round(bar / (60.0 / chart["tempo"]))))
            nbars = bars
            t_offset = float(downs[0]) if len(downs) else 0.0
            meta.update(source="mma", groove=groove)
        else:
            paths, bar, nbars, beats = procedural_band(chart, rng, tmp, avl)
            t_offset = 0.0
            meta.update(source="procedural")
        if rng.random() < OTHER_LEAD_PROBABILITY:
            lead = add_other_lead(paths["other"], chart, rng, bar, beats, nbars, t_offset)
            if lead is not None:
                meta["other_lead"] = lead
        tracker = SYNTH and TRACKER_PROBABILITY > 0 and rng.random() < TRACKER_PROBABILITY
        if tracker:
            meta["tracker"] = True
        for s in ("drums", "bass", "other"):
            if tracker and s != "drums":
                stems[s] = tracker_render(paths[s], s, rng, tmp)
                meta[s + "_font"] = "tracker"
                renderer = "tracker"
            elif SYNTH and rng.random() < SYNTH_PROBABILITY[s]:
                stems[s] = synth_render(paths[s], s, rng, tmp)
                meta[s + "_font"] = "oscillators"
                renderer = "synth"
            elif s == "drums" and HYDROGEN_KITS and rng.random() < HYDROGEN_PROBABILITY:
                stems[s], kit_name = hydrogen_render(paths[s], rng, tmp)
                meta[s + "_font"] = "hydrogen:" + kit_name
                renderer = "sampler"
            else:
                if s == "drums" and avl:
                    font = os.path.join(SF2_DIR, rng.choice(DRUM_FONTS))
                elif FM_FONT and rng.random() < FM_FONT_PROBABILITY:
                    font = os.path.join(SF2_DIR, FM_FONT)
                else:
                    font = os.path.join(SF2_DIR, rng.choice(GM_FONTS))
                stems[s] = render_midi(paths[s], os.path.join(tmp, s + ".wav"), font, rng)
                meta[s + "_font"] = os.path.basename(font)
                renderer = "fluidsynth"
            if SYNTH and rng.random() < (TRACKER_DRUM_LOFI_PROBABILITY if tracker and s == "drums" else LOFI_PROBABILITY[renderer]):
                stems[s] = lofi(stems[s], rng)
                meta[s + "_lofi"] = True
        dur = nbars * bar + t_offset + 1.0
        n = int(dur * SR)
        # ---- vocals
        register = rng.choice(["low", "low", "mid", "high", "high"])
        center = {"low": rng.randint(50, 57), "mid": rng.randint(57, 63), "high": rng.randint(63, 72)}[register]
        mel = melody_notes(chart, rng, bar, beats, nbars, center, dens=rng.uniform(0.5, 0.95), t_offset=t_offset)
        vox_kind = "formant"
        v = None
        r = rng.random()
        want = VOCAL_KIND
        if want == "auto":
            want = "speech" if r < 0.45 else ("sinsy" if r < 0.65 else "formant")
        speech_cache = {}
        if want.startswith("speech") and (HAVE_ESPEAK or FESTIVAL_VOICES_OK):
            engine = {"speech_espeak": "espeak", "speech_festival": "festival"}.get(want)
            res = speech_voice(mel, dur, rng, tmp, engine=engine, cache=speech_cache)
            if res is not None:
                v, vox_kind, meta["vocal_voice"] = res
        if v is None and want != "formant" and HAVE_SINSY:
            # sinsy timeline is quantised at 120 bpm 1/32 notes: quantise the melody the same way
            qn = 60.0 / 120 / 8
            melq = [(p, round(a / qn) * qn, round(b / qn) * qn) for p, a, b in mel]
            v = sinsy_voice(melq, dur, rng, tmp)
            if v is not None:
                vox_kind = "sinsy"
        if v is None:
            singer = {"formant_scale": {"low": rng.uniform(0.9, 1.05), "mid": rng.uniform(0.95, 1.15),
                                        "high": rng.uniform(1.1, 1.3)}[register]}
            v = synth_voice(mel, dur, rng, singer)
        vox = pan_stereo(v, rng, width=0.0)
        if rng.random() < 0.35:  # harmony / double
            interval = rng.choice([0, 0, 3, 4, -5, 7, 12, -12])
            mel2 = [(p + interval, a + rng.uniform(0, 0.02), b) for p, a, b in mel if rng.random() < 0.85]
            v2 = None
            if vox_kind.startswith("speech") and rng.random() < 0.6:  # same singer, same words
                res = speech_voice(mel2, dur, rng, tmp, cache=speech_cache)
                v2 = res[0] if res is not None else None
            if v2 is None:
                v2 = synth_voice(mel2, dur, rng, None)
            vox = vox + pan_stereo(v2, rng) * rng.uniform(0.2, 0.7)
        if rng.random() < WARM_VOCAL_PROBABILITY:  # a chesty, dark or close-miked voice
            # second order: a first-order shelf tilts the whole voice instead of its first harmonics
            vox = shelf(vox, rng.uniform(150, 300), rng.uniform(6, 15), "low", order=2)
            meta["vocal_warmth"] = True
        if rng.random() < 0.75:
            vox = sox_reverb(fit(vox, n), rng, tmp)
        vox = random_filter(fit(vox, n), rng, p_lp=0.15, p_hp=0.3)
        stems["vocals"] = vox
        meta["vocals"] = vox_kind
        meta["vocal_register"] = register
        meta["melody"] = [[int(p), round(float(a), 3), round(float(b), 3)] for p, a, b in mel]
        # ---- assemble, filter, pan, level
        out = {}
        lvl = {"vocals": rng.uniform(-4, 3), "drums": rng.uniform(-5, 2), "bass": rng.uniform(-6, 1), "other": rng.uniform(-6, 2)}
        for s in ("vocals", "drums", "bass", "other"):
            x = fit(stems[s].astype(np.float32), n)
            if s != "vocals":
                x = random_filter(x, rng, p_lp=0.3 if s == "other" else 0.15, p_hp=0.15)
                if rng.random() < 0.5:
                    x = pan_stereo(x, rng)
            rms = np.sqrt(np.mean(x ** 2)) + 1e-9
            if rms < 1e-5:
                x = np.zeros_like(x)
            else:
                x = x / rms * 10 ** ((-20 + lvl[s]) / 20)
            out[s] = x
        mix = sum(out.values())
        peak = max([np.abs(mix).max()] + [np.abs(x).max() for x in out.values()]) + 1e-9
        g = min(1.0, 0.95 / peak)
        os.makedirs(song_dir + ".part", exist_ok=True)
        for s, x in out.items():
            sf.write(os.path.join(song_dir + ".part", s + ".flac"), np.clip(x * g, -1, 1), SR, subtype="PCM_16")
        meta["seconds"] = n / SR
        with open(os.path.join(song_dir + ".part", "meta.json"), "w") as f:
            json.dump(meta, f)
        if os.path.exists(song_dir):
            shutil.rmtree(song_dir)
        os.rename(song_dir + ".part", song_dir)
        return meta
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load_grooves():
    names = []
    for fn in sorted(os.listdir(MMA_LIB)):
        if not fn.endswith(".mma"):
            continue
        with open(os.path.join(MMA_LIB, fn), errors="ignore") as f:
            for line in f:
                w = line.split()
                if len(w) >= 2 and w[0].lower() == "defgroove":
                    g = w[1]
                    if not any(k in g.lower() for k in ("end", "intro", "fill", "break")):
                        names.append(g)
    return sorted(set(names))


GROOVES = []
HAVE_SINSY = False
HAVE_ESPEAK = False
ESPEAK_VARIANTS = []
FESTIVAL_VOICES_OK = []
VOCAL_KIND = "auto"
SYNTH = True
HYDROGEN_KITS = []


def cpu_seconds():
    import resource
    return sum(resource.getrusage(w).ru_utime + resource.getrusage(w).ru_stime
               for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))


def main():
    global TRACKER_PROBABILITY, GROOVES, HAVE_SINSY, HAVE_ESPEAK, ESPEAK_VARIANTS, FESTIVAL_VOICES_OK, VOCAL_KIND, SYNTH, HYDROGEN_KITS
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "work", "corpus"))
    ap.add_argument("--songs", type=int, default=200)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--worker", type=int, default=0)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--no-sinsy", action="store_true")
    ap.add_argument("--no-speech", action="store_true", help="disable the espeak-ng / festival sung-speech vocals")
    ap.add_argument("--vocal-kind", default="auto",
                    choices=["auto", "formant", "sinsy", "speech", "speech_espeak", "speech_festival"],
                    help="force the lead vocal source (testing); falls back to formant when unavailable")
    ap.add_argument("--no-synth", action="store_true",
                    help="render every accompaniment stem with FluidSynth (no oscillator synth, lo-fi sampler, tracker-style songs or Hydrogen kits)")
    ap.add_argument("--tracker-share", type=float, default=TRACKER_PROBABILITY,
                    help="share of songs whose bass and other are played as a tracker module plays them (run tk22: 0.25)")
    a = ap.parse_args()
    VOCAL_KIND = a.vocal_kind
    TRACKER_PROBABILITY = a.tracker_share
    SYNTH = not a.no_synth
    HYDROGEN_KITS = hydrogen_kits() if SYNTH and os.path.isdir(HYDROGEN_DIR) else []
    if not a.no_speech:
        HAVE_ESPEAK = shutil.which("espeak-ng") is not None
        ESPEAK_VARIANTS = espeak_variants() if HAVE_ESPEAK else []
        if shutil.which("text2wave"):
            FESTIVAL_VOICES_OK = [n for n, d, _ in FESTIVAL_VOICES if os.path.isdir(d)]
    GROOVES = load_grooves()
    try:
        if not a.no_sinsy:
            import pysinsy  # noqa
            HAVE_SINSY = True
    except Exception:
        HAVE_SINSY = False
    os.makedirs(a.out, exist_ok=True)
    log("grooves:", len(GROOVES), "fonts:", GM_FONTS, DRUM_FONTS, FM_FONT, "hydrogen kits:", [os.path.basename(k) for k in HYDROGEN_KITS], "sinsy:", HAVE_SINSY, "espeak:", HAVE_ESPEAK,
        len(ESPEAK_VARIANTS), "variants", "festival:", FESTIVAL_VOICES_OK, "vocal kind:", VOCAL_KIND)
    t0 = time.time(); made = 0
    for i in range(a.songs):
        if i % a.workers != a.worker:
            continue
        sid = "s%d_%05d" % (a.seed, i)
        d = os.path.join(a.out, sid)
        if os.path.exists(os.path.join(d, "meta.json")):
            continue
        try:
            meta = make_song(d, a.seed * 1000003 + i)
            made += 1
            log(sid, meta["source"], meta.get("groove", ""), meta["vocals"], "%.1fs" % meta["seconds"],
                meta.get("vocal_voice", ""), "(%.1f s/song, %.1f s cpu/song)" % (
                    (time.time() - t0) / made, cpu_seconds() / made))
        except Exception as e:  # keep going: variety matters more than any single song
            log(sid, "FAILED", repr(e))
            shutil.rmtree(d + ".part", ignore_errors=True)


if __name__ == "__main__":
    main()

#!/usr/bin/env bash
# Rebuild the Demix default separation model from nothing, in one command:
#   install -> generate corpus (background, keeps growing) -> train (resumable) -> export -> evaluate -> model card
#
# Usage (from anywhere):
#   models/training/build_model.sh                       # full build (~2 h on 2 cores), writes models/default.onnx
#   models/training/build_model.sh --budget-minutes 3 --songs 20     # smoke run (~8 min), writes work/smoke/default.onnx
# Options:
#   --budget-minutes N  training time (the cosine LR schedule spans it)         [default 100]
#   --songs N           number of corpus songs to generate (seed 1, skips existing) [default 1500]
#   --workers N         corpus generator processes                              [default 1]
#   --arch A            network: bandsplit (BandSplitNet) or net (full-spectrum Net)   [default bandsplit]
#   --dim N             bandsplit: features per band (the shipped model was trained at 48, then widened to 56)  [default 48]
#   --lookahead N       frames the model sees ahead, at most 4 (the shipped model: 2)          [default 2]
#   --run NAME          run directory under work/ (checkpoints; resumed if present)  [default run, smoke: smoke]
#   --out PATH          exported ONNX                                           [default models/default.onnx, smoke: work/smoke/default.onnx]
#   --skip-install      do not touch apt/pip
# Idempotent: existing songs are skipped, training resumes from <run>/last.pt, and a finished run
# (budget spent) goes straight to export + evaluation.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
WORK="$HERE/work"
BUDGET=100; SONGS=1500; WORKERS=1; RUN=""; OUT=""; INSTALL=1; ARCH=bandsplit; DIM=48; LOOKAHEAD=2
while [ $# -gt 0 ]; do
  case "$1" in
    --budget-minutes) BUDGET="$2"; shift 2;;
    --songs) SONGS="$2"; shift 2;;
    --workers) WORKERS="$2"; shift 2;;
    --arch) ARCH="$2"; shift 2;;
    --dim) DIM="$2"; shift 2;;
    --lookahead) LOOKAHEAD="$2"; shift 2;;
    --run) RUN="$2"; shift 2;;
    --out) OUT="$2"; shift 2;;
    --skip-install) INSTALL=0; shift;;
    -h|--help) sed -n 2,19p "$0"; exit 0;;
    *) echo "unknown option $1" >&2; exit 2;;
  esac
done
SMOKE=0
if awk "BEGIN{exit !($BUDGET < 15)}"; then SMOKE=1; fi
if [ -z "$RUN" ]; then if [ $SMOKE = 1 ]; then RUN=smoke; else RUN=run; fi; fi
if [ -z "$OUT" ]; then if [ $SMOKE = 1 ]; then OUT="$WORK/$RUN/default.onnx"; else OUT="$(cd "$HERE/.." && pwd)/default.onnx"; fi; fi
CORPUS="$WORK/corpus"
mkdir -p "$WORK/logs" "$WORK/$RUN" "$CORPUS"
PY="$WORK/venv/bin/python"

# ---------------------------------------------------------------- 1. install
if [ $INSTALL = 1 ]; then
  DEBS="python3-torch python3-numpy python3-scipy python3-soundfile python3-venv fluidsynth mma fluid-soundfont-gm timgm6mb-soundfont opl3-soundfont csound-soundfont sox avldrums.lv2-soundfont hydrogen-drumkits espeak-ng festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts festvox-itapc16k festvox-italp16k festvox-suopuhe-mv festvox-suopuhe-lj festvox-ru festvox-czech-machac festvox-czech-ph festvox-czech-dita festvox-ca-ona-hts"
  missing=""
  for p in $DEBS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
  if [ -n "$missing" ]; then
    if [ "$(id -u)" = 0 ]; then
      apt-get install -y $missing || { apt-get update && apt-get install -y $missing; }
    else
      echo "missing Debian packages (run as root or install them):$missing" >&2; exit 1
    fi
  fi
  if [ ! -x "$PY" ]; then /usr/bin/python3 -m venv --system-site-packages "$WORK/venv"; fi
  if ! "$PY" -c "import onnx, onnxruntime, pretty_midi, mido, pyworld" 2>/dev/null; then
    "$WORK/venv/bin/pip" install "numpy<2" "onnx==1.16.*" "onnxruntime==1.19.*" pretty_midi mido pyworld
  fi
  # optional second singer (builds from source, ~80 s); the corpus works without it
  "$PY" -c "import pysinsy" 2>/dev/null || "$WORK/venv/bin/pip" install pysinsy || echo "pysinsy unavailable: formant singer only"
fi

# ---------------------------------------------------------------- 2. corpus (background, grows while training)
GEN_PIDS=""
for w in $(seq 0 $((WORKERS - 1))); do
  nice -n 15 "$PY" "$HERE/generate_corpus.py" --out "$CORPUS" --songs "$SONGS" --seed 1 --worker "$w" --workers "$WORKERS" \
    >> "$WORK/logs/gen_build_w$w.log" 2>&1 &
  GEN_PIDS="$GEN_PIDS $!"
done
trap 'for p in $GEN_PIDS; do kill $p 2>/dev/null || true; done' EXIT
# wait for a minimal corpus (or for the generators to finish)
MIN=$(( SONGS < 16 ? SONGS : 16 ))
while [ "$(ls -d "$CORPUS"/*/meta.json 2>/dev/null | grep -vc '\.part/' || true)" -lt "$MIN" ]; do
  alive=0; for p in $GEN_PIDS; do kill -0 $p 2>/dev/null && alive=1; done
  [ $alive = 1 ] || break
  sleep 5
done
echo "corpus: $(ls -d "$CORPUS"/*/meta.json 2>/dev/null | grep -vc '\.part/') songs"

# ---------------------------------------------------------------- 3. train (resumes from last.pt)
VALMIN=$(awk "BEGIN{v=$BUDGET/3; print (v<6)?v:6}")
CKMIN=$(awk "BEGIN{v=$BUDGET/3; print (v<3)?v:3}")
if [ "$ARCH" = bandsplit ]; then LR=1e-3; else LR=7e-4; fi
nice -n 10 "$PY" "$HERE/train.py" --corpus "$CORPUS" --run "$WORK/$RUN" --budget-minutes "$BUDGET" --arch "$ARCH" --dim "$DIM" --lookahead "$LOOKAHEAD" \
  --batch 4 --seconds 2.5 --frame-stride 2 --lr "$LR" --warmup 100 --loss sdr --sdr-eps 0.025 \
  --val-minutes "$VALMIN" --ckpt-minutes "$CKMIN" 2>&1 | tee -a "$WORK/logs/train_$RUN.log"
for p in $GEN_PIDS; do kill $p 2>/dev/null || true; done

# ---------------------------------------------------------------- 4. export + verify + cost
# The channel-swap average (export.py's default) batches two views through BandSplitNet.step; the
# full-spectrum Net exports one view.
if [ "$ARCH" = bandsplit ]; then SWAP=1; else SWAP=0; fi
"$PY" "$HERE/export.py" --run "$WORK/$RUN" --out "$OUT" --channel-swap-tta $SWAP 2>&1 | tee "$WORK/logs/export_$RUN.log"

# ---------------------------------------------------------------- 5. evaluate on the dev set (if present)
if [ -d /work/shared/eval/dev ] || [ -n "${DEMIX_DEV:-}" ]; then
  "$PY" "$HERE/evaluate.py" --onnx "$OUT" --dev "${DEMIX_DEV:-/work/shared/eval/dev}" --json "$WORK/$RUN/eval.json" \
    | tee "$WORK/$RUN/eval.md"
else
  echo "dev set not found: skipping evaluation (set DEMIX_DEV=/path/to/eval/dev)" >&2
fi
if [ $SMOKE = 0 ] && [ -f "$WORK/$RUN/eval.json" ]; then
  "$PY" "$HERE/write_card.py" --run "$WORK/$RUN" --eval "$WORK/$RUN/eval.json" --out "$(dirname "$OUT")/MODEL_CARD.md"
fi
echo "model: $OUT"

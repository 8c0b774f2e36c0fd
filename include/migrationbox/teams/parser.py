"""Text to intent: a deterministic grammar, never a guess.

Steps: clean the Teams text (mention, HTML tags, control characters), lift quoted parts
(a reason, a search), split into tokens, detect the language from the grammar's own
vocabulary, classify the tokens that are values (regions, clouds, gates, migration ids,
environments, periods), then match the command triggers of that language and of the
plan's canonical syntax. Exactly one command with every required slot gives an
``Intent``; anything else (no command, two commands, a missing or doubled value, a
negated or conditional action) gives a ``Clarification`` in the user's language.

The same function serves typed and transcribed (voice) text, so both go through the
same confirmation for destructive commands.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache, lru_cache

from migrationbox.teams.grammar import (
    CANONICAL,
    CLOUD_WORDS,
    GRAMMARS,
    NOTIFICATION_KINDS,
    UNIT_SECONDS,
    UNIVERSAL_DURATION_UNITS,
    UNIVERSAL_ENVIRONMENTS,
    UNIVERSAL_GATES,
    UNIVERSAL_SEVERITIES,
    LanguageGrammar,
    fold,
)
from migrationbox.teams.models import (
    ACTIONS,
    APPROVAL_FAMILY,
    COMMAND_SPECS,
    DESTRUCTIVE,
    MAX_DURATION_S,
    Clarification,
    ClarificationReason,
    Cloud,
    Command,
    Environment,
    Intent,
    Language,
    ParseContext,
    Period,
    SlotName,
    Slots,
)

#: Longer texts are not commands; they are asked back rather than scanned. Quoted text
#: (a reason, a search) counts towards the characters, not the words.
MAX_CHARS = 2000
MAX_WORDS = 60
MAX_ID_CHARS = 80

_AT_MENTION = re.compile(r"<at>[^<]{0,200}</at>", re.IGNORECASE)
_TAG = re.compile(r"<[^<>]{0,200}>")
_ENTITIES = {"&nbsp;": " ", "&amp;": "&", "&lt;": "<", "&gt;": ">", "&quot;": '"',
             "&#39;": "'"}
_QUOTED = re.compile(r'"([^"]*)"|“([^”"]*)[”"]|„([^“”"]*)[“”"]|«([^»]*)»|»([^«]*)«')
_TOKEN = re.compile(r"\w[\w'’.\-]*")
_PHASE_INLINE = re.compile(r"^(?:phase|fase|fazis|szakasz)[-_]?(\d{1,3})$")
_DIGITS = re.compile(r"^\d{1,3}$")
_ID = re.compile(r"^[a-z0-9][a-z0-9._\-]*$")
_AWS_SHAPE = re.compile(r"^[a-z]{2}(?:-gov)?-[a-z]+-\d{1,2}$")
_GCP_SHAPE = re.compile(r"^[a-z]+-[a-z]+\d{1,2}$")
_NUMBER = re.compile(r"^\d{1,12}(?:\.\d{1,3})?$")
_DURATION_PART = re.compile(r"(\d{1,12}(?:\.\d{1,3})?)-?([a-z]+)")
_ALNUM = re.compile(r"[^a-z0-9]")
#: How alike a heard word and a known migration id must be (difflib ratio of their
#: letters and digits) to be taken for it under ``known_ids_only``: "acne" ~ "acme" is 0.75.
CLOSE_ID_RATIO = 0.75
#: Shorter words are not close-matched: two letters in common are no evidence.
CLOSE_ID_MIN_CHARS = 4

REGION_EXAMPLES: dict[Cloud, str] = {
    Cloud.AWS: "us-east-1", Cloud.AZURE: "eastus", Cloud.GCP: "us-central1",
}

SLOT_NAMES: dict[Language, dict[str, str]] = {
    Language.EN: {"migration_id": "migration", "environment": "environment",
                  "cloud": "cloud", "region": "region", "gate": "gate",
                  "reason": "reason", "period": "period", "query": "search"},
    Language.DE: {"migration_id": "Migration", "environment": "Umgebung", "cloud": "Cloud",
                  "region": "Region", "gate": "Gate", "reason": "Begründung",
                  "period": "Zeitraum", "query": "Suche"},
    Language.ES: {"migration_id": "migración", "environment": "entorno", "cloud": "nube",
                  "region": "región", "gate": "puerta", "reason": "motivo",
                  "period": "periodo", "query": "búsqueda"},
    Language.HU: {"migration_id": "migráció", "environment": "környezet", "cloud": "felhő",
                  "region": "régió", "gate": "kapu", "reason": "indok",
                  "period": "időszak", "query": "keresés"},
}


# ---------------------------------------------------------------------------- text


@dataclass(frozen=True)
class Token:
    text: str
    norm: str
    start: int
    end: int


def clean(text: str, bot_names: Iterable[str] = ("MigrationBox",)) -> str:
    """The text a person meant: no mention of the bot, no markup, no control characters."""
    text = unicodedata.normalize("NFKC", text)
    text = _AT_MENTION.sub(" ", text)
    text = _TAG.sub(" ", text)
    for entity, char in _ENTITIES.items():
        text = text.replace(entity, char)
    text = "".join(" " if unicodedata.category(ch).startswith("C") else ch for ch in text)
    for name in bot_names:
        if name:
            text = re.sub(rf"@?{re.escape(name)}\b", " ", text, flags=re.IGNORECASE)
    return " ".join(text.split())


def _quoted(text: str) -> tuple[list[str], str]:
    """The quoted parts, and the text with them blanked out (positions kept)."""
    parts: list[str] = []

    def blank(match: re.Match[str]) -> str:
        inner = next((g for g in match.groups() if g is not None), "")
        if inner.strip():
            parts.append(inner.strip())
        return " " * len(match.group(0))

    return parts, _QUOTED.sub(blank, text)


def tokenize(text: str) -> list[Token]:
    tokens = []
    for match in _TOKEN.finditer(text):
        raw = match.group(0).rstrip(".-'’")
        if raw:
            tokens.append(Token(raw, fold(raw).replace("’", "'"), match.start(),
                                match.start() + len(raw)))
    return tokens


def _matches(pattern: str, norm: str) -> bool:
    if pattern.endswith("*"):
        return norm.startswith(pattern[:-1])
    return norm == pattern


@cache
def _folded(phrase: str) -> tuple[str, ...]:
    return tuple(fold(w) for w in phrase.split())


@cache
def _vocabulary(language: Language) -> tuple[frozenset[str], tuple[str, ...]]:
    words = GRAMMARS[language].vocabulary()
    exact = frozenset(w for w in words if not w.endswith("*"))
    stems = tuple(w[:-1] for w in words if w.endswith("*") and len(w) > 2)
    return exact, stems


@cache
def _all_vocabulary() -> tuple[frozenset[str], tuple[str, ...]]:
    exact: set[str] = {fold(w) for ws in CANONICAL.values() for w in ws}
    exact |= {fold(w) for ws in UNIVERSAL_GATES.values() for w in ws}
    exact |= {fold(w) for ws in UNIVERSAL_ENVIRONMENTS.values() for w in ws}
    stems: list[str] = []
    for language in Language:
        e, s = _vocabulary(language)
        exact |= e
        stems.extend(s)
    return frozenset(exact), tuple(stems)


def _in_vocabulary(norm: str, vocab: tuple[frozenset[str], tuple[str, ...]]) -> bool:
    exact, stems = vocab
    return norm in exact or any(norm.startswith(s) for s in stems)


def detect_language(text: str, locale: str | None = None) -> Language:
    """The language whose grammar words the text uses most; the locale breaks ties.

    Each token counts for the languages it matches best (an exact word before a stem, a
    longer stem before a shorter one), 1/k for each of k; letters only one of them
    writes (ő, ű; ß, ä; ñ, ¿, ¡) count extra. No words known: the locale, else English.
    """
    return _detect(tokenize(text[:MAX_CHARS]), text[:MAX_CHARS], locale)


def _locale_language(locale: str | None) -> Language | None:
    if not locale:
        return None
    prefix = locale.strip().lower()[:2]
    return next((lang for lang in Language if lang.value == prefix), None)


def _match_quality(norm: str, language: Language) -> tuple[int, int] | None:
    """How well a word matches the language's vocabulary: an exact word beats any stem,
    a longer stem beats a shorter one ("cancela" is Spanish ``cancela*`` more than
    English ``cancel*``); None when it does not match at all."""
    exact, stems = _vocabulary(language)
    if norm in exact:
        return (1, len(norm))
    best = max((len(s) for s in stems if norm.startswith(s)), default=0)
    return (0, best) if best else None


@lru_cache(maxsize=50_000)
def _languages_of(norm: str) -> tuple[Language, ...]:
    """The languages that match the word best (see ``_match_quality``)."""
    qualities = {lang: q for lang in Language
                 if (q := _match_quality(norm, lang)) is not None}
    if not qualities:
        return ()
    top = max(qualities.values())
    return tuple(lang for lang, q in qualities.items() if q == top)


def _detect(tokens: list[Token], text: str, locale: str | None) -> Language:
    scores = dict.fromkeys(Language, 0.0)
    for token in tokens:
        hits = _languages_of(token.norm)
        for lang in hits:
            scores[lang] += 1.0 / len(hits)
    lowered = text.lower()
    for lang, grammar in GRAMMARS.items():
        scores[lang] += 1.5 * sum(1 for letter in grammar.letters if letter in lowered)
    best = max(scores.values())
    hint = _locale_language(locale)
    if best == 0.0:
        return hint or Language.EN
    tied = [lang for lang in Language if scores[lang] == best]
    return hint if hint in tied else tied[0]


# ---------------------------------------------------------------------------- regions


@lru_cache(maxsize=1)
def known_regions() -> dict[str, Cloud]:
    """Every region name the project's price catalogues know, with its cloud."""
    from migrationbox.sizing.clouds import regions

    table: dict[str, Cloud] = {}
    for cloud in Cloud:
        for name in regions(cloud.value):
            table[name.lower()] = cloud
    return table


def _region_shape(norm: str) -> bool:
    return bool(_AWS_SHAPE.match(norm) or _GCP_SHAPE.match(norm))


# ---------------------------------------------------------------------------- parsing


@dataclass
class _Scan:
    """What each token turned out to be."""

    regions: dict[int, tuple[str, Cloud | None]]
    clouds: dict[int, Cloud]
    gates: dict[int, str]
    environments: dict[int, Environment]
    periods: dict[int, Period]
    ids: dict[int, str]
    #: a duration's first token -> seconds; every token of it is in ``duration_tokens``
    durations: dict[int, int]
    duration_tokens: set[int]
    severities: dict[int, str]
    kinds: dict[int, str]
    #: id-like words that are no known migration (only under ``known_ids_only``)
    unknown_ids: dict[int, str]

    @classmethod
    def empty(cls) -> _Scan:
        return cls({}, {}, {}, {}, {}, {}, {}, set(), {}, {}, {})


def _word_value(norm: str, table: dict, grammar_tables: list[dict]) -> object | None:
    for source in [table, *grammar_tables]:
        for value, words in source.items():
            for word in words:
                if _matches(_fold_word(word), norm):
                    return value
    return None


@lru_cache(maxsize=4096)
def _fold_word(word: str) -> str:
    return fold(word)


def _cloud_of(norm: str) -> Cloud | None:
    for cloud, words in CLOUD_WORDS.items():
        for word in words:
            # "azure-ra", "aws-re": Hungarian case endings after a hyphen
            if norm == word or norm.startswith(word + "-"):
                return Cloud(cloud)
    return None


@cache
def _unit_seconds() -> dict[str, int]:
    """Every duration unit word of every language (folded) -> seconds. People mix
    languages in chat ("mute 2 Stunden"), so all of them count whatever the language."""
    table: dict[str, int] = {}
    for units in [UNIVERSAL_DURATION_UNITS, *(g.duration_units for g in GRAMMARS.values())]:
        for unit, words in units.items():
            for word in words:
                table[fold(word)] = UNIT_SECONDS[unit]
    return table


@cache
def _number_words() -> dict[str, int]:
    return {fold(w): n for g in GRAMMARS.values() for n, ws in g.numbers.items() for w in ws}


def _seconds(amount: str, unit_seconds: int) -> int:
    return min(int(float(amount) * unit_seconds), MAX_DURATION_S)


def _duration_at(tokens: list[Token], i: int) -> tuple[int, int] | None:
    """A duration starting at token ``i``: (seconds, tokens it takes). One token
    ("30m", "1h30m", "2óra") or a number and a unit ("90 min", "2 Stunden", "egy nap")."""
    units = _unit_seconds()
    norm = tokens[i].norm
    parts = list(_DURATION_PART.finditer(norm))
    if parts and "".join(p.group(0) for p in parts) == norm and all(
            p.group(2) in units for p in parts):
        total = sum(_seconds(p.group(1), units[p.group(2)]) for p in parts)
        return min(total, MAX_DURATION_S), 1
    if i + 1 < len(tokens) and tokens[i + 1].norm in units:
        unit = units[tokens[i + 1].norm]
        if _NUMBER.match(norm):
            return _seconds(norm, unit), 2
        if norm in _number_words():
            return _seconds(str(_number_words()[norm]), unit), 2
    return None


def _severity_of(norm: str) -> str | None:
    value = _word_value(norm, UNIVERSAL_SEVERITIES, [g.severities for g in GRAMMARS.values()])
    return None if value is None else str(value)


def _kind_of(norm: str) -> str | None:
    """A notification kind: its own name (``wave_done``, ``wave-done``) or an everyday
    word of any language ("incidents", "Vorfälle", "fallidas")."""
    if norm.replace("-", "_") in NOTIFICATION_KINDS:
        return norm.replace("-", "_")
    value = _word_value(norm, {}, [g.kinds for g in GRAMMARS.values()])
    return None if value is None else str(value)


def _id_key(value: str) -> str:
    """The letters and digits of an id: how a spoken id is compared ("prod 7", "Prod7")."""
    return _ALNUM.sub("", fold(value))


def _close_id(norm: str, known: dict[str, str]) -> str | None:
    """The one known id the word is close to (``CLOSE_ID_RATIO``) with the same digits,
    or None when none or more than one is: a guess between two migrations is asked back,
    never taken, and "prod-8" is another migration than "prod-7", not a mishearing."""
    key = _id_key(norm)
    if len(key) < CLOSE_ID_MIN_CHARS:
        return None
    digits = re.sub(r"\D", "", key)
    close = {original for k, original in known.items()
             if len(k) >= CLOSE_ID_MIN_CHARS and re.sub(r"\D", "", k) == digits
             and difflib.SequenceMatcher(None, key, k).ratio() >= CLOSE_ID_RATIO}
    return next(iter(close)) if len(close) == 1 else None


def _spoken_digit(norm: str) -> str:
    """A number word as its digits ("one", "zwei", "egy" -> "1", "2", "1"); articles
    ("a", "an", "un") stay words. Anything else is returned as is."""
    number = _number_words().get(norm) if len(norm) > 2 else None
    return str(number) if number is not None else norm


def _id_like(norm: str) -> bool:
    return (len(norm) <= MAX_ID_CHARS and bool(_ID.match(norm))
            and any(c.isalpha() for c in norm) and any(c.isdigit() or c in "-_" for c in norm))


def _scan(tokens: list[Token], grammar: LanguageGrammar, ctx: ParseContext) -> _Scan:
    scan = _Scan.empty()
    regions = known_regions()
    known_ids = {fold(i): i for i in ctx.known_migration_ids}
    known_keys = {_id_key(i): i for i in ctx.known_migration_ids if _id_key(i)}
    phase_words = {fold(w) for w in grammar.phase_words} | {"phase", "fase", "fazis"}
    vocab = _all_vocabulary()
    i = 0
    while i < len(tokens):
        norm = tokens[i].norm
        nxt = tokens[i + 1].norm if i + 1 < len(tokens) else ""
        inline = _PHASE_INLINE.match(norm)
        duration = None if norm in known_ids else _duration_at(tokens, i)
        if inline:
            scan.gates[i] = f"phase-{int(inline.group(1))}"
        elif norm in phase_words and _DIGITS.match(nxt):
            scan.gates[i] = scan.gates[i + 1] = f"phase-{int(nxt)}"
            i += 1
        elif _DIGITS.match(norm) and nxt in phase_words:
            scan.gates[i] = scan.gates[i + 1] = f"phase-{int(norm)}"
            i += 1
        elif ctx.known_ids_only and nxt and (_id_key(norm + _spoken_digit(nxt))
                                             in known_keys):
            # speech splits an id: "prod 7", "acme one" for "acme-1"
            scan.ids[i] = scan.ids[i + 1] = known_keys[_id_key(norm + _spoken_digit(nxt))]
            i += 1
        elif duration is not None:
            seconds, width = duration
            scan.durations[i] = seconds
            scan.duration_tokens.update(range(i, i + width))
            i += width - 1
        elif norm in regions:
            scan.regions[i] = (norm, regions[norm])
        elif _region_shape(norm):
            scan.regions[i] = (norm, None)
        elif (cloud := _cloud_of(norm)) is not None:
            scan.clouds[i] = cloud
        elif norm in known_ids:
            scan.ids[i] = known_ids[norm]
        elif (known := next((v for k, v in known_ids.items()
                             if norm.startswith(k + "-")), None)) is not None:
            scan.ids[i] = known
        elif ctx.known_ids_only and _id_key(norm) in known_keys:
            scan.ids[i] = known_keys[_id_key(norm)]
        elif (severity := _severity_of(norm)) is not None:
            scan.severities[i] = severity
        else:
            kind = _kind_of(norm)
            if kind is not None:
                scan.kinds[i] = kind
            gate = _word_value(norm, UNIVERSAL_GATES, [grammar.gates])
            if gate is not None:
                scan.gates[i] = str(gate)
            env = _word_value(norm, UNIVERSAL_ENVIRONMENTS, [grammar.environments])
            if env is not None:
                scan.environments[i] = Environment(env)
            period = _word_value(norm, {}, [grammar.periods])
            if period is not None:
                scan.periods[i] = Period(period)
            if (kind is None and gate is None and env is None and period is None
                    and not _in_vocabulary(norm, vocab)):
                _take_id(scan, i, tokens[i], ctx, known_keys)
        i += 1
    return scan


def _take_id(scan: _Scan, i: int, token: Token, ctx: ParseContext,
             known_keys: dict[str, str]) -> None:
    """A word no grammar word or value claimed: an id when it looks like one. Under
    ``known_ids_only`` only a known id is taken (a close match naming one alone); any
    other id-like word is kept to be asked back."""
    if not ctx.known_ids_only:
        if _id_like(token.norm):
            scan.ids[i] = token.text
        return
    close = _close_id(token.norm, known_keys) if known_keys else None
    if close is not None:
        scan.ids[i] = close
    elif _id_like(token.norm):
        scan.unknown_ids[i] = token.text


def _trigger_matches(tokens: list[Token], grammar: LanguageGrammar,
                     blocked: set[int]) -> dict[Command, frozenset[int]]:
    """For each command, the largest set of tokens one of its triggers matches."""
    found: dict[Command, frozenset[int]] = {}
    for source in (CANONICAL, grammar.triggers):
        for command, phrases in source.items():
            for phrase in phrases:
                used: set[int] = set()
                for pattern in _folded(phrase):
                    hit = next((i for i, t in enumerate(tokens) if i not in used
                                and i not in blocked and _matches(pattern, t.norm)), None)
                    if hit is None:
                        break
                    used.add(hit)
                else:
                    if len(used) > len(found.get(command, frozenset())):
                        found[command] = frozenset(used)
    return found


#: Commands whose notification kinds are slots: "alert-config rollback", "mute approvals".
KIND_COMMANDS = frozenset({Command.ALERT_CONFIG, Command.MUTE})


def _resolve(found: dict[Command, frozenset[int]], gate_tokens: set[int],
             kind_tokens: set[int]) -> dict[Command, frozenset[int]]:
    if any(c in APPROVAL_FAMILY for c in found):
        # "approve rollback", "jóváhagyom a költségkeretet": the gate word is a slot
        found = {c: s for c, s in found.items()
                 if c in APPROVAL_FAMILY or not s <= gate_tokens}
    if any(c in KIND_COMMANDS for c in found):
        # "alert-config rollback", "mute Genehmigungen": the kind word is a slot
        found = {c: s for c, s in found.items()
                 if c in KIND_COMMANDS or not s <= kind_tokens}
    return {c: s for c, s in found.items()
            if not any(s < other for o, other in found.items() if o != c)}


def _has_word(tokens: list[Token], words: Iterable[str]) -> bool:
    norms = [t.norm for t in tokens]
    for phrase in words:
        parts = _folded(phrase)
        if all(any(_matches(p, n) for n in norms) for p in parts):
            return True
    return False


#: Words that join a free text to the value after it ("Need more testing for prod-1").
_CONNECTORS = frozenset({"for", "to", "of", "on", "in", "fur", "von", "zu", "bei", "para",
                         "por", "de", "del", "en", "a", "az", "hogy"})


def _span(text: str, run: list[Token], lead: set[str]) -> str:
    while run and run[0].norm in lead:
        run = run[1:]
    while run and run[-1].norm in _CONNECTORS:
        run = run[:-1]
    return text[run[0].start:run[-1].end].strip(" .,:;!?") if run else ""


def _free_text(text: str, tokens: list[Token], trigger: frozenset[int],
               grammar: LanguageGrammar, markers: tuple[str, ...],
               consumed: Iterable[int], *, strip_stopwords: bool) -> str:
    """A reason or a search: after a marker word ("because", "weil"), else the longest run
    of words after the command that are not the command or a value it names, else such a
    run before the command (verb-final phrasings). A search drops leading function words
    ("for", "nach"); a reason is kept as written, but for a dangling connector."""
    lead: set[str] = set()
    if strip_stopwords:
        lead = {fold(w) for w in grammar.stopwords if not w.endswith("*")}
        lead |= {"for", "nach", "por", "about", "de"}
    marked = [i for i, t in enumerate(tokens) if any(_matches(fold(m), t.norm) for m in markers)]
    if marked:
        found = _span(text, tokens[marked[0] + 1:], lead)
        if found:
            return found
    taken = set(trigger) | set(consumed)
    runs: list[list[int]] = []
    for i in range(len(tokens)):
        if i in taken:
            continue
        if runs and runs[-1][-1] == i - 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    first = min(trigger, default=0)
    for side in ([r for r in runs if r[0] > first], [r for r in runs if r[0] < first]):
        for run in sorted(side, key=len, reverse=True):
            found = _span(text, [tokens[i] for i in run], lead)
            if found:
                return found
    return ""


def _distinct(values: Iterable) -> list:
    return list(dict.fromkeys(values))


def parse(text: object, context: ParseContext | None = None) -> Intent | Clarification:
    """Parse one message. Never raises: whatever the text, an intent or a question."""
    ctx = context or ParseContext()
    raw = text if isinstance(text, str) else ""
    if len(raw) > MAX_CHARS * 4:
        language = detect_language(raw[:MAX_CHARS], ctx.locale)
        return _ask(language, ClarificationReason.TOO_LONG)
    cleaned = clean(raw, ctx.bot_names)
    if len(cleaned) > MAX_CHARS:
        language = detect_language(cleaned[:MAX_CHARS], ctx.locale)
        return _ask(language, ClarificationReason.TOO_LONG)
    quotes, unquoted = _quoted(cleaned)
    tokens = tokenize(unquoted)
    language = _detect(tokens[:MAX_WORDS], cleaned, ctx.locale)
    grammar = GRAMMARS[language]
    if len(tokens) > MAX_WORDS:
        return _ask(language, ClarificationReason.TOO_LONG)
    if not tokens and not quotes:
        return _ask(language, ClarificationReason.EMPTY)

    scan = _scan(tokens, grammar, ctx)
    blocked = (set(scan.regions) | set(scan.clouds) | set(scan.ids) | set(scan.unknown_ids)
               | scan.duration_tokens | set(scan.severities))
    found = _resolve(_trigger_matches(tokens, grammar, blocked), set(scan.gates),
                     set(scan.kinds))
    if not found:
        return _ask(language, ClarificationReason.UNKNOWN_COMMAND)
    if len(found) > 1:
        options = [c for c in Command if c in found]
        return _ask(language, ClarificationReason.AMBIGUOUS_COMMAND, options=options)
    command, trigger = next(iter(found.items()))

    if command in ACTIONS:
        # every language's words: "no canceles" may have been detected as English
        if _has_word(tokens, [w for g in GRAMMARS.values() for w in g.negations]):
            return _ask(language, ClarificationReason.NEGATED, command=command)
        if _has_word(tokens, [w for g in GRAMMARS.values() for w in g.conditionals]):
            return _ask(language, ClarificationReason.CONDITIONAL, command=command)
    return _fill(command, trigger, cleaned, unquoted, quotes, tokens, scan, grammar, ctx)


def _fill(command: Command, trigger: frozenset[int], cleaned: str, unquoted: str,
          quotes: list[str], tokens: list[Token], scan: _Scan, grammar: LanguageGrammar,
          ctx: ParseContext) -> Intent | Clarification:
    language = grammar.language
    spec = COMMAND_SPECS[command]
    wanted = set(spec.required) | set(spec.optional)
    values: dict[str, list] = {
        "migration_id": _distinct(v for i, v in scan.ids.items() if i not in trigger),
        "environment": _distinct(scan.environments.values()),
        "cloud": _distinct(scan.clouds.values()),
        "region": _distinct(r for r, _ in scan.regions.values()),
        "gate": _distinct(scan.gates.values()),
        "period": _distinct(scan.periods.values()),
        "severity": _distinct(scan.severities.values()),
    }
    kinds = list(scan.kinds.values())
    durations = list(scan.durations.values())
    if command in KIND_COMMANDS:
        # alert-config "rollback incidents P2": a quoted list is values, not a search
        for quote in quotes:
            quoted = _scan(tokenize(quote), grammar, ctx.model_copy(
                update={"known_migration_ids": (), "known_ids_only": False}))
            kinds.extend(quoted.kinds.values())
            durations.extend(quoted.durations.values())
            values["severity"] = _distinct([*values["severity"],
                                            *quoted.severities.values()])
    if "migration_id" in wanted and scan.unknown_ids:
        return _ask(language, ClarificationReason.UNKNOWN_MIGRATION, command=command,
                    value=", ".join(_distinct(scan.unknown_ids.values())),
                    known=list(ctx.known_migration_ids))
    slots: dict[str, object] = {}
    inferred: list[SlotName] = []
    for name, found in values.items():
        if name not in wanted or not found:
            continue
        if len(found) > 1:
            return _ask(language, ClarificationReason.CONFLICTING_SLOT, command=command,
                        slot=name, values=[str(v) for v in found])
        slots[name] = found[0]
    if "kinds" in wanted and kinds:
        slots["kinds"] = tuple(k for k in NOTIFICATION_KINDS if k in set(kinds))
    if "duration" in wanted and durations:
        # "1 hour 30 minutes": the parts add up
        slots["duration"] = min(sum(durations), MAX_DURATION_S)

    if "region" in slots:
        region = str(slots["region"])
        region_cloud = known_regions().get(region)
        if region_cloud is None:
            return _ask(language, ClarificationReason.UNKNOWN_REGION, command=command,
                        slots=slots, region=region, cloud=slots.get("cloud"))
        if "cloud" not in slots and "cloud" in wanted:
            slots["cloud"] = region_cloud
            inferred.append("cloud")
        elif "cloud" in slots and slots["cloud"] != region_cloud:
            return _ask(language, ClarificationReason.REGION_NOT_IN_CLOUD, command=command,
                        slots=slots, region=region, cloud=slots["cloud"])

    consumed = [*scan.gates, *scan.ids, *scan.unknown_ids]
    if command == Command.REJECT:
        reason = quotes[0] if quotes else _free_text(
            unquoted, tokens, trigger, grammar, grammar.reason_markers, consumed,
            strip_stopwords=False)
        if reason:
            slots["reason"] = reason
    if "query" in wanted:
        query = quotes[0] if quotes else _free_text(unquoted, tokens, trigger, grammar, (), (),
                                                       strip_stopwords=True)
        if query:
            slots["query"] = query

    if "migration_id" in spec.required and "migration_id" not in slots and ctx.migration_id:
        slots["migration_id"] = ctx.migration_id
        inferred.append("migration_id")
    if ("region" in spec.required and "region" not in slots and "cloud" in slots
            and Cloud(slots["cloud"]) in ctx.default_regions):
        slots["region"] = ctx.default_regions[Cloud(slots["cloud"])]
        inferred.append("region")

    missing = [s for s in spec.required if s not in slots]
    if missing:
        return _ask(language, ClarificationReason.MISSING_SLOT, command=command,
                    slots=slots, missing=missing, cloud=slots.get("cloud"))
    return Intent(command=command, slots=Slots(**slots), language=language,
                  needs_confirmation=command in DESTRUCTIVE, inferred=inferred,
                  text=cleaned)


# ---------------------------------------------------------------------------- questions


def _or_list(language: Language, items: list[str]) -> str:
    word = GRAMMARS[language].messages["or"]
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + f" {word} " + items[-1]


def _ask(language: Language, reason: ClarificationReason, *, command: Command | None = None,
         options: list[Command] | None = None, missing: list[SlotName] | None = None,
         slots: dict | None = None, slot: str | None = None, values: list[str] | None = None,
         region: str | None = None, cloud: object = None, value: str = "",
         known: list[str] | None = None) -> Clarification:
    grammar = GRAMMARS[language]
    labels = grammar.command_labels
    options = options or []
    missing = missing or []
    cloud_name = Cloud(cloud).value.upper() if cloud else "AWS, Azure, GCP"
    example = (REGION_EXAMPLES[Cloud(cloud)] if cloud
               else ", ".join(REGION_EXAMPLES.values()))
    if reason == ClarificationReason.MISSING_SLOT:
        question = " ".join(grammar.slot_questions[m].format(cloud=cloud_name, example=example)
                            for m in missing)
    elif reason == ClarificationReason.AMBIGUOUS_COMMAND:
        question = grammar.messages["ambiguous_command"].format(
            options=_or_list(language, [f"'{labels[o]}' ({o.value})" for o in options]))
    elif reason == ClarificationReason.UNKNOWN_COMMAND:
        question = grammar.messages["unknown_command"].format(
            commands=", ".join(c.value for c in Command))
    elif reason == ClarificationReason.CONFLICTING_SLOT:
        question = grammar.messages["conflicting_slot"].format(
            slot=SLOT_NAMES[language].get(slot or "", slot), values=", ".join(values or []))
    elif reason in (ClarificationReason.REGION_NOT_IN_CLOUD,
                    ClarificationReason.UNKNOWN_REGION):
        question = grammar.messages[reason.value].format(
            region=region, cloud=cloud_name, example=example)
    elif reason == ClarificationReason.UNKNOWN_MIGRATION:
        names = (known or [])[:10]
        question = grammar.messages["unknown_migration"].format(
            value=value, known=", ".join(names) + (", …" if len(known or []) > 10 else "")
            if names else "-")
    elif reason in (ClarificationReason.CONDITIONAL, ClarificationReason.NEGATED):
        question = grammar.messages[reason.value].format(
            command=labels[command] if command else "")
    else:
        question = grammar.messages[reason.value]
    clean_slots = {k: v for k, v in (slots or {}).items() if k in Slots.model_fields}
    return Clarification(reason=reason, question=question, language=language,
                         command=command, options=options, missing=missing,
                         slots=Slots(**clean_slots))


def confirmation_question(intent: Intent) -> str:
    """The question asked before a destructive command runs, in the intent's language."""
    grammar = GRAMMARS[intent.language]
    names = SLOT_NAMES[intent.language]
    facts = [f"{names[k]}: {v}" for k, v in intent.slots.model_dump(mode="json").items()
             if v is not None]
    summary = grammar.command_labels[intent.command] + (f" ({', '.join(facts)})"
                                                        if facts else "")
    return grammar.messages["confirm"].format(summary=summary)


def parse_confirmation(text: object, language: Language | None = None) -> bool | None:
    """The answer to a confirmation question: True (yes), False (no) or None (neither,
    which must not be taken as yes). The yes/no words of every language count, because
    people answer "ok" or "no" whatever language they asked in."""
    if not isinstance(text, str) or len(text) > 200:
        return None
    tokens = tokenize(clean(text))
    if not tokens:
        return None
    grammars = [GRAMMARS[language]] if language else list(GRAMMARS.values())
    yes = {fold(w) for g in grammars for w in g.yes}
    no = {fold(w) for g in grammars for w in g.no}
    norms = {t.norm for t in tokens}
    if norms <= yes and not norms & no:
        return True
    if norms <= no and not norms & yes:
        return False
    return None

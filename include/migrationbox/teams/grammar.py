"""The per-language vocabulary of the bot's grammar, as data.

Words are written as people type them (accents included) and folded when loaded: case
folded, accents stripped, so "Indítsd" and "inditsd" match alike. A trailing ``*`` makes
a word a stem that matches any ending: Hungarian and German glue suffixes and compounds
onto words ("migrációt", "Azure-ra", "Produktionsmigration"). A trigger of several words
matches when all of them occur, in any order ("kérj jóváhagyást", "lehne ... ab").

The same word may trigger two commands ("stop" is pause or cancel): the parser then asks
which one was meant. Adding a language is adding one ``LanguageGrammar``.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field

from migrationbox.teams.models import Command, Environment, Language, Period

C = Command


def fold(word: str) -> str:
    """Case-fold and strip accents: the form every comparison uses."""
    decomposed = unicodedata.normalize("NFKD", word.casefold())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


@dataclass(frozen=True)
class LanguageGrammar:
    language: Language
    triggers: dict[Command, tuple[str, ...]]
    stopwords: tuple[str, ...]
    environments: dict[Environment, tuple[str, ...]]
    periods: dict[Period, tuple[str, ...]]
    gates: dict[str, tuple[str, ...]]
    phase_words: tuple[str, ...]
    negations: tuple[str, ...]
    conditionals: tuple[str, ...]
    reason_markers: tuple[str, ...]
    yes: tuple[str, ...]
    no: tuple[str, ...]
    command_labels: dict[Command, str]
    slot_questions: dict[str, str]
    messages: dict[str, str]
    #: letters that (almost) only this language uses: strong hints for detection
    letters: str = ""
    extra: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: duration words by unit (``minute``, ``hour``, ``day``, ``week``), as written
    #: after a number: "30 Minuten", "2 órára" (a duration is never a migration id)
    duration_units: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: number words a duration may start with ("an hour", "eine Stunde", "egy nap")
    numbers: dict[int, tuple[str, ...]] = field(default_factory=dict)
    #: everyday words for notification kinds (``alert-config``, ``mute``)
    kinds: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: severity words beyond the universal ones (P1-P4, info, warning, critical)
    severities: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def vocabulary(self) -> tuple[str, ...]:
        """Every word of the grammar (for language detection)."""
        words: list[str] = []
        for group in (self.triggers, self.environments, self.periods, self.gates,
                      self.duration_units, self.kinds, self.severities):
            for phrases in group.values():
                for phrase in phrases:
                    words.extend(phrase.split())
        for seq in (self.stopwords, self.phase_words, self.negations, self.conditionals,
                    self.reason_markers, self.yes, self.no):
            words.extend(seq)
        return tuple(dict.fromkeys(fold(w) for w in words))


#: The plan's command syntax, understood whatever the language ("@MigrationBox pause x").
CANONICAL: dict[Command, tuple[str, ...]] = {
    c: (c.value,) for c in Command
}

CLOUD_WORDS: dict[str, tuple[str, ...]] = {
    "aws": ("aws", "amazon"),
    "azure": ("azure",),
    "gcp": ("gcp", "google"),
}

#: Environment words every language uses in practice.
UNIVERSAL_ENVIRONMENTS: dict[Environment, tuple[str, ...]] = {
    Environment.PRODUCTION: ("prod", "prd", "production"),
    Environment.STAGING: ("staging", "stage", "stg", "preprod"),
    Environment.TEST: ("test", "qa", "uat"),
    Environment.DEVELOPMENT: ("dev", "development"),
}

#: The notifier's notification kinds (``teams.notifier.NOTIFICATION_KINDS``; a test keeps
#: the two equal). Written as is (``wave_done``, also ``wave-done``) they are a kind in any
#: language, never a migration id.
NOTIFICATION_KINDS: tuple[str, ...] = (
    "wave_started", "phase_failed", "rollback", "wave_done", "incident_opened",
    "incident_healed", "approval_waiting",
)

#: Severity words every language uses: an incident's P1-P4 and the notifier's levels.
UNIVERSAL_SEVERITIES: dict[str, tuple[str, ...]] = {
    "P1": ("p1",), "P2": ("p2",), "P3": ("p3",), "P4": ("p4",),
    "info": ("info",), "warning": ("warning", "warn"), "critical": ("critical", "crit"),
}

#: Unit abbreviations every language writes ("30m", "2h", "1d", "90 min").
UNIVERSAL_DURATION_UNITS: dict[str, tuple[str, ...]] = {
    "minute": ("m", "min", "mins"), "hour": ("h", "hr", "hrs"), "day": ("d",),
    "week": ("w", "wk"),
}
UNIT_SECONDS: dict[str, int] = {"minute": 60, "hour": 3600, "day": 86_400,
                                "week": 7 * 86_400}

UNIVERSAL_GATES: dict[str, tuple[str, ...]] = {
    "cutover": ("cutover", "cut-over"),
    "live-cutover": ("live-cutover",),
    "rollback": ("rollback",),
}

EN = LanguageGrammar(
    language=Language.EN,
    triggers={
        C.STATUS: ("status", "progress", "how long", "time left", "where are we"),
        C.START: ("start*", "begin", "launch", "kick off"),
        C.PAUSE: ("pause*", "hold", "stop", "halt"),
        C.RESUME: ("resume*", "continue", "unpause"),
        C.ROLLBACK: ("rollback", "roll back", "roll-back", "revert*", "undo"),
        C.CANCEL: ("cancel*", "abort*", "stop", "halt"),
        C.APPROVE: ("approve*", "sign off"),
        C.REJECT: ("reject*", "decline", "deny"),
        C.REQUEST_APPROVAL: ("request* approval*", "ask* approval*"),
        C.REPORT: ("report*", "summary"),
        C.METRICS: ("metric*", "how many servers", "dashboard"),
        C.COSTS: ("cost*", "spend*"),
        C.SEARCH: ("search*", "look up", "find"),
        C.RUNBOOK: ("runbook*", "playbook*"),
        C.LESSONS_LEARNED: ("lesson*", "lesson* learn*"),
        C.ALERT_CONFIG: ("configure alert*", "alert* setting*", "alert* preference*",
                         "notification* setting*", "configure notification*"),
        C.MUTE: ("mute", "silence"),
        C.UNMUTE: ("unmute", "unsilence"),
    },
    stopwords=("the", "a", "an", "of", "to", "for", "all", "is", "are", "what", "what's",
               "whats", "please", "my", "me", "show", "give", "get", "now", "and", "in",
               "on", "migration", "migrations", "how", "much", "generate", "with", "this",
               "about", "it", "do", "can", "you", "i", "want", "from", "phase"),
    environments={Environment.STAGING: ("pre-production",)},
    periods={Period.WEEKLY: ("weekly", "week*"), Period.MONTHLY: ("monthly", "month*")},
    gates={"budget": ("budget",), "risk": ("risk",), "decommission": ("decommission*",)},
    phase_words=("phase",),
    negations=("not", "don't", "dont", "never", "do not"),
    conditionals=("if", "unless"),
    reason_markers=("because", "reason", "since"),
    duration_units={"minute": ("minute", "minutes"), "hour": ("hour", "hours"),
                    "day": ("day", "days"), "week": ("week", "weeks")},
    numbers={1: ("a", "an", "one"), 2: ("two",), 3: ("three",)},
    kinds={"wave_started": ("started",), "phase_failed": ("failed", "failure*"),
           "rollback": ("rollback*",), "wave_done": ("done", "completed", "finished"),
           "incident_opened": ("incident*",), "incident_healed": ("healed",),
           "approval_waiting": ("approval*",)},
    yes=("yes", "y", "yep", "confirm", "confirmed", "ok", "okay", "proceed", "go"),
    no=("no", "n", "nope", "cancel", "abort"),
    command_labels={
        C.STATUS: "show status", C.START: "start a migration", C.PAUSE: "pause",
        C.RESUME: "resume", C.ROLLBACK: "roll back", C.CANCEL: "cancel",
        C.APPROVE: "approve a gate", C.REJECT: "reject a gate",
        C.REQUEST_APPROVAL: "request approval", C.REPORT: "report", C.METRICS: "metrics",
        C.COSTS: "costs", C.SEARCH: "search", C.RUNBOOK: "runbook",
        C.LESSONS_LEARNED: "lessons learned", C.ALERT_CONFIG: "alert settings",
        C.MUTE: "mute notifications", C.UNMUTE: "unmute notifications",
    },
    slot_questions={
        "migration_id": "Which migration? Give its id, for example prod-migration-001.",
        "environment": "Which environment: production, staging, test or development?",
        "cloud": "Which cloud: AWS, Azure or GCP?",
        "region": "Which region of {cloud}? For example {example}.",
        "gate": "Which gate: for example phase-2, cutover, budget, risk or rollback?",
        "reason": 'What is the reason? Put it in quotes, for example '
                  'reject phase-2 "Need more testing".',
        "period": "Weekly or monthly?",
        "query": "What should I search for?",
    },
    messages={
        "empty": "What can I do for you? Try: status, start prod azure eastus, "
                 "pause <migration>, costs, report weekly.",
        "too_long": "That message is too long for a command. Please send a short one, "
                    "for example: status prod-migration-001.",
        "unknown_command": "I did not understand that. I can: {commands}.",
        "ambiguous_command": "Did you mean {options}? Please say which one.",
        "conflicting_slot": "You named more than one {slot} ({values}). Which one?",
        "region_not_in_cloud": "{region} is not a region of {cloud}. Which region of "
                               "{cloud}? For example {example}.",
        "unknown_region": "I do not know the region {region}. Which region? "
                          "For example {example}.",
        "conditional": "I cannot {command} on a condition. Say it without 'if' to do it "
                       "now, or use alert-config to be told when it happens.",
        "negated": "You asked me not to {command}. Nothing was done. What should I do?",
        "unknown_migration": "I do not know a migration called {value}. Which one? "
                             "Known: {known}.",
        "confirm": "Please confirm: {summary}. Reply yes to proceed or no to cancel.",
        "or": "or",
    },
)

DE = LanguageGrammar(
    language=Language.DE,
    triggers={
        C.STATUS: ("status", "stand", "zustand", "wie weit", "fortschritt*"),
        C.START: ("starte*", "starten", "beginn*", "loslegen"),
        C.PAUSE: ("pausier*", "anhalten", "halte an", "stopp*", "stoppe*"),
        C.RESUME: ("fortsetz*", "setze fort", "setz fort", "fortfahren", "weitermachen"),
        C.ROLLBACK: ("rollback", "zurückrollen", "zurücksetz*", "rückgängig",
                     "zurückführ*"),
        C.CANCEL: ("abbrech*", "brich ab", "storniere*", "abbruch", "stopp*", "stoppe*"),
        C.APPROVE: ("genehmig*", "freigeb*", "gib frei"),
        C.REJECT: ("ablehn*", "lehne ab", "lehn ab", "verweiger*"),
        C.REQUEST_APPROVAL: ("genehmigung* anfordern", "freigabe* anfordern",
                             "fordere genehmigung*", "fordere freigabe*",
                             "genehmigung* beantrag*", "freigabe* beantrag*"),
        C.REPORT: ("bericht*", "report*", "wochenbericht*", "monatsbericht*"),
        C.METRICS: ("metrik*", "kennzahl*", "messwert*", "wie viele server"),
        C.COSTS: ("kosten*",),
        C.SEARCH: ("such*", "durchsuch*", "finde"),
        C.RUNBOOK: ("runbook*", "betriebshandbuch*", "handbuch*", "ablaufplan*"),
        C.LESSONS_LEARNED: ("erkenntnis*", "lehren",),
        C.ALERT_CONFIG: ("alarm* konfigur*", "alarmeinstellung*", "warnung* konfigur*",
                         "benachrichtigung* einstell*", "benachrichtigungseinstellung*"),
        C.MUTE: ("stummschalt*", "stumm"),
        C.UNMUTE: ("stummschaltung* aufheb*", "stumm aufheb*", "laut schalt*"),
    },
    stopwords=("der", "die", "das", "den", "dem", "des", "ein", "eine", "einen", "und",
               "ist", "wie", "nach", "für", "bitte", "zeig", "zeige", "mir", "alle", "von",
               "mit", "auf", "jetzt", "migration", "migrationen", "erstelle", "durchführen",
               "führe", "aus", "ich", "möchte", "was", "gibt", "es", "im", "zu", "wegen"),
    environments={
        Environment.PRODUCTION: ("produktion*", "produktiv*"),
        Environment.STAGING: ("vorproduktion*",),
        Environment.TEST: ("test*",),
        Environment.DEVELOPMENT: ("entwicklung*",),
    },
    periods={Period.WEEKLY: ("wöchentlich*", "woche*", "wochenbericht*"),
             Period.MONTHLY: ("monatlich*", "monat*", "monatsbericht*")},
    gates={"budget": ("budget*",), "risk": ("risiko*",), "cutover": ("umstellung*",),
           "decommission": ("stilllegung*", "abschaltung*")},
    phase_words=("phase",),
    negations=("nicht", "kein", "keine", "niemals", "nie"),
    conditionals=("wenn", "falls", "sofern", "sobald"),
    reason_markers=("weil", "grund", "da", "denn"),
    duration_units={"minute": ("minute", "minuten"), "hour": ("stunde", "stunden", "std"),
                    "day": ("tag", "tage", "tagen"), "week": ("woche", "wochen")},
    numbers={1: ("ein", "eine", "einen", "einer", "eins"), 2: ("zwei",), 3: ("drei",)},
    kinds={"wave_started": ("gestartet",), "phase_failed": ("fehlgeschlag*",),
           "rollback": ("rollback*", "zurückgerollt"),
           "wave_done": ("fertig", "abgeschlossen"),
           "incident_opened": ("vorfall", "vorfälle*"), "incident_healed": ("behoben",),
           "approval_waiting": ("genehmigung*", "freigabe*")},
    severities={"critical": ("kritisch*",)},
    yes=("ja", "jawohl", "bestätigen", "bestätigt", "ok", "okay", "los"),
    no=("nein", "abbrechen", "nö"),
    command_labels={
        C.STATUS: "Status anzeigen", C.START: "Migration starten", C.PAUSE: "pausieren",
        C.RESUME: "fortsetzen", C.ROLLBACK: "zurückrollen", C.CANCEL: "abbrechen",
        C.APPROVE: "genehmigen", C.REJECT: "ablehnen",
        C.REQUEST_APPROVAL: "Genehmigung anfordern", C.REPORT: "Bericht",
        C.METRICS: "Kennzahlen", C.COSTS: "Kosten", C.SEARCH: "suchen",
        C.RUNBOOK: "Runbook", C.LESSONS_LEARNED: "Erkenntnisse",
        C.ALERT_CONFIG: "Alarmeinstellungen", C.MUTE: "stummschalten",
        C.UNMUTE: "Stummschaltung aufheben",
    },
    slot_questions={
        "migration_id": "Welche Migration? Bitte die Kennung nennen, z. B. "
                        "prod-migration-001.",
        "environment": "Welche Umgebung: Produktion, Staging, Test oder Entwicklung?",
        "cloud": "Welche Cloud: AWS, Azure oder GCP?",
        "region": "Welche Region von {cloud}? Zum Beispiel {example}.",
        "gate": "Welches Gate: z. B. phase-2, cutover, budget, risk oder rollback?",
        "reason": 'Mit welcher Begründung? Bitte in Anführungszeichen, z. B. '
                  'lehne phase-2 ab "Mehr Tests nötig".',
        "period": "Wöchentlich oder monatlich?",
        "query": "Wonach soll ich suchen?",
    },
    messages={
        "empty": "Was kann ich für Sie tun? Zum Beispiel: Status, starte prod azure "
                 "eastus, Kosten, Wochenbericht.",
        "too_long": "Die Nachricht ist für einen Befehl zu lang. Bitte kurz fassen, z. B.: "
                    "Status prod-migration-001.",
        "unknown_command": "Das habe ich nicht verstanden. Ich kann: {commands}.",
        "ambiguous_command": "Meinten Sie {options}? Bitte sagen Sie, was.",
        "conflicting_slot": "Sie haben mehr als ein(e) {slot} genannt ({values}). Welche?",
        "region_not_in_cloud": "{region} ist keine Region von {cloud}. Welche Region von "
                               "{cloud}? Zum Beispiel {example}.",
        "unknown_region": "Die Region {region} kenne ich nicht. Welche Region? "
                          "Zum Beispiel {example}.",
        "conditional": "Ich kann nicht unter einer Bedingung {command}. Ohne 'wenn' "
                       "geschieht es sofort; mit alert-config werden Sie benachrichtigt.",
        "negated": "Sie wollten nicht {command}. Es wurde nichts getan. Was soll ich tun?",
        "unknown_migration": "Eine Migration namens {value} kenne ich nicht. Welche? "
                             "Bekannt: {known}.",
        "confirm": "Bitte bestätigen: {summary}. Antworten Sie ja zum Ausführen oder "
                   "nein zum Abbrechen.",
        "or": "oder",
    },
    letters="ßä",
)

ES = LanguageGrammar(
    language=Language.ES,
    triggers={
        C.STATUS: ("estado*", "status", "progreso", "cuanto falta", "cuánto tiempo"),
        C.START: ("inicia*", "comienza*", "arranca*", "empieza*", "lanza*"),
        C.PAUSE: ("pausa*", "detén", "deten*"),
        C.RESUME: ("reanuda*", "continúa*", "continua*"),
        C.ROLLBACK: ("rollback", "revierte", "revertir", "reversión", "deshaz", "deshacer"),
        C.CANCEL: ("cancela*", "aborta*", "detén", "deten*"),
        C.APPROVE: ("aprueba*", "aprobar", "aprobad*", "autoriza*"),
        C.REJECT: ("rechaza*", "deniega*"),
        C.REQUEST_APPROVAL: ("solicit* aprobación*", "pide* aprobación*",
                             "solicit* autorización*"),
        C.REPORT: ("informe*", "reporte*", "resumen"),
        C.METRICS: ("métrica*", "cuántos servidores", "indicador*"),
        C.COSTS: ("costo*", "coste*", "gasto*"),
        C.SEARCH: ("busca*",),
        C.RUNBOOK: ("runbook*", "procedimiento*", "manual*"),
        C.LESSONS_LEARNED: ("lecciones", "lección* aprendid*"),
        C.ALERT_CONFIG: ("configura* alerta*", "configura* notificacion*",
                         "ajustes alerta*", "preferencias alerta*"),
        C.MUTE: ("silencia*",),
        C.UNMUTE: ("quita* silencio", "reactiva*", "desilencia*"),
    },
    stopwords=("el", "la", "los", "las", "de", "del", "un", "una", "y", "es", "a", "al",
               "para", "por", "favor", "muestra", "muéstrame", "todas", "todos", "ahora",
               "migración", "migraciones", "cuál", "qué", "genera", "hacia", "en", "con",
               "me", "mi", "quiero", "sobre", "lo", "se"),
    environments={
        Environment.PRODUCTION: ("producción*", "productivo*"),
        Environment.STAGING: ("preproducción*",),
        Environment.TEST: ("prueba*",),
        Environment.DEVELOPMENT: ("desarrollo*",),
    },
    periods={Period.WEEKLY: ("semanal*", "semana*"), Period.MONTHLY: ("mensual*", "mes")},
    gates={"budget": ("presupuesto*",), "risk": ("riesgo*",), "cutover": ("corte",),
           "decommission": ("desmantel*", "retirada")},
    phase_words=("fase",),
    negations=("no", "nunca", "jamás"),
    conditionals=("si", "cuando"),
    reason_markers=("porque", "motivo", "razón"),
    duration_units={"minute": ("minuto", "minutos"), "hour": ("hora", "horas"),
                    "day": ("día", "días"), "week": ("semana", "semanas")},
    numbers={1: ("un", "una", "uno"), 2: ("dos",), 3: ("tres",)},
    kinds={"wave_started": ("iniciada*",), "phase_failed": ("fallid*", "fallo*"),
           "rollback": ("rollback*", "reversion*"),
           "wave_done": ("completad*", "terminad*"),
           "incident_opened": ("incidente*", "incidencia*"),
           "incident_healed": ("resuelt*",), "approval_waiting": ("aprobaci*",)},
    severities={"critical": ("crític*",), "warning": ("advertencia*",)},
    yes=("sí", "si", "confirmo", "confirmar", "vale", "ok", "adelante"),
    no=("no", "cancelar", "nada"),
    command_labels={
        C.STATUS: "ver el estado", C.START: "iniciar una migración", C.PAUSE: "pausar",
        C.RESUME: "reanudar", C.ROLLBACK: "revertir", C.CANCEL: "cancelar",
        C.APPROVE: "aprobar", C.REJECT: "rechazar",
        C.REQUEST_APPROVAL: "solicitar aprobación", C.REPORT: "informe",
        C.METRICS: "métricas", C.COSTS: "costes", C.SEARCH: "buscar",
        C.RUNBOOK: "runbook", C.LESSONS_LEARNED: "lecciones aprendidas",
        C.ALERT_CONFIG: "configurar alertas", C.MUTE: "silenciar",
        C.UNMUTE: "reactivar notificaciones",
    },
    slot_questions={
        "migration_id": "¿Qué migración? Indique su id, por ejemplo prod-migration-001.",
        "environment": "¿Qué entorno: producción, staging, pruebas o desarrollo?",
        "cloud": "¿Qué nube: AWS, Azure o GCP?",
        "region": "¿Qué región de {cloud}? Por ejemplo {example}.",
        "gate": "¿Qué puerta: por ejemplo phase-2, cutover, budget, risk o rollback?",
        "reason": '¿Por qué motivo? Escríbalo entre comillas, por ejemplo '
                  'rechaza phase-2 "Faltan pruebas".',
        "period": "¿Semanal o mensual?",
        "query": "¿Qué debo buscar?",
    },
    messages={
        "empty": "¿En qué puedo ayudar? Por ejemplo: estado, inicia prod azure eastus, "
                 "costes, informe semanal.",
        "too_long": "El mensaje es demasiado largo para un comando. Envíe uno corto, "
                    "por ejemplo: estado prod-migration-001.",
        "unknown_command": "No lo he entendido. Puedo: {commands}.",
        "ambiguous_command": "¿Quiere decir {options}? Indique cuál.",
        "conflicting_slot": "Ha indicado más de un valor de {slot} ({values}). ¿Cuál?",
        "region_not_in_cloud": "{region} no es una región de {cloud}. ¿Qué región de "
                               "{cloud}? Por ejemplo {example}.",
        "unknown_region": "No conozco la región {region}. ¿Qué región? "
                          "Por ejemplo {example}.",
        "conditional": "No puedo {command} bajo una condición. Dígalo sin 'si' para "
                       "hacerlo ahora, o use alert-config para recibir un aviso.",
        "negated": "Ha pedido no {command}. No se ha hecho nada. ¿Qué debo hacer?",
        "unknown_migration": "No conozco ninguna migración llamada {value}. ¿Cuál? "
                             "Conocidas: {known}.",
        "confirm": "Confirme, por favor: {summary}. Responda sí para continuar o no "
                   "para cancelar.",
        "or": "o",
    },
    letters="ñ¿¡",
)

HU = LanguageGrammar(
    language=Language.HU,
    triggers={
        C.STATUS: ("állapot*", "státusz*", "hol tart*", "mennyi idő", "mennyi van hátra"),
        C.START: ("indít*", "elindít*", "kezdd", "kezdj*", "indul*"),
        C.PAUSE: ("szünetel*", "szüneteld", "állítsd le", "állítsd meg", "leállít*"),
        C.RESUME: ("folytat*", "folytasd"),
        C.ROLLBACK: ("rollback", "visszaállít*", "visszagörget*", "vissza"),
        C.CANCEL: ("megszakít*", "szakíts* meg", "szakíts* félbe", "állítsd le",
                   "leállít*", "töröld"),
        C.APPROVE: ("jóváhagy*", "hagyd jóvá", "engedélyez*"),
        C.REJECT: ("elutasít*", "utasítsd el"),
        C.REQUEST_APPROVAL: ("kér* jóváhagyás*", "jóváhagyás* kér*"),
        C.REPORT: ("jelentés*", "riport*", "beszámoló*"),
        C.METRICS: ("metrik*", "mérőszám*", "hány szerver*"),
        C.COSTS: ("költség*",),
        C.SEARCH: ("keres*", "keress"),
        C.RUNBOOK: ("runbook*", "forgatókönyv*", "kézikönyv*"),
        C.LESSONS_LEARNED: ("tanulság*",),
        C.ALERT_CONFIG: ("riasztás* beállít*", "értesítés* beállít*"),
        C.MUTE: ("némít*", "elnémít*", "némítsd"),
        C.UNMUTE: ("némítás* felold*", "oldd némítás*", "kapcsold vissza értesítés*"),
    },
    stopwords=("a", "az", "és", "van", "el", "meg", "le", "fel", "ki", "be", "mutasd",
               "kérlem", "kérem", "most", "összes", "minden", "migráció*", "mennyi",
               "hány", "hol", "mi", "hogy", "nekem", "egy", "is", "mert", "ezt", "azt",
               "legyen", "vagy", "igen", "migrálva"),
    environments={
        Environment.PRODUCTION: ("éles*", "produkci*"),
        Environment.TEST: ("teszt*",),
        Environment.DEVELOPMENT: ("fejleszt*",),
    },
    periods={Period.WEEKLY: ("heti", "hét*"), Period.MONTHLY: ("havi", "hónap*")},
    gates={"budget": ("költségkeret*", "keret*"), "risk": ("kockázat*",),
           "cutover": ("átállás*",), "decommission": ("leszerel*", "megszüntetés*")},
    phase_words=("fázis", "fázist", "fázisát", "szakasz", "szakaszt"),
    negations=("ne", "nem", "soha"),
    conditionals=("ha", "amennyiben"),
    reason_markers=("mert", "indok*"),
    duration_units={"minute": ("perc", "percre", "percig", "percet"),
                    "hour": ("óra", "órára", "óráig", "órát"),
                    "day": ("nap", "napra", "napig", "napot"),
                    "week": ("hét", "hétre", "hétig", "hetet", "hetre", "hetig")},
    numbers={1: ("egy",), 2: ("két", "kettő"), 3: ("három",)},
    kinds={"wave_started": ("elindult*",), "phase_failed": ("sikertelen*",),
           "rollback": ("rollback*", "visszaállítás*"),
           "wave_done": ("kész", "befejez*"),
           "incident_opened": ("incidens*",), "incident_healed": ("megoldott*",),
           "approval_waiting": ("jóváhagyás*",)},
    severities={"critical": ("kritikus*",), "warning": ("figyelmeztet*",)},
    yes=("igen", "mehet", "rendben", "ok", "oké", "jóváhagyom"),
    no=("nem", "mégse", "ne"),
    command_labels={
        C.STATUS: "állapot", C.START: "migráció indítása", C.PAUSE: "szüneteltetés",
        C.RESUME: "folytatás", C.ROLLBACK: "visszaállítás", C.CANCEL: "megszakítás",
        C.APPROVE: "jóváhagyás", C.REJECT: "elutasítás",
        C.REQUEST_APPROVAL: "jóváhagyás kérése", C.REPORT: "jelentés",
        C.METRICS: "mérőszámok", C.COSTS: "költségek", C.SEARCH: "keresés",
        C.RUNBOOK: "runbook", C.LESSONS_LEARNED: "tanulságok",
        C.ALERT_CONFIG: "riasztások beállítása", C.MUTE: "némítás",
        C.UNMUTE: "némítás feloldása",
    },
    slot_questions={
        "migration_id": "Melyik migráció? Add meg az azonosítóját, például "
                        "prod-migration-001.",
        "environment": "Melyik környezet: éles, staging, teszt vagy fejlesztői?",
        "cloud": "Melyik felhő: AWS, Azure vagy GCP?",
        "region": "A(z) {cloud} melyik régiója? Például {example}.",
        "gate": "Melyik kapu: például phase-2, cutover, budget, risk vagy rollback?",
        "reason": 'Mi az indok? Írd idézőjelbe, például: utasítsd el a phase-2-t '
                  '"Több teszt kell".',
        "period": "Heti vagy havi?",
        "query": "Mit keressek?",
    },
    messages={
        "empty": "Miben segíthetek? Például: állapot, indítsd prod azure eastus, "
                 "költségek, heti jelentés.",
        "too_long": "Ez az üzenet túl hosszú egy parancshoz. Kérlek, írj röviden, "
                    "például: állapot prod-migration-001.",
        "unknown_command": "Ezt nem értettem. Amit tudok: {commands}.",
        "ambiguous_command": "Erre gondoltál: {options}? Kérlek, mondd meg, melyikre.",
        "conflicting_slot": "Több {slot} értéket adtál meg ({values}). Melyiket?",
        "region_not_in_cloud": "A(z) {region} nem a(z) {cloud} régiója. A(z) {cloud} "
                               "melyik régiója? Például {example}.",
        "unknown_region": "Nem ismerem a(z) {region} régiót. Melyik régió? "
                          "Például {example}.",
        "conditional": "Feltételhez kötve nem tudom ezt végrehajtani ({command}). "
                       "Mondd 'ha' nélkül, vagy állíts be riasztást (alert-config).",
        "negated": "Azt kérted, hogy ne: {command}. Nem történt semmi. Mit tegyek?",
        "unknown_migration": "Nem ismerek {value} nevű migrációt. Melyikre gondoltál? "
                             "Ismertek: {known}.",
        "confirm": "Kérlek, erősítsd meg: {summary}. Válaszolj igennel a folytatáshoz "
                   "vagy nemmel a megszakításhoz.",
        "or": "vagy",
    },
    letters="őű",
)

GRAMMARS: dict[Language, LanguageGrammar] = {g.language: g for g in (EN, DE, ES, HU)}

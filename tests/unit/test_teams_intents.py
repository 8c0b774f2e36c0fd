"""The Teams grammar: the plan's commands and phrasings in four languages, and the cases
it must ask back instead of acting (ambiguous, incomplete, negated, conditional)."""

from __future__ import annotations

import pytest

from migrationbox.teams import (
    Clarification,
    Command,
    Intent,
    Language,
    ParseContext,
    confirmation_question,
    detect_language,
    parse,
    parse_confirmation,
)
from migrationbox.teams.grammar import GRAMMARS
from migrationbox.teams.models import COMMAND_SPECS, DESTRUCTIVE, ClarificationReason, Cloud

ID = "prod-migration-001"
EN, DE, ES, HU = Language.EN, Language.DE, Language.ES, Language.HU


def intent(text: str, ctx: ParseContext | None = None) -> Intent:
    result = parse(text, ctx)
    assert isinstance(result, Intent), f"{text!r} -> {result}"
    return result


def question(text: str, ctx: ParseContext | None = None) -> Clarification:
    result = parse(text, ctx)
    assert isinstance(result, Clarification), f"{text!r} -> {result}"
    return result


# The plan's command list (component 1), as typed after @MigrationBox.
PLAN_COMMANDS = [
    ("@MigrationBox status", Command.STATUS, {}),
    (f"@MigrationBox status {ID}", Command.STATUS, {"migration_id": ID}),
    ("@MigrationBox start prod azure eastus", Command.START,
     {"environment": "production", "cloud": "azure", "region": "eastus"}),
    (f"@MigrationBox pause {ID}", Command.PAUSE, {"migration_id": ID}),
    (f"@MigrationBox resume {ID}", Command.RESUME, {"migration_id": ID}),
    (f"@MigrationBox rollback {ID}", Command.ROLLBACK, {"migration_id": ID}),
    (f"@MigrationBox cancel {ID}", Command.CANCEL, {"migration_id": ID}),
    (f"@MigrationBox approve phase-2 {ID}", Command.APPROVE,
     {"gate": "phase-2", "migration_id": ID}),
    (f'@MigrationBox reject phase-2 "Need more testing" {ID}', Command.REJECT,
     {"gate": "phase-2", "reason": "Need more testing", "migration_id": ID}),
    (f"@MigrationBox request-approval cutover {ID}", Command.REQUEST_APPROVAL,
     {"gate": "cutover", "migration_id": ID}),
    ("@MigrationBox report weekly", Command.REPORT, {"period": "weekly"}),
    ("@MigrationBox report monthly", Command.REPORT, {"period": "monthly"}),
    (f"@MigrationBox metrics {ID}", Command.METRICS, {"migration_id": ID}),
    ("@MigrationBox costs", Command.COSTS, {}),
    ('@MigrationBox search "ssl certificate issues"', Command.SEARCH,
     {"query": "ssl certificate issues"}),
    ("@MigrationBox runbook database-migration", Command.RUNBOOK,
     {"query": "database-migration"}),
    ("@MigrationBox lessons-learned", Command.LESSONS_LEARNED, {}),
    ("@MigrationBox alert-config", Command.ALERT_CONFIG, {}),
    (f"@MigrationBox mute {ID}", Command.MUTE, {"migration_id": ID}),
    (f"@MigrationBox unmute {ID}", Command.UNMUTE, {"migration_id": ID}),
]


@pytest.mark.parametrize(("text", "command", "slots"), PLAN_COMMANDS,
                         ids=[t for t, _, _ in PLAN_COMMANDS])
def test_the_plans_twenty_commands(text: str, command: Command, slots: dict) -> None:
    got = intent(text)
    assert got.command == command
    assert got.slots.model_dump(mode="json", exclude_none=True) == slots
    assert got.needs_confirmation == (command in DESTRUCTIVE)
    assert got.inferred == []


def test_every_command_has_a_spec_and_a_label_in_every_language() -> None:
    covered = {c for _, c, _ in PLAN_COMMANDS}
    assert covered == set(Command) == set(COMMAND_SPECS)
    for grammar in GRAMMARS.values():
        assert set(grammar.command_labels) == set(Command)
        assert set(grammar.triggers) == set(Command)


def test_teams_markup_around_the_mention_is_ignored() -> None:
    got = intent(f"<at>MigrationBox</at>&nbsp;<p>pause <b>{ID}</b></p>")
    assert (got.command, got.slots.migration_id) == (Command.PAUSE, ID)


# The plan's example phrasings (component 2) and more, per language.
PHRASINGS = [
    (EN, "Start production migration to AWS us-east-1", Command.START,
     {"environment": "production", "cloud": "aws", "region": "us-east-1"}),
    (EN, f"Pause migration {ID}", Command.PAUSE, {"migration_id": ID}),
    (EN, "What's the status of all migrations?", Command.STATUS, {}),
    (EN, "Generate weekly report", Command.REPORT, {"period": "weekly"}),
    (EN, "search for ssl problems", Command.SEARCH, {"query": "ssl problems"}),
    (EN, "approve rollback prod-7", Command.APPROVE,
     {"gate": "rollback", "migration_id": "prod-7"}),
    (EN, "reject phase 3 for prod-7 because the smoke tests failed", Command.REJECT,
     {"gate": "phase-3", "migration_id": "prod-7", "reason": "the smoke tests failed"}),
    (EN, "ask for approval of the budget for prod-7", Command.REQUEST_APPROVAL,
     {"gate": "budget", "migration_id": "prod-7"}),
    (DE, "Starte die Produktionsmigration nach Azure westeurope", Command.START,
     {"environment": "production", "cloud": "azure", "region": "westeurope"}),
    (DE, "Wie ist der Status der Migration?", Command.STATUS, {}),
    (DE, "Zeige mir die Kosten", Command.COSTS, {}),
    (DE, "Erstelle den Wochenbericht", Command.REPORT, {"period": "weekly"}),
    (DE, "pausiere prod-7", Command.PAUSE, {"migration_id": "prod-7"}),
    (DE, "lehne phase-2 für prod-7 ab weil Tests fehlen", Command.REJECT,
     {"gate": "phase-2", "migration_id": "prod-7", "reason": "Tests fehlen"}),
    (DE, "Stummschaltung aufheben für prod-7", Command.UNMUTE, {"migration_id": "prod-7"}),
    (ES, "Inicia la migración de producción a Azure en westeurope", Command.START,
     {"environment": "production", "cloud": "azure", "region": "westeurope"}),
    (ES, "Genera el informe mensual", Command.REPORT, {"period": "monthly"}),
    (ES, "reanuda prod-7", Command.RESUME, {"migration_id": "prod-7"}),
    (ES, "muéstrame los costes de prod-7", Command.COSTS, {"migration_id": "prod-7"}),
    (ES, 'rechaza la fase 2 de prod-7 "faltan pruebas"', Command.REJECT,
     {"gate": "phase-2", "migration_id": "prod-7", "reason": "faltan pruebas"}),
    (ES, "¿Cuál es el estado de la migración?", Command.STATUS, {}),
    (HU, "Indítsd el a production migrációt Azure-ra eastus", Command.START,
     {"environment": "production", "cloud": "azure", "region": "eastus"}),
    (HU, "Mennyi idő van hátra?", Command.STATUS, {}),
    (HU, "Hány szerver van migrálva?", Command.METRICS, {}),
    (HU, "Mutasd a költségeket", Command.COSTS, {}),
    (HU, "Kérj jóváhagyást az átálláshoz prod-7", Command.REQUEST_APPROVAL,
     {"gate": "cutover", "migration_id": "prod-7"}),
    (HU, "hagyd jóvá a 2. fázist prod-7", Command.APPROVE,
     {"gate": "phase-2", "migration_id": "prod-7"}),
    (HU, "Készíts heti jelentést", Command.REPORT, {"period": "weekly"}),
    (HU, "oldd fel a némítást", Command.UNMUTE, {}),
]


@pytest.mark.parametrize(("language", "text", "command", "slots"), PHRASINGS,
                         ids=[t for _, t, _, _ in PHRASINGS])
def test_phrasings_in_four_languages(language: Language, text: str, command: Command,
                                     slots: dict) -> None:
    got = intent(text)
    assert got.language == language
    assert got.command == command
    assert got.slots.model_dump(mode="json", exclude_none=True) == slots


@pytest.mark.parametrize(("text", "reason"), [
    ("reject phase-2 Need more testing for prod-1", "Need more testing"),
    ("reject phase-2 prod-1 Need more testing", "Need more testing"),
    ("lehne phase-2 ab Tests fehlen noch prod-1", "Tests fehlen noch"),
    ("rechaza la fase 2 de prod-1 porque faltan pruebas", "faltan pruebas"),
    ("utasítsd el a 2. fázist prod-1 mert hiányzik a teszt", "hiányzik a teszt"),
])
def test_a_reason_without_quotes_is_the_free_text_around_the_values(text: str,
                                                                    reason: str) -> None:
    got = intent(text)
    assert (got.command, got.slots.gate, got.slots.migration_id, got.slots.reason) == (
        Command.REJECT, "phase-2", "prod-1", reason)


def test_a_dangling_connector_is_not_a_reason() -> None:
    assert question("reject phase-2 for prod-1").missing == ["reason"]
    assert question("lehne phase-2 für prod-1 ab").missing == ["reason"]


def test_a_search_may_come_before_its_verb() -> None:
    assert intent("ssl hibákra keress").slots.query == "ssl hibákra"


def test_accents_are_optional() -> None:
    assert intent("Inditsd el a production migraciot Azure-ra eastus").command == Command.START
    assert intent("Mutasd a koltsegeket").command == Command.COSTS


def test_context_fills_the_channels_migration_and_the_default_region() -> None:
    ctx = ParseContext(migration_id="prod-7", default_regions={Cloud.AZURE: "westeurope"})
    got = intent("Indítsd el a production migrációt Azure-ra", ctx)
    assert got.slots.region == "westeurope" and got.inferred == ["region"]
    got = intent("Rollback durchführen", ctx)
    assert (got.command, got.slots.migration_id, got.language) == (
        Command.ROLLBACK, "prod-7", DE)
    assert got.inferred == ["migration_id"] and got.needs_confirmation


def test_known_ids_are_found_even_with_a_hungarian_ending() -> None:
    ctx = ParseContext(known_migration_ids=("acme",))
    assert intent("status acme", ctx).slots.migration_id == "acme"
    assert intent("szüneteltesd az acme-t", ctx).slots.migration_id == "acme"


def test_region_alone_names_its_cloud() -> None:
    got = intent("start staging us-east-1")
    assert got.slots.cloud == Cloud.AWS and got.inferred == ["cloud"]


# ---------------------------------------------------------------------------- asked back


@pytest.mark.parametrize(("text", "language", "reason", "missing"), [
    ("Starte die Produktionsmigration nach Azure", DE, "missing_slot", ["region"]),
    ("Indítsd el a production migrációt Azure-ra", HU, "missing_slot", ["region"]),
    ("start prod", EN, "missing_slot", ["cloud", "region"]),
    ("Rollback durchführen", DE, "missing_slot", ["migration_id"]),
    ("approve phase-2", EN, "missing_slot", ["migration_id"]),
    (f"reject phase-2 {ID}", EN, "missing_slot", ["reason"]),
    ("Genera el informe", ES, "missing_slot", ["period"]),
    ("search", EN, "missing_slot", ["query"]),
])
def test_incomplete_commands_ask_for_what_is_missing(text: str, language: Language,
                                                     reason: str, missing: list) -> None:
    got = question(text)
    assert (got.language, got.reason, got.missing) == (language, reason, missing)
    assert got.question


def test_questions_are_in_the_users_language() -> None:
    assert question("Rollback durchführen").question.startswith("Welche Migration?")
    assert question("Indítsd el a production migrációt Azure-ra").question.startswith(
        "A(z) AZURE melyik régiója?")
    assert question("Genera el informe").question == "¿Semanal o mensual?"
    assert question("report").question == "Weekly or monthly?"


@pytest.mark.parametrize(("text", "options"), [
    (f"stop {ID}", [Command.PAUSE, Command.CANCEL]),
    ("Állítsd le és vissza", [Command.PAUSE, Command.ROLLBACK, Command.CANCEL]),
    (f"pause {ID} and show the costs", [Command.PAUSE, Command.COSTS]),
])
def test_ambiguous_text_offers_the_candidates_and_does_nothing(text: str,
                                                               options: list) -> None:
    got = question(text)
    assert got.reason == ClarificationReason.AMBIGUOUS_COMMAND
    assert got.options == options
    assert got.command is None


def test_hungarian_stop_and_back_is_asked_in_hungarian() -> None:
    got = question("Állítsd le és vissza")
    assert got.language == HU
    assert "visszaállítás" in got.question and "vagy" in got.question


@pytest.mark.parametrize(("text", "reason"), [
    ("Rollback if error rate exceeds 5%", "conditional"),
    (f"don't cancel {ID}", "negated"),
    (f"nicht zurückrollen {ID}", "negated"),
    (f"no canceles {ID}", "negated"),
    (f"ha hiba van, állítsd vissza {ID}", "conditional"),
])
def test_negated_or_conditional_actions_are_not_run(text: str, reason: str) -> None:
    got = question(text)
    assert got.reason == reason


@pytest.mark.parametrize(("text", "reason"), [
    ("start prod azure us-east-1", "region_not_in_cloud"),
    ("start prod aws eu-nowhere-9", "unknown_region"),
    ("start prod aws azure eastus", "conflicting_slot"),
    ("pause prod-1 prod-2", "conflicting_slot"),
    ("hello there", "unknown_command"),
    ("", "empty"),
    ("   \x00\x07  ", "empty"),
    ("status " * 400, "too_long"),
    ("please " * 70 + "status", "too_long"),
])
def test_wrong_or_unclear_values_are_asked_back(text: str, reason: str) -> None:
    assert question(text).reason == reason


def test_non_text_input_is_a_question_not_an_error() -> None:
    assert question(None).reason == "empty"  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- language


@pytest.mark.parametrize(("text", "language"), [
    ("Wie ist der Status der Migration?", DE),
    ("Mutasd a költségeket", HU),
    ("¿Cuál es el estado?", ES),
    ("What's the status?", EN),
    ("Straße", DE),
])
def test_language_detection(text: str, language: Language) -> None:
    assert detect_language(text) == language


def test_locale_breaks_ties_and_fills_in_for_unknown_words() -> None:
    assert detect_language(f"status {ID}") == EN
    assert detect_language(f"status {ID}", "de-DE") == DE
    assert detect_language("xyzzy", "hu-HU") == HU
    assert question("xyzzy", ParseContext(locale="es-ES")).language == ES


# ---------------------------------------------------------------------------- confirmation


def test_destructive_commands_need_confirmation_in_the_users_language() -> None:
    got = intent("Indítsd el a production migrációt Azure-ra eastus")
    assert got.needs_confirmation
    text = confirmation_question(got)
    assert text.startswith("Kérlek, erősítsd meg: migráció indítása")
    assert "eastus" in text and "igennel" in text
    assert not intent(f"pause {ID}").needs_confirmation


@pytest.mark.parametrize(("answer", "expected"), [
    ("yes", True), ("Igen", True), ("ja", True), ("sí", True), ("OK", True),
    ("no", False), ("nein", False), ("nem", False), ("mégse", False),
    ("maybe", None), ("yes no", None), ("", None), ("yes, rollback everything", None),
])
def test_confirmation_answers(answer: str, expected: bool | None) -> None:
    assert parse_confirmation(answer) is expected


# ---------------------------------------------------------------------------- durations


@pytest.mark.parametrize(("text", "seconds", "migration"), [
    ("mute prod-7 30m", 1800, "prod-7"),
    ("mute 2h", 7200, None),
    ("mute 1d", 86_400, None),
    ("mute 90 min", 5400, None),
    ("mute 1h30m", 5400, None),
    ("mute 1 hour 30 minutes", 5400, None),
    ("mute for an hour", 3600, None),
    ("mute prod-7 for 2 hours", 7200, "prod-7"),
    ("mute 2 Stunden", 7200, None),
    ("schalte prod-7 für 2 Stunden stumm", 7200, "prod-7"),
    ("silencia prod-7 durante 2 horas", 7200, "prod-7"),
    ("némítsd a prod-7 migrációt 2 órára", 7200, "prod-7"),
    ("némítsd 2 óra", 7200, None),
    ("mute 99999999d", 366 * 86_400, None),  # read as the longest duration, not an id
])
def test_a_duration_is_a_slot_never_a_migration_id(text: str, seconds: int,
                                                   migration: str | None) -> None:
    got = intent(text)
    assert got.command == Command.MUTE
    assert (got.slots.duration, got.slots.migration_id) == (seconds, migration)


def test_a_duration_is_not_an_id_for_other_commands_either() -> None:
    assert intent("status 30m").slots.migration_id is None
    # a known migration that looks like a duration stays that migration
    assert intent("status 2h", ParseContext(known_migration_ids=("2h",))).slots.migration_id \
        == "2h"


# ---------------------------------------------------------------------------- alert-config


@pytest.mark.parametrize(("text", "severity", "kinds", "migration"), [
    ("alert-config P2", "P2", None, None),
    ("alert-config p4", "P4", None, None),
    ("alert-config critical", "critical", None, None),
    ("alert-config wave_done", None, ("wave_done",), None),
    ("alert-config wave-done incident_healed", None, ("wave_done", "incident_healed"),
     None),
    ('alert-config prod-7 "rollback incidents P2"', "P2", ("rollback", "incident_opened"),
     "prod-7"),
    ("alert-config prod-7 rollback incidents P2", "P2", ("rollback", "incident_opened"),
     "prod-7"),
    ('Alarme konfigurieren "Vorfälle kritisch"', "critical", ("incident_opened",), None),
    ("configura alertas incidentes P1", "P1", ("incident_opened",), None),
    ('riasztások beállítása "rollback P2"', "P2", ("rollback",), None),
])
def test_alert_config_takes_severity_and_kinds_as_slots(text: str, severity: str | None,
                                                        kinds: tuple | None,
                                                        migration: str | None) -> None:
    got = intent(text)
    assert got.command == Command.ALERT_CONFIG
    assert (got.slots.severity, got.slots.kinds, got.slots.migration_id) == (
        severity, kinds, migration)


def test_the_grammar_knows_the_notifiers_kinds() -> None:
    from migrationbox.teams.grammar import NOTIFICATION_KINDS
    from migrationbox.teams.notifier import NOTIFICATION_KINDS as NOTIFIER_KINDS

    assert NOTIFICATION_KINDS == NOTIFIER_KINDS


@pytest.mark.parametrize("kind", ["wave_started", "phase_failed", "wave_done",
                                  "incident_opened", "incident_healed", "approval_waiting"])
def test_a_notification_kind_is_never_a_migration_id(kind: str) -> None:
    assert intent(f"alert-config {kind}").slots == intent(f'alert-config "{kind}"').slots
    assert intent(f"alert-config {kind}").slots.kinds == (kind,)
    assert intent(f"status {kind}").slots.migration_id is None
    assert intent(f"mute {kind} 2h").slots.kinds == (kind,)


def test_two_severities_are_asked_back() -> None:
    got = question("alert-config P1 info")
    assert got.reason == ClarificationReason.CONFLICTING_SLOT and "P1" in got.question


# ---------------------------------------------------------------------------- languages


@pytest.mark.parametrize("text", ["szakítsd meg a prod-7 migrációt", "szakitsd meg prod-7",
                                  "Szakítsd meg prod-7", "szakítsd félbe a prod-7 migrációt"])
def test_hungarian_szakitsd_meg_is_cancel(text: str) -> None:
    got = intent(text)
    assert (got.command, got.language, got.slots.migration_id) == (
        Command.CANCEL, HU, "prod-7")
    assert got.needs_confirmation


def test_hungarian_cancel_is_not_mistaken_for_pause() -> None:
    # "állítsd meg" (pause) shares "meg"; each stays its own command
    assert intent("állítsd meg a prod-7 migrációt").command == Command.PAUSE
    assert question("ne szakítsd meg a prod-7 migrációt").reason == "negated"


@pytest.mark.parametrize(("text", "command"), [
    ("cancela prod-7", Command.CANCEL), ("cancelar prod-7", Command.CANCEL),
    ("pausa prod-7", Command.PAUSE), ("reanuda prod-7", Command.RESUME),
    ("inicia prod aws us-east-1", Command.START),
    ("iniciar prod aws us-east-1", Command.START),
    ("aprueba cutover prod-7", Command.APPROVE),
    ('rechaza cutover prod-7 "faltan pruebas"', Command.REJECT),
    ("aborta prod-7", Command.CANCEL),
])
def test_spanish_imperatives_are_spanish(text: str, command: Command) -> None:
    got = intent(text)
    assert (got.language, got.command) == (ES, command)


def test_a_longer_stem_wins_language_detection_but_not_shared_words() -> None:
    assert detect_language("cancel prod-7") == EN
    assert detect_language("starten") == DE
    assert detect_language("status") == EN  # shared by en, de, es: the first
    assert detect_language("status", "es-ES") == ES


# ---------------------------------------------------------------------------- voice ids

VOICE = ParseContext(known_migration_ids=("acme", "atlas-2", "prod-7"), known_ids_only=True)


def test_without_the_flag_an_unknown_hyphenated_word_is_an_id() -> None:
    assert intent("pausiere Saiga-Mir-Behörter").slots.migration_id == "Saiga-Mir-Behörter"


def test_known_ids_only_asks_back_for_a_misheard_word() -> None:
    got = question("pausiere Saiga-Mir-Behörter", VOICE)
    assert got.reason == ClarificationReason.UNKNOWN_MIGRATION
    assert got.command == Command.PAUSE and got.language == DE
    assert "Saiga-Mir-Behörter" in got.question and "acme, atlas-2, prod-7" in got.question
    # not even the channel's migration is taken instead of what was said
    ctx = VOICE.model_copy(update={"migration_id": "acme"})
    assert question("pause Saiga-Mir-Behörter", ctx).reason == "unknown_migration"


@pytest.mark.parametrize(("text", "migration"), [
    ("pause the Acne migration", "acme"),
    ("pause ACME", "acme"),
    ("status atlas 2", "atlas-2"),
    ("status Atlas2", "atlas-2"),
    ("pause prod 7", "prod-7"),
    ("status atlas two", "atlas-2"),
    ("pausiere atlas zwei", "atlas-2"),
    ("pause prod-7", "prod-7"),
])
def test_known_ids_only_takes_known_ids_and_unambiguous_close_matches(
        text: str, migration: str) -> None:
    assert intent(text, VOICE).slots.migration_id == migration


def test_a_close_match_must_keep_the_digits_and_be_unambiguous() -> None:
    assert question("pause prod-8", VOICE).reason == "unknown_migration"
    near = ParseContext(known_migration_ids=("acme", "acne"), known_ids_only=True)
    assert intent("pause acme", near).slots.migration_id == "acme"  # exact wins
    both = ParseContext(known_migration_ids=("acma", "acmo"), known_ids_only=True)
    assert question("pause acme", both).missing == ["migration_id"]


def test_known_ids_only_without_known_ids_takes_none() -> None:
    ctx = ParseContext(known_ids_only=True)
    assert question("pause prod-7", ctx).reason == "unknown_migration"
    assert intent("status", ctx).slots.migration_id is None
    assert intent("mute 2h", ctx).slots.duration == 7200

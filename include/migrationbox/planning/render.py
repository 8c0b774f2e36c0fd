"""Human-readable rendering of a plan, shaped like the product plan's example:

    Wave 2 (Day 1-2): Data tier (production) (depends on Wave 1)
      - postgresql (2x)
      - redis (3x)
      Total: 5 servers, sequential migration, 17.4 hours

Waves run one after another (wave N+1 waits for wave N), so a wave's days are its
start and end on that sequential timeline. Only the plan document is read, so a plan
loaded back from JSON or from the store renders the same.
"""

from __future__ import annotations

import math
from collections import Counter

from migrationbox.planning.models import PlanDocument, Wave
from migrationbox.planning.waves import tier_of_role

MAX_ROLE_LINES = 8
MAX_LISTED_WAVES = 6


def _days(start_hours: float, end_hours: float) -> str:
    first = math.floor(start_hours / 24) + 1
    last = max(first, math.ceil(end_hours / 24))
    return f"Day {first}" if first == last else f"Day {first}-{last}"


def _wave_list(numbers: list[int]) -> str:
    shown = ", ".join(str(n) for n in numbers[:MAX_LISTED_WAVES])
    if len(numbers) > MAX_LISTED_WAVES:
        shown += f" and {len(numbers) - MAX_LISTED_WAVES} more"
    return ("Wave " if len(numbers) == 1 else "Waves ") + shown


def _is_sequential(plan: PlanDocument, wave: Wave, groups: dict[str, list[str]],
                   roles: dict[str, str | None]) -> bool:
    """A wave is sequential when a data-store move group of several servers moves in it
    (the duration model in ``waves`` migrates such groups member by member)."""
    return any(
        len(groups[g]) > 1 and any(tier_of_role(roles[s]) == "data" for s in groups[g])
        for g in wave.move_groups
    )


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" + ("" if count == 1 else "s")


def _money(value: float) -> str:
    return f"${value:,.2f}"


def render_sequence(plan: PlanDocument) -> str:
    """The plan's waves and totals as text, for the CLI and reports."""
    roles = {s.server_id: s.role for s in plan.servers}
    envs = {s.server_id: "production" if s.environment == "production" else "non-production"
            for s in plan.servers}
    groups = {g.group_id: g.server_ids for g in plan.move_groups}
    cycles = sum(1 for g in plan.move_groups if g.is_cycle)
    lines = [
        f"Migration Sequence for {len(plan.servers)}-server environment "
        f"(estate {plan.estate}, plan v{plan.version}, "
        f"created {plan.created_at.strftime('%Y-%m-%d %H:%M UTC')}):",
        "",
    ]
    clock = 0.0
    for wave in plan.waves:
        deps = (f"depends on {_wave_list(wave.depends_on_waves)}" if wave.depends_on_waves
                else "no dependencies")
        lines.append(f"Wave {wave.number} ({_days(clock, clock + wave.estimated_hours)}): "
                     f"{wave.name} ({deps})")
        clock += wave.estimated_hours
        if wave.environment == "mixed":  # say which part is production
            counts = Counter(
                f"{roles[s] or 'unclassified'} ({envs[s]}, " for s in wave.server_ids)
        else:
            counts = Counter(f"{roles[s] or 'unclassified'} (" for s in wave.server_ids)
        ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
        for role, count in ranked[:MAX_ROLE_LINES]:
            lines.append(f"  - {role}{count}x)")
        if len(ranked) > MAX_ROLE_LINES:
            rest = ranked[MAX_ROLE_LINES:]
            lines.append(f"  - {len(rest)} other roles ({sum(c for _r, c in rest)}x)")
        mode = "sequential" if _is_sequential(plan, wave, groups, roles) else "parallel"
        lines.append(f"  Total: {_plural(len(wave.server_ids), 'server')}, {mode} migration, "
                     f"{wave.estimated_hours:g} hours")
        cycle_groups = [g for g in wave.move_groups if len(groups[g]) > 1]
        if cycle_groups:
            lines.append(f"  Move together (dependency cycles): {', '.join(cycle_groups)}")
        if wave.needs_approval:
            lines.append(f"  Needs approval: {'; '.join(wave.approval_reasons)}")
        lines.append(f"  Predicted cost: {_money(wave.predicted_monthly_usd)}/month")
        lines.append("")

    approvals = [w.number for w in plan.waves if w.needs_approval]
    total_cost = sum(w.predicted_monthly_usd for w in plan.waves)
    sources = sorted({s.sizing.price_source.split(";")[0] for s in plan.servers if s.sizing})
    unsized = sum(1 for s in plan.servers if s.sizing is None)
    lines.append(f"Total migration time: {clock:g} hours (~{math.ceil(clock / 24)} days; "
                 "waves run one after another)")
    lines.append(f"Servers: {len(plan.servers)} in {_plural(len(plan.waves), 'wave')}"
                 + (f" ({_plural(cycles, 'dependency cycle')} kept together as move groups)"
                    if cycles else ""))
    lines.append(f"Waves needing approval: {len(approvals)} of {len(plan.waves)}"
                 + (f" ({_wave_list(approvals)})" if approvals else ""))
    cost_line = f"Predicted monthly cost: {_money(total_cost)}"
    if sources:
        cost_line += f" ({'; '.join(sources)})"
    if unsized:
        cost_line += f"; {_plural(unsized, 'server')} not sized (see warnings)"
    lines.append(cost_line)
    sized = [s.sizing for s in plan.servers if s.sizing]
    if sized:
        option = plan.settings.sizing_option
        safe = sum(1 for z in sized if "+safe:" in z.method)
        lines.append(
            f"Sizing: the {option} option"
            + (f"; its safe variant for {_plural(safe, 'server')} where {option} measured "
               "unsafe" if safe else "")
            + " (run `migrationbox size` for all three options and clouds)"
        )
    model = next((n for n in plan.notes if n.startswith("MODEL ")), None)
    if model:
        lines.append(f"Sizing model: {model.removeprefix('MODEL ')}")
    return "\n".join(lines)

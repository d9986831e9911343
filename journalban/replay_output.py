"""The human-readable summary of ``journalban replay``."""

import click

from journalban.replay import ReplaySummary

SHOW_BANS = 20


def print_summary(summary: ReplaySummary) -> None:
    matched = sum(summary.matched.values())
    click.echo(f"Grammar {summary.grammar}")
    click.echo(f"Lines: {summary.lines} read, {matched} matched, {sum(summary.ignored.values())} ignored, "
               f"{summary.rejected} rejected (invalid address), {summary.missed} missed")
    for title, counts in (("Matched", summary.matched), ("Ignored", summary.ignored)):
        if counts:
            click.echo(f"{title} per rule:")
            for rule, count in counts.most_common():
                click.echo(f"  {count:>10}  {rule}")
    addresses = {b.address for b in summary.bans}
    click.echo(f"Would ban (maxretry {summary.maxretry} in {summary.findtime}s): "
               f"{len(addresses)} addresses, {len(summary.bans)} bans")
    for ban in summary.bans[:SHOW_BANS]:
        click.echo(f"  {ban.start.isoformat()}  {ban.address}")
    if len(summary.bans) > SHOW_BANS:
        click.echo(f"  … and {len(summary.bans) - SHOW_BANS} more (--json lists them all)")
    if summary.missed_lines:
        click.echo("Missed lines:")
        for number, line in summary.missed_lines:
            click.echo(f"  {number}: {line}")
    click.echo(f"Speed: {summary.lines_per_second:,.0f} lines/s ({summary.seconds:.2f} s)")

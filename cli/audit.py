"""``run.py audit``: who did what to the environment's models, and whether the record holds."""

from __future__ import annotations

import click

from cli.common import env_option

#: what the manual overrides print when no reason is given
REASON_HELP = "Why (required for this manual override); kept in the audit trail (run.py audit)."

reason_option = click.option("--reason", metavar="TEXT", help=REASON_HELP)


def require_reason(reason: str | None, override: str) -> str:
    """The reason given for a manual override, or a usage error saying how to give one."""
    if not reason or not reason.strip():
        raise click.UsageError(
            f"{override} is a manual override: say why with --reason '...' (it is kept in the "
            "audit trail, python run.py audit)"
        )
    return reason.strip()


@click.command()
@env_option
@click.option("--model", "model_name", help="Only this model's entries.")
def audit(env: str, model_name: str | None = None) -> None:
    """List every deploy, rollback, stop, promotion, rollout decision, drift acceptance and
    token rotation of the environment (who, when, what, why), and check the hash chain:
    a line changed, inserted or removed since it was written is reported (exit status 1)."""
    from tabular_mlops.adapters.audit import audit_file, read_trail

    entries, problems = read_trail(env)
    shown = [e for e in entries if model_name is None or e.model == model_name]
    for entry in shown:
        version = f" v{entry.version}" if entry.version else ""
        reason = f"  because: {entry.reason}" if entry.reason else ""
        details = ", ".join(f"{k}={v}" for k, v in entry.details.items())
        click.echo(
            f"#{entry.seq:<4} {entry.at:%Y-%m-%d %H:%M:%S} UTC  {entry.who}  {entry.action:<16} "
            f"{entry.model}{version}" + (f" ({details})" if details else "") + reason
        )
    path = audit_file(env)
    if problems:
        for problem in problems:
            click.echo(f"TAMPERED {problem}", err=True)
        raise click.ClickException(
            f"the audit trail {path} does not verify ({len(problems)} problem(s) above): a "
            "line was changed, inserted or removed after it was written; restore the file "
            "from a backup and find out who wrote it"
        )
    click.echo(f"{len(shown)} entries; the hash chain of {path} is intact ({len(entries)} in all)")

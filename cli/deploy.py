"""``run.py deploy``: serve the staged model behind a smoke test; show or stop the service."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from cli.audit import reason_option, require_reason
from cli.common import (
    config_option,
    decide_first,
    env_flag,
    env_option,
    finish_cut_short,
    load_pipeline_config,
    overrides_option,
    run_pipeline,
    serving_target,
    staged_pipeline,
    staged_version,
)
from tabular_mlops.adapters.audit import record
from tabular_mlops.core.audit import ReleaseNote
from tabular_mlops.core.config import DeploymentRunConfig
from tabular_mlops.core.rollout import STRATEGIES
from tabular_mlops.serving.credentials import with_api_key, without_api_key

if TYPE_CHECKING:
    from tabular_mlops.adapters.deployment.target import Rollout, RunningService, ServingTarget
    from tabular_mlops.core.audit import AuditEntry


#: `deploy --status`'s exit status when the model is not served or does not answer (as
#: LSB's `status` actions: "program is not running"), so a script or a probe can act on it
NOT_SERVING = 3


@click.command()
@env_option
@config_option("deployment")
@overrides_option
@click.option(
    "--status",
    is_flag=True,
    help="Show what is served where, and change nothing; exit status 3 when nothing is "
    "served or it does not answer.",
)
@click.option("--stop", "stop_service", is_flag=True, help="Stop the live service.")
@click.option(
    "--force", is_flag=True, help="Redeploy even when the staged version is already served."
)
@click.option(
    "--version",
    "model_version",
    type=click.IntRange(min=1),
    help="Serve this model version instead of the one at the stage (a rollback); it must "
    "have passed the promotion gate once.",
)
@click.option(
    "--strategy",
    type=click.Choice(STRATEGIES),
    help="How the new version takes over (default: parameters.serving.rollout.strategy): "
    "replace at once, or run an online experiment that `run.py rollout` decides.",
)
@click.option(
    "--rotate-tokens",
    is_flag=True,
    help="New feedback, admin and source tokens; the old ones are accepted for an hour "
    "more, so clients move over without a failed request.",
)
@click.option(
    "--print-token",
    type=click.Choice(["feedback", "admin"]),
    help="Print the deployment's token for POST /feedback (or the router's /-/routes and "
    "/-/metrics) and nothing else, for a script: TOKEN=$(python run.py deploy "
    "--print-token feedback).",
)
@click.option(
    "--api-key",
    "api_key_for",
    metavar="CLIENT",
    help="Make an API key for CLIENT (a new one replaces its old one) and print it alone, "
    "for parameters.serving.require_api_key: the client sends it as x-api-key.",
)
@click.option("--revoke-api-key", metavar="CLIENT", help="Revoke CLIENT's API key at once.")
@reason_option
def deploy(
    env: str,
    config_path: Path,
    overrides: tuple[str, ...],
    status: bool = False,
    stop_service: bool = False,
    force: bool = False,
    model_version: int | None = None,
    strategy: str | None = None,
    rotate_tokens: bool = False,
    print_token: str | None = None,
    reason: str | None = None,
    api_key_for: str | None = None,
    revoke_api_key: str | None = None,
) -> None:
    """Package the model at the configured stage as a Bento, start it beside the live
    service, smoke-test it with rows of its own test split, and only then switch the
    model's stable address to it."""
    config = load_pipeline_config(DeploymentRunConfig, env, config_path, overrides)
    name = config.model.name
    if strategy is not None:
        config.parameters.serving.rollout.strategy = strategy  # type: ignore[assignment]
    if api_key_for or revoke_api_key:
        _api_keys(serving_target(env, config, activate=False), env, name, api_key_for,
                  revoke_api_key, reason)  # fmt: skip
        return
    if rotate_tokens or print_token:
        _tokens(serving_target(env, config, activate=False), name, print_token)
        if rotate_tokens:
            record(env, "rotate-tokens", name, reason=reason)
        return
    if model_version is not None:
        reason = require_reason(reason, f"deploy --version {model_version}")
    if status or stop_service:
        target = serving_target(env, config, activate=False)
        live = live_service(target, name)
        cut_short = _cut_short(target, env, name)
        if stop_service:
            running = _rollout_in_progress(target, name)
            if cut_short is not None and running is not None:  # its traffic may be half moved
                raise click.ClickException(f"{cut_short}, then stop; nothing was stopped")
            if cut_short is not None:  # the traffic has moved: the rest is bookkeeping
                click.echo(cut_short[0].upper() + cut_short[1:] + ".")
            if running is not None:  # a stop would end it with no decision on record
                raise click.ClickException(
                    f"rollout {running.experiment} of version "
                    f"{running.candidate.model_version} is in progress: "
                    f"{decide_first(env, name)}, then stop; nothing was stopped"
                )
            target.forget(name)  # the supervisor first: it would start the service again
            if live is not None:
                target.stop(live)
                record(env, "stop", name, live.model_version, reason)
                click.echo(f"Stopped {live.url} (model '{name}' version {live.model_version}).")
            else:  # nothing changed, so nothing to audit
                click.echo(
                    f"No live service for model '{name}'; nothing of it is left running."
                    + _served_instead(target)
                )
        elif live is None:
            click.echo(f"No live service for model '{name}'.{_served_instead(target)}")
            if cut_short is not None:
                click.echo(f"  {cut_short}")
            _print_leftovers(target, name)
            click.get_current_context().exit(NOT_SERVING)
        else:
            problems = target.problems(live)
            ready = _readyz(live)
            # a problem may leave it answering (e.g. the environment's port was changed)
            silent = bool(problems) and ready is None
            # a decision cut short has ended the rollout its record still names
            rollout = _rollout_in_progress(target, name) if cut_short is None else None
            click.echo(
                f"Model '{name}' version {live.model_version} at {live.url} "
                f"({'NOT answering' if silent else 'answering'}"
                f"{', with problems' if problems and not silent else ''})\n"
                f"  {live.describe()}, since {live.started_at:%Y-%m-%d %H:%M:%S} UTC"
                + "".join(f"\n  problem: {problem}" for problem in problems)
                + ("\n  `python run.py deploy` starts it again" if silent else "")
                + (
                    f"\n  rollout {rollout.experiment} ({rollout.plan.strategy}): candidate "
                    f"version {rollout.candidate.model_version} beside it; `run.py rollout "
                    "--status`"
                    if rollout
                    else ""
                )
            )
            click.echo(f"  tokens (feedback, admin): {target.tokens_location(name)}")
            if cut_short is not None:
                click.echo(f"  {cut_short}")
            _print_supervision(target, name, live)
            _print_log_health(ready)
            _print_leftovers(target, name)
            if silent:
                click.get_current_context().exit(NOT_SERVING)
        return

    target = serving_target(env, config, activate=True)
    for done in finish_cut_short(env, name, target):  # before what serves is judged
        click.echo(f"Carried out first: {done}.")
    live = live_service(target, name)
    wanted = str(model_version) if model_version else staged_version(config)
    if model_version:
        check_was_promoted(name, wanted)
    in_progress = _rollout_in_progress(target, name)
    if in_progress is not None:
        raise click.ClickException(
            f"rollout {in_progress.experiment} of version {in_progress.candidate.model_version} "
            f"is in progress: {decide_first(env, name)}"
        )
    problems = target.problems(live) if live is not None else []
    if live is not None and not force and live.model_version == wanted and not problems:
        _stop_strays(target, name)
        _supervise(target, name)
        click.echo(
            f"Version {wanted} of '{name}' is already served at {live.url}; nothing to do "
            "(--force redeploys it, e.g. with other serving settings)."
        )
        _print_service(live, target, env, default_model_name(env, config_path))
        return
    if live is not None and problems:
        click.echo(f"The live service has problems ({'; '.join(problems)}): redeploying.")
    if not model_version:
        plan = config.parameters.serving.rollout.strategy
        undoes, ends = _keep_rollback(env, name, live, wanted, config.stage, force,
                                      None if plan == "replace" else plan)  # fmt: skip
        if undoes:
            reason = require_reason(reason, f"deploy --force of version {wanted}, which a "
                                    "rollback took out,")  # fmt: skip
        if ends:
            click.echo(ends)
    from pipelines.deployment import deployment_pipeline

    pipeline = staged_pipeline(deployment_pipeline, config, version=model_version)
    # go_live records the release in the audit trail the moment it is done, with the note
    note = ReleaseNote(reason=reason, by_hand=model_version is not None)
    try:
        ran = run_pipeline("deployment", pipeline, serving=config.parameters.serving, note=note)
        if ran is not None:  # the release is done: its entry is written whole
            from tabular_mlops.adapters.interrupts import ctrl_c_held

            with ctrl_c_held():
                _record_unless_recorded(env, target, name, ran.name, note, live)
    except (KeyboardInterrupt, click.ClickException) as exc:
        # the candidate it started goes; the live version (and a rollout begun) stays
        interrupted = isinstance(exc, KeyboardInterrupt)
        _stop_strays(
            target, name, f"the {'interrupted' if interrupted else 'failed'} deployment had started"
        )
        switched = _what_changed(target.live(name), target.rollout(name), live)
        happened = "Interrupted" if interrupted else "Failed"
        if switched is not None:  # the switch holds Ctrl-C: it was done, and recorded
            click.echo(f"{happened} after the switch: {switched}.")
        elif interrupted:  # click ends with "Aborted!" alone
            if live is None:
                kept = f"nothing of '{name}' serves, as before"
            elif problems:
                kept = f"version {live.model_version} is still the live one, with its problems"
            else:
                kept = f"version {live.model_version} still serves at {live.url}"
            click.echo(f"{happened} before the switch: nothing changed, {kept}; the same "
                       "command deploys again.")  # fmt: skip
        raise
    if ran is None:
        return
    live = target.live(name)
    if live is None:
        raise click.ClickException(f"the deployment finished but no service of '{name}' is live")
    target.prune_logs(name, config.parameters.serving.retention_days)
    _print_service(live, target, env, default_model_name(env, config_path))


def _keep_rollback(
    env: str,
    name: str,
    live: RunningService | None,
    wanted: str,
    stage: str,
    force: bool,
    strategy: str | None,
) -> tuple[bool, str | None]:
    """A deploy that names no version serves the version at the stage, ending a rollback
    (`deploy --version N`), and says so with the rollback's reason: a routine deploy never
    undoes a rollback without a word. A version a rollback took out (rollbacks in a row,
    a stop or an aborted experiment since included) is served again only with
    ``--force``: a deploy run by habit (or a script) after an emergency rollback would
    serve the version it was rolled back from. Whether this deploy undoes a rollback, and
    what to say of the rollback it ends."""
    from tabular_mlops.adapters.audit import read_trail
    from tabular_mlops.core.audit import rolled_back_from

    taken_out, rollback = rolled_back_from(read_trail(env)[0], name)
    if rollback is None:
        return False, None

    def when(entry: AuditEntry) -> str:
        return f"{entry.reason}, {entry.at:%Y-%m-%d %H:%M} UTC"

    if wanted in taken_out and not force:
        raise click.ClickException(
            f"a rollback took version {wanted} out ({when(taken_out[wanted])}), and version "
            f"{wanted} is still the {stage} version: this deploy would serve it again. Train "
            "and promote a fix, or undo the rollback with `deploy --force --reason '...'`; "
            "nothing was changed"
        )
    ends = None
    if live is not None and live.model_version == rollback.version:
        doing = f"starts a {strategy} of" if strategy else "serves"
        ends = (
            f"Version {rollback.version} serves by a rollback ({when(rollback)}); this deploy "
            f"{doing} the {stage} version {wanted} (`deploy --version {rollback.version} "
            "--reason ...` keeps the rollback)."
        )
    return wanted in taken_out, ends


def _record_unless_recorded(
    env: str,
    target: ServingTarget,
    model_name: str,
    run: str,
    note: ReleaseNote,
    before: RunningService | None,
) -> None:
    """The release's entry in this command's trail when its step recorded it elsewhere (a
    pod on the cluster): the rollback guard reads this one."""
    from tabular_mlops.adapters.audit import read_trail
    from tabular_mlops.core.audit import last_served, recorded_for_run, release_entry

    entries = read_trail(env)[0]
    if recorded_for_run(entries, run):  # as on dev: the step ran in this process
        return
    live, experiment = target.live(model_name), target.rollout(model_name)
    if live is None or not _what_changed(live, experiment, before):
        return
    version = experiment.candidate.model_version if experiment else live.model_version
    action, details = release_entry(
        version, before.model_version if before else None,
        experiment.experiment if experiment else None,
        experiment.plan.strategy if experiment else None, note,
        last_served(entries, model_name),
    )  # fmt: skip
    record(env, action, model_name, version, note.reason, url=live.url, run=run, **details)


def _what_changed(
    live: RunningService | None, experiment: Rollout | None, before: RunningService | None
) -> str | None:
    """What the deployment changed, in words, from what is ``live`` now and the
    ``experiment`` running: a new live version, or a rollout begun (``before``: the live
    service before it); None when neither."""
    if live is None:
        return None
    if (
        before is not None
        and live.instance == before.instance
        and (experiment is None or experiment.candidate.instance == before.instance)
    ):
        return None
    if experiment:
        return (
            f"the {experiment.plan.strategy} of version {experiment.candidate.model_version} "
            "has begun"
        )
    return f"version {live.model_version} is live"


def live_service(target: ServingTarget, model_name: str) -> RunningService | None:
    """The target's record of the live service; an unreadable one is a CLI error."""
    from tabular_mlops.adapters.deployment.local import ServiceStateError

    try:
        return target.live(model_name)
    except ServiceStateError as exc:
        raise click.ClickException(str(exc)) from None


def _cut_short(target: ServingTarget, env: str, model_name: str) -> str | None:
    """A rollout decision whose command died half-way, noted by the target, in words
    with the command that carries it out (``adapters/rollout_decisions.py``)."""
    noted = target.noted_decision(model_name)
    if noted is None:
        return None
    return (
        f"the {noted.get('decision', 'decision')} of rollout {noted.get('experiment', '?')} "
        f"(candidate version {noted.get('candidate', '?')}) is not carried out to its end "
        f"(its command died, or is still at it): `python run.py rollout{env_flag(env)} "
        f"--set model.name={model_name}` carries it out"
    )


def _rollout_in_progress(target: ServingTarget, model_name: str) -> Rollout | None:
    return target.rollout(model_name)


def _print_leftovers(target: ServingTarget, model_name: str) -> None:
    """The processes of this model a killed deployment left running, if any."""
    from tabular_mlops.adapters.deployment.local import LocalProcessTarget

    if isinstance(target, LocalProcessTarget):
        pids = target.leftovers(model_name)
        if pids:
            click.echo(
                f"  left running by an earlier deployment: pids {pids}; `python run.py deploy` "
                "or `deploy --stop` stops them"
            )


def _print_supervision(target: ServingTarget, model_name: str, live: RunningService) -> None:
    """Whether the supervisor runs, and what it restarted since the live version started."""
    from tabular_mlops.adapters.deployment.local import LocalProcessTarget

    if not isinstance(target, LocalProcessTarget):
        return  # on a cluster, Kubernetes restarts pods
    click.echo(f"  address: {target.address_view(model_name)}")
    record = target.supervisor(model_name)
    if record is None or not record.running:
        click.echo(
            "  supervisor: not running, nothing restarts a process that dies; "
            "`python run.py deploy` starts it"
        )
        return
    click.echo(f"  supervisor: pid {record.pid}, restarts what dies")
    for restart in record.restarts:
        if restart.at >= live.started_at:
            after = f" -> pid {restart.pid_after}" if restart.pid_after else ""
            click.echo(
                f"  {restart.at:%H:%M:%S} UTC {restart.what} had died (pid "
                f"{restart.pid_before}{after}): {restart.outcome}"
            )


def _readyz(live: RunningService) -> dict[str, Any] | None:
    """What the live address's ``/readyz`` answers when it is ready; None otherwise."""
    from tabular_mlops.adapters.net import answer_of

    return answer_of(f"{live.url}/readyz")


def _print_log_health(ready: dict[str, Any] | None) -> None:
    """A line when the answering worker's inference log drops lines (``/readyz`` says)."""
    health = (ready or {}).get("inference_log", "off")
    if health not in ("ok", "off"):
        click.echo(f"  inference log: {health} (see /metrics: tabular_inference_log_rows_total)")


def _supervise(target: ServingTarget, model_name: str) -> None:
    from tabular_mlops.adapters.deployment.local import LocalProcessTarget

    if isinstance(target, LocalProcessTarget):
        target.supervise(model_name)


def _served_instead(target: ServingTarget) -> str:
    """The models this environment serves, for a command that named another (a typo in
    ``--set model.name``): nothing, or a line naming each and how to choose one."""
    served = target.served()
    if not served:
        return ""

    def named(service: RunningService) -> str:
        rollout = target.rollout(service.model_name)
        beside = (
            f"; a {rollout.plan.strategy} of version {rollout.candidate.model_version} beside it"
            if rollout
            else ""
        )
        return f"'{service.model_name}' (version {service.model_version}, {service.url}{beside})"

    names = ", ".join(named(service) for service in served)
    return f"\nServed here: {names}; `--set model.name=NAME` chooses one."


def _stop_strays(
    target: ServingTarget, model_name: str, whose: str = "an earlier deployment left running"
) -> None:
    """Processes a killed, failed or interrupted deployment left behind are stopped, even
    when nothing is deployed; the live service and a rollout's versions stay."""
    from tabular_mlops.adapters.deployment.local import LocalProcessTarget

    if isinstance(target, LocalProcessTarget):
        stopped = target.sweep_if_idle(model_name, why=whose)
        if stopped:
            click.echo(f"Stopped {len(stopped)} process(es) {whose}.")


def check_was_promoted(model_name: str, version: str) -> None:
    """A rollback serves a version that passed the promotion gate once, never one it refused."""
    from zenml.client import Client

    try:
        found = Client().get_model_version(model_name, int(version))
    except KeyError:
        promoted = sorted(
            v.number for v in Client().list_model_versions(model_name, size=100).items
            if str(v.run_metadata.get("promotion", "")).startswith("promoted")
        )  # fmt: skip
        raise click.ClickException(
            f"model '{model_name}' has no version {version}; nothing was changed. Versions "
            f"that passed the promotion gate: {', '.join(map(str, promoted)) or 'none'}"
        ) from None
    outcome = str(found.run_metadata.get("promotion", ""))
    if not outcome.startswith("promoted"):
        raise click.ClickException(
            f"model '{model_name}' version {version} never passed the promotion gate "
            f"({outcome or 'no promotion recorded'}); only promoted versions are served"
        )


def default_model_name(env: str, config_path: Path) -> str:
    """The model a command in ``env`` names when no ``--set model.name`` is given."""
    return load_pipeline_config(DeploymentRunConfig, env, config_path).model.name


def _print_service(
    live: RunningService, target: ServingTarget, env: str, default_model: str
) -> None:
    """Where the model is served and how to use it; the commands it names are this
    environment's and this model's (another's token would be refused)."""
    scope = env_flag(env) + (
        f" --set model.name={live.model_name}" if live.model_name != default_model else ""
    )
    click.echo(
        f"\nServing '{live.model_name}' version {live.model_version} at {live.url}\n"
        f"  curl -X POST {live.url}/predict -H 'content-type: application/json' "
        f"-d '{{\"rows\": [{{...}}]}}'\n"
        f"  API docs: {live.url}/docs   metrics: {live.url}/metrics\n"
        f"  requests are logged to {target.inference_log_dir}\n"
        f"  POST /feedback takes the feedback token: python run.py deploy{scope} "
        f"--print-token feedback (kept in {target.tokens_location(live.model_name)})"
    )


def _api_keys(target: ServingTarget, env: str, model_name: str, client: str | None,
              revoke: str | None, reason: str | None) -> None:  # fmt: skip
    """``--api-key CLIENT`` (the key alone on stdout) or ``--revoke-api-key CLIENT``."""
    if client is not None:
        tokens = target.set_api_keys(model_name, lambda t: with_api_key(t, client))
        record(env, "api-key", model_name, reason=reason, client=client)
        click.echo(tokens.api_keys[client])
        return
    if revoke is None:
        return
    try:
        target.set_api_keys(model_name, lambda t: without_api_key(t, revoke))
    except KeyError as exc:
        raise click.ClickException(str(exc.args[0])) from None
    record(env, "revoke-api-key", model_name, reason=reason, client=revoke)
    click.echo(f"Revoked the API key of '{revoke}' for '{model_name}': refused from now on.")


def _tokens(target: ServingTarget, model_name: str, role: str | None) -> None:
    """``--print-token ROLE`` (the token alone on stdout) or ``--rotate-tokens``."""
    if role is not None:
        click.echo(target.tokens(model_name).current[role])  # type: ignore[index]
        return
    tokens = target.rotate_tokens(model_name)
    until = f"{tokens.previous_until:%Y-%m-%d %H:%M:%S} UTC" if tokens.previous_until else "now"
    click.echo(
        f"New tokens for '{model_name}' in {target.tokens_location(model_name)}; the old "
        f"ones are accepted until {until}. Servers read them without a restart."
    )

"""The audit trail's entries and their hash chain: pure, no files.

Each entry records who did what, when, to which model version, and why; its
``hash`` is the SHA-256 of the previous entry's hash and its own content, so a
changed, inserted or removed line breaks the chain from there on
(:func:`verify`). The file is written by ``adapters/audit.py``.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

if TYPE_CHECKING:
    from tabular_mlops.core.gate import PromotionOutcome

#: the hash the first entry chains to
GENESIS = "0" * 64


class AuditEntry(BaseModel):
    seq: int
    at: datetime
    #: the OS user, and the ZenML user when a store was reached
    who: str
    env: str
    #: deploy, rollback, stop, promote, rollout-decision, rollout-promote, rollout-abort,
    #: accept-drift, rotate-tokens
    action: str
    model: str
    version: str | None = None
    reason: str | None = None
    details: dict[str, Any] = {}
    previous: str = GENESIS
    hash: str = ""


class ReleaseNote(BaseModel):
    """Why a release was asked for, by whom, carried into the deployment so that the step
    that hands the address over records it the moment it has (a command killed after the
    switch leaves its entry all the same)."""

    reason: str | None = None
    #: the version was named by hand (``deploy --version``): a rollback when it replaces
    #: the live version, a deploy like any other beside it in an experiment
    by_hand: bool = False


def retraining_note(stage: str, strategy: str) -> ReleaseNote:
    """Why a retraining's redeploy happened: the stage its gates promoted the new version
    to and, when that is not a replacement, the experiment that decides it."""
    reason = f"a retraining promoted it to {stage}"
    if strategy != "replace":
        reason += f"; a {strategy} experiment beside the live version decides"
    return ReleaseNote(reason=reason)


def release_entry(
    version: str,
    previous: str | None,
    experiment: str | None,
    strategy: str | None,
    note: ReleaseNote,
    stopped_last: str | None,
) -> tuple[str, dict[str, str]]:
    """The action and details of a release's entry: a deploy (an experiment's candidate
    names the experiment), or a rollback when a version named by hand replaced the live
    one (``previous``), naming the version it replaced; with nothing live, the one
    ``stopped_last`` (stopped first, then rolled back: the usual panic)."""
    details = {"rollout": strategy or "", "experiment": experiment} if experiment else {}
    rollback = note.by_hand and experiment is None
    was = previous if previous is not None else stopped_last
    if rollback and was is not None and was != version:
        details["replaced"] = was
    return ("rollback" if rollback else "deploy"), details


def asked_action(by_hand: str) -> str:
    """The entry's action for who asked a decision by hand (``promote`` or ``rollback``)."""
    return f"rollout-{'promote' if by_hand == 'promote' else 'abort'}"


def promotion_details(outcome: PromotionOutcome, run: str) -> dict[str, str]:
    """The details of a promotion's entry by the gates: the stage, the champion it was
    gated against and the run (the command records it when its step ran in a pod)."""
    return {"stage": outcome.stage, "gated_against": outcome.gated_against or "none", "run": run}


def recorded_for_run(entries: list[AuditEntry], run: str) -> bool:
    """Whether a step of the pipeline run ``run`` recorded an entry in this trail (on a
    cluster, steps run in pods, whose trail is not the command's)."""
    return any(entry.details.get("run") == run for entry in entries)


def _digest(entry: AuditEntry) -> str:
    content = entry.model_dump(mode="json", exclude={"hash"})
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def chained(entry: AuditEntry, previous: AuditEntry | None) -> AuditEntry:
    """``entry`` numbered after ``previous`` and sealed with its hash."""
    linked = entry.model_copy(
        update={
            "seq": previous.seq + 1 if previous else 1,
            "previous": previous.hash if previous else GENESIS,
        }
    )
    return linked.model_copy(update={"hash": _digest(linked)})


def verify(lines: list[str]) -> tuple[list[AuditEntry], list[str]]:
    """The entries that parse, and every break of the chain, by line number: a line that
    is not an entry, an entry whose hash is not its content's (changed), or one that
    does not follow the line before it (a line removed or inserted)."""
    entries: list[AuditEntry] = []
    problems: list[str] = []
    previous_hash, previous_seq = GENESIS, 0
    for number, line in enumerate(lines, start=1):
        try:
            entry = AuditEntry.model_validate_json(line)
        except ValidationError:
            problems.append(f"line {number}: not an audit entry")
            continue
        if entry.hash != _digest(entry):
            problems.append(f"line {number} (#{entry.seq}): changed after it was written")
        if entry.previous != previous_hash or entry.seq != previous_seq + 1:
            problems.append(
                f"line {number} (#{entry.seq}): does not follow #{previous_seq}; "
                "a line before it was removed, changed or inserted"
            )
        previous_hash, previous_seq = entry.hash, entry.seq
        entries.append(entry)
    return entries, problems


def _releases(entry: AuditEntry) -> bool:
    """Whether ``entry`` served a version for good: a plain release (a deploy that is no
    experiment's candidate) or an experiment promoted."""
    return (entry.action == "deploy" and "rollout" not in entry.details) or (
        entry.action == "rollout-decision" and entry.details.get("decision") == "promote"
    )


def rolled_back_from(
    entries: list[AuditEntry], model: str
) -> tuple[dict[str, AuditEntry], AuditEntry | None]:
    """The versions of ``model`` that rollbacks took out and no release has served since,
    each with the rollback that took it out, and the latest rollback in force (None when
    none is).

    A rollback (``deploy --version N``) records the version it ``replaced``; rollbacks in
    a row add theirs, and one that serves a version taken out before (rolled forward to
    it on purpose) puts it back. A plain release (a deploy that is no experiment's
    candidate) or an experiment promoted ends them; a stop, an experiment begun or
    aborted does not: the version taken out is as bad after them as before."""
    taken_out: dict[str, AuditEntry] = {}
    served_since: set[str] = set()  # by a later rollback, newest first
    latest: AuditEntry | None = None
    for entry in reversed(entries):
        if entry.model != model:
            continue
        if entry.action == "rollback":
            latest = latest or entry
            replaced = entry.details.get("replaced")
            if replaced and str(replaced) not in served_since:
                taken_out.setdefault(str(replaced), entry)
            served_since.add(str(entry.version))
        elif _releases(entry):
            break
    return taken_out, latest


def last_served(entries: list[AuditEntry], model: str) -> str | None:
    """The version of ``model`` the trail says was served last (stopped since or not): what
    a rollback made after a stop replaces."""
    for entry in reversed(entries):
        if entry.model != model:
            continue
        if entry.action in ("stop", "rollback") or _releases(entry):
            return entry.version
    return None

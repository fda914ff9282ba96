"""Wall time of the whole ML loop: this project against ZenML's own E2E batch template.

Both sides train (with gates), deploy a model behind a local HTTP server and score a
batch of breast-cancer rows (sklearn's 569-row dataset on both sides), with the same
interpreter and locked packages (this checkout's ``.venv``):

* ours:      ``python run.py all --env dev`` run from this checkout (BentoML serving),
  and the everyday path: ``train``, ``deploy`` and ``infer --input`` (143 rows) as three
  separate commands on a store of their own, as a user runs them (the first starts the
  warm command server the next ones run in, cli/warm.py), and again with warm starts off
  (``TABULAR_MLOPS_WARM=0``: each command pays its own imports), on another;
* template:  ``python run.py`` of ``zenml-io/template-e2e-batch`` rendered with copier
  defaults (hyperparameter search, metric-compare promotion, Evidently gate, MLflow
  tracking, registry and deployer), on the stack its own test suite registers.

Each round gives each side a new temporary ZenML store and times two invocations on it:
``fresh`` (the first ever, on the empty store) and ``rerun`` (the second, on the same
store, where ZenML's step cache applies). Sides are interleaved (ours fresh, our three
commands fresh, template fresh, then the same again) so that drift in machine load hits
all alike. What is not timed: rendering the template, registering its stack (ours
registers its stack inside its commands, so that cost is inside our figures; the
template's is printed beside it), and stopping each side's server after the rerun.

    python bench/loop_vs_template.py --rounds 2
"""

from __future__ import annotations

import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = ROOT / ".venv" / "bin"
PYTHON = VENV_BIN / "python"
UV = VENV_BIN / "uv"
TEMPLATE_GIT = Path("/work/.mirror/zenml-io+template-e2e-batch/repo")
COPIER = "copier==9.19.1"
#: the template's copier.yml loads this Jinja extension
COPIER_EXTRAS = ("jinja2-time",)
TAIL_CHARS = 3000

#: the stack the template's own tests register (tests/conftest.py: configure_stack),
#: equivalent to its Makefile's `install-stack-local` (`zenml experiment-tracker register
#: -f mlflow ...`, model-registry, model-deployer, data-validator, `zenml stack register`)
TEMPLATE_STACK = """
from zenml.client import Client
from zenml.enums import StackComponentType as T

client = Client()
components = {}
for name, flavor, kind in [
    ("mlflow_local", "mlflow", T.EXPERIMENT_TRACKER),
    ("mlflow_local", "mlflow", T.MODEL_REGISTRY),
    ("mlflow_local", "mlflow", T.MODEL_DEPLOYER),
    ("evidently", "evidently", T.DATA_VALIDATOR),
]:
    client.create_stack_component(name, flavor, kind, {})
    components[kind] = name
components[T.ORCHESTRATOR] = "default"
components[T.ARTIFACT_STORE] = "default"
client.create_stack("e2e_template_stack", components=components)
client.activate_stack("e2e_template_stack")
print("active stack:", client.active_stack_model.name)
"""

#: stop and delete every MLflow prediction server the template's deployer started
TEMPLATE_STOP = """
from zenml.client import Client

deployer = Client().active_stack.model_deployer
for service in deployer.find_model_server():
    print("deleting model server", service.uuid)
    deployer.delete_model_server(service.uuid, force=True)
"""


class SideFailedError(Exception):
    """One invocation of one side exited non-zero or timed out."""

    def __init__(self, label: str, log: Path, reason: str) -> None:
        super().__init__(f"{label}: {reason}")
        self.label = label
        self.log = log
        self.reason = reason


@dataclass
class Round:
    """The timings (seconds) of one round."""

    ours: dict[str, float] = field(default_factory=dict)
    separate: dict[str, float] = field(default_factory=dict)
    #: the three commands with warm starts off (TABULAR_MLOPS_WARM=0): each pays its imports
    cold: dict[str, float] = field(default_factory=dict)
    template: dict[str, float] = field(default_factory=dict)
    template_setup: float = 0.0


def isolated_env(home: Path, repository: Path | None = None) -> dict[str, str]:
    """This process's environment without any ZenML/MLflow/BentoML setting, pointed at
    a private ZenML store, BentoML home and MLflow state under ``home``."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("ZENML_", "MLFLOW_", "BENTOML_", "VIRTUAL_ENV", "PYTHONPATH"))
    }
    env.update(
        ZENML_CONFIG_PATH=str(home / "zenml-config"),
        ZENML_ANALYTICS_OPT_IN="false",
        BENTOML_HOME=str(home / "bentoml"),
        MLFLOW_DISABLE_TELEMETRY="true",
        DO_NOT_TRACK="true",
        PYTHONUNBUFFERED="1",
        VIRTUAL_ENV=str(VENV_BIN.parent),
        PATH=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    if repository is not None:
        repository.mkdir(parents=True, exist_ok=True)
        env["ZENML_REPOSITORY_PATH"] = str(repository)
    return env


@contextmanager
def private_home(prefix: str) -> Iterator[tuple[Path, dict[str, str], Path]]:
    """A temporary home for one bench: its directory, an environment with a private ZenML
    store, BentoML home and state directory in it, and the file the commands log to."""
    with tempfile.TemporaryDirectory(prefix=prefix) as scratch:
        home = Path(scratch)
        env = isolated_env(home, repository=home / "repo")
        env["TABULAR_MLOPS_STATE_DIR"] = str(home / "state")
        yield home, env, home / "commands.log"


def run(
    label: str, cmd: list[str], cwd: Path, env: dict[str, str], log: Path, timeout: float
) -> float:
    """Run ``cmd`` in its own process group, output to ``log``; its wall seconds."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        out.write(f"\n$ {' '.join(cmd)}   (cwd {cwd})\n".encode())
        out.flush()
        started = time.perf_counter()
        process = subprocess.Popen(
            cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            code = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(process.pid)
            process.wait()
            raise SideFailedError(label, log, f"timed out after {timeout:.0f} s") from None
        elapsed = time.perf_counter() - started
    if code != 0:
        raise SideFailedError(label, log, f"exited with status {code}")
    return elapsed


def _kill_group(pgid: int) -> None:
    """SIGTERM then SIGKILL the process group ``pgid`` that this script started."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        time.sleep(2)


def leftover_processes(marker: str) -> list[int]:
    """PIDs of this user's live processes whose environment contains ``marker`` (the
    temporary directory every process of this benchmark inherits)."""
    needle = marker.encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "environ").read_bytes():
                found.append(int(entry.name))
        except OSError:  # gone, or not ours
            continue
    return found


def kill_leftovers(marker: str) -> list[int]:
    """Terminate (by PID) any process still running with ``marker`` in its environment."""
    pids = leftover_processes(marker)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                continue
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() for p in pids):
            time.sleep(0.5)
        pids = [p for p in pids if Path(f"/proc/{p}").exists()]
        if not pids:
            break
    return leftover_processes(marker)


def render_template(src: Path, dst: Path, log: Path, timeout: float) -> None:
    """Export the template's snapshot and render it with copier's defaults into ``dst``."""
    src.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "--git-dir", str(TEMPLATE_GIT), "archive", "HEAD"],
        check=True,
        capture_output=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(src)], input=archive, check=True)
    extras = [arg for extra in COPIER_EXTRAS for arg in ("--with", extra)]
    cmd = [str(UV), "tool", "run", "--from", COPIER, *extras, "copier"]
    cmd += ["copy", "--defaults", "--trust", "--quiet", str(src), str(dst)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIRTUAL_ENV")}
    run("template render (copier)", cmd, src.parent, env, log, timeout)


def write_batch(path: Path) -> None:
    """143 rows of the training data's features (the size of `run.py all`'s batch, the
    test split) as a CSV, for the separate `infer --input`."""
    from tabular_mlops.adapters.sources import load_dataset
    from tabular_mlops.core.config import DataSourceConfig

    path.parent.mkdir(parents=True, exist_ok=True)
    load_dataset(DataSourceConfig()).drop(columns=["target"]).head(143).to_csv(path, index=False)


def machine() -> list[str]:
    """CPU count, CPU model and interpreter of the benchmark."""
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    versions = subprocess.run(
        [
            str(PYTHON),
            "-c",
            "import sys, importlib.metadata as m; print(sys.version.split()[0], *("
            "f'{p} {m.version(p)}' for p in "
            "('zenml', 'mlflow', 'evidently', 'scikit-learn', 'bentoml')), sep=', ')",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    return [
        f"nproc: {len(os.sched_getaffinity(0))} (of {os.cpu_count()})",
        f"CPU: {model}",
        f"python: {versions} ({platform.system()} {platform.release()})",
    ]


def one_round(number: int, base: Path, timeout: float) -> Round:
    """Time fresh and rerun of both sides, interleaved, each on its own new store."""
    result = Round()
    ours_home = base / f"round{number}" / "ours"
    sep_home = base / f"round{number}" / "separate"
    tpl_home = base / f"round{number}" / "template"
    ours_env = isolated_env(ours_home, repository=ours_home / "repo")
    tpl_env = isolated_env(tpl_home)
    sep_env = isolated_env(sep_home, repository=sep_home / "repo")
    sep_env["TABULAR_MLOPS_STATE_DIR"] = str(sep_home / "state")
    cold_home = base / f"round{number}" / "cold"
    cold_env = isolated_env(cold_home, repository=cold_home / "repo")
    cold_env.update(TABULAR_MLOPS_STATE_DIR=str(cold_home / "state"), TABULAR_MLOPS_WARM="0")
    cold_log = cold_home / "output.log"
    ours_env["TABULAR_MLOPS_STATE_DIR"] = str(ours_home / "state")
    ours_log = ours_home / "output.log"
    sep_log = sep_home / "output.log"
    batch = sep_home / "batch.csv"
    write_batch(batch)
    from tabular_mlops.adapters.net import free_port

    port, cold_port = free_port(), free_port()
    tpl_log = tpl_home / "output.log"
    project = tpl_home / "project"

    render_template(tpl_home / "template-src", project, tpl_log, timeout)
    # ZenML resolves sources from the main module's file: run these snippets as scripts
    stack_script = tpl_home / "register_stack.py"
    stack_script.write_text(TEMPLATE_STACK)
    stop_script = tpl_home / "stop_servers.py"
    stop_script.write_text(TEMPLATE_STOP)
    started = time.perf_counter()
    run("template stack", [str(PYTHON), str(stack_script)], project, tpl_env, tpl_log, timeout)
    result.template_setup = time.perf_counter() - started

    from tabular_mlops.adapters.config_files import with_model_deployer

    separate_env = with_model_deployer("dev", sep_home / "env", port=port)
    cold_deploy_env = with_model_deployer("dev", cold_home / "env", port=cold_port)
    ours_cmd = [str(PYTHON), "run.py", "all", "--env", "dev"]
    separate_cmds = [
        [str(PYTHON), "run.py", "train", "--env", "dev"],
        # its own address: `run.py all`'s service keeps the configured port for its rerun
        [str(PYTHON), "run.py", "deploy", "--env", str(separate_env)],
        [str(PYTHON), "run.py", "infer", "--env", "dev", "--input", str(batch)],
    ]
    cold_cmds = [
        [*separate_cmds[0]],
        [str(PYTHON), "run.py", "deploy", "--env", str(cold_deploy_env)],
        [*separate_cmds[2]],
    ]
    tpl_cmd = [str(PYTHON), "run.py"]
    try:
        for kind in ("fresh", "rerun"):
            click.echo(f"round {number}: ours {kind} ...", err=True)
            result.ours[kind] = run(f"ours {kind}", ours_cmd, ROOT, ours_env, ours_log, timeout)
            click.echo(f"  {result.ours[kind]:.1f} s; ours separately {kind} ...", err=True)
            result.separate[kind] = sum(
                run(f"ours {cmd[2]} {kind}", cmd, ROOT, sep_env, sep_log, timeout)
                for cmd in separate_cmds
            )
            click.echo(f"  {result.separate[kind]:.1f} s; the three cold {kind} ...", err=True)
            result.cold[kind] = sum(
                run(f"ours {cmd[2]} cold {kind}", cmd, ROOT, cold_env, cold_log, timeout)
                for cmd in cold_cmds
            )
            click.echo(f"  {result.cold[kind]:.1f} s; template {kind} ...", err=True)
            result.template[kind] = run(
                f"template {kind}", tpl_cmd, project, tpl_env, tpl_log, timeout
            )
            click.echo(f"  {result.template[kind]:.1f} s", err=True)
    finally:
        stop_cmd = [str(PYTHON), "run.py", "deploy", "--stop", "--env"]
        for label, cmd, cwd, env, log in (
            ("ours stop", [*stop_cmd, "dev"], ROOT, ours_env, ours_log),
            ("ours (separately) stop", [*stop_cmd, str(separate_env)], ROOT, sep_env, sep_log),
            ("ours (cold) stop", [*stop_cmd, str(cold_deploy_env)], ROOT, cold_env, cold_log),
            ("template stop", [str(PYTHON), str(stop_script)], project, tpl_env, tpl_log),
        ):
            try:
                run(label, cmd, cwd, env, log, timeout=120)
            except SideFailedError as exc:
                click.echo(f"warning: {exc} (see {exc.log})", err=True)
        for home in (ours_home, sep_home, cold_home, tpl_home):
            left = kill_leftovers(str(home))
            if left:
                click.echo(f"warning: could not stop processes {left} of {home}", err=True)
    return result


def ratio(ours: float, template: float) -> str:
    """``ours / template`` as text."""
    return f"{ours / template:.2f}" if template else "n/a"


def report(rounds: list[Round]) -> None:
    """The table of all rounds, their medians, and the machine."""
    columns = (
        ("all fresh", lambda r: r.ours["fresh"]),
        ("3 cmds fresh", lambda r: r.separate["fresh"]),
        ("3 cold fresh", lambda r: r.cold["fresh"]),
        ("tpl fresh", lambda r: r.template["fresh"]),
        ("all rerun", lambda r: r.ours["rerun"]),
        ("3 cmds rerun", lambda r: r.separate["rerun"]),
        ("3 cold rerun", lambda r: r.cold["rerun"]),
        ("tpl rerun", lambda r: r.template["rerun"]),
        ("tpl setup*", lambda r: r.template_setup),
    )
    ratios = (
        ("all/tpl fresh", 0, 3),
        ("3 cmds/tpl fresh", 1, 3),
        ("3 cold/tpl fresh", 2, 3),
        ("all/tpl rerun", 4, 7),
        ("3 cmds/tpl rerun", 5, 7),
        ("3 cold/tpl rerun", 6, 7),
    )
    head = f"{'round':<7}" + "".join(f"{name:>14}" for name, _ in columns)
    head += "".join(f"{name:>18}" for name, _, _ in ratios)

    def row(name: str, values: list[float]) -> str:
        text = f"{name:<7}" + "".join(f"{value:>14.1f}" for value in values)
        return text + "".join(f"{ratio(values[a], values[b]):>18}" for _, a, b in ratios)

    lines = [head, "-" * len(head)]
    for number, r in enumerate(rounds, 1):
        lines.append(row(str(number), [measure(r) for _, measure in columns]))
    lines.append("-" * len(head))
    medians = [statistics.median(measure(r) for r in rounds) for _, measure in columns]
    lines.append(row("median", medians))
    click.echo(
        "\nWall seconds of the whole loop (train, deploy, score a batch): `run.py all`, "
        "the three commands one after another (warm starts on, the default; and off: "
        "'cold'), the template; ratio = ours/template"
    )
    click.echo("\n".join(lines))
    click.echo(
        "* not in 'tpl fresh': registering the template's stack (which also creates its "
        "ZenML store), which our commands do inside their own time."
    )
    click.echo("\n".join(machine()))


@click.command()
@click.option("--rounds", default=2, show_default=True, type=click.IntRange(min=1))
@click.option(
    "--keep",
    is_flag=True,
    help="Keep the temporary stores, projects and logs (always kept when a side fails).",
)
@click.option(
    "--timeout",
    default=900.0,
    show_default=True,
    help="Seconds one invocation of one side may take before it counts as failed.",
)
def main(rounds: int, keep: bool, timeout: float) -> None:
    """Time `run.py all` of this project against ZenML's E2E batch template, interleaved."""
    if not TEMPLATE_GIT.is_dir():
        raise click.ClickException(f"template snapshot not found: {TEMPLATE_GIT}")
    for tool in (PYTHON, UV):
        if not tool.exists():
            raise click.ClickException(f"missing {tool}")
    base = Path(tempfile.mkdtemp(prefix="loop-vs-template-"))
    click.echo(f"working in {base}", err=True)
    results: list[Round] = []
    failed = False
    try:
        for number in range(1, rounds + 1):
            results.append(one_round(number, base, timeout))
    except SideFailedError as exc:
        failed = True
        output = exc.log.read_text(errors="replace")
        click.echo(f"\nFAILED: {exc.label} {exc.reason}; last {TAIL_CHARS} characters of its")
        click.echo(f"output ({exc.log}):\n{output[-TAIL_CHARS:]}")
        keep = True
    except subprocess.CalledProcessError as exc:
        failed = True
        click.echo(f"\nFAILED: {exc.cmd!r} exited with {exc.returncode}: {exc.stderr!r}")
    finally:
        if keep:
            click.echo(f"kept {base}", err=True)
        else:
            shutil.rmtree(base, ignore_errors=True)
    if failed:
        sys.exit(1)
    report(results)


if __name__ == "__main__":
    main()

"""`run.py dashboard` starts a real local ZenML server that shows this project's runs."""

from __future__ import annotations

import socket

import httpx
import pytest

from tests.helpers import invoke

pytestmark = pytest.mark.integration


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _chromium() -> str:
    """Debian's Chromium (`.ci/run` installs it), or the Chrome a hosted CI runner ships:
    Playwright drives it and never downloads a browser of its own."""
    import os
    import shutil

    names = (
        "chromium",
        "chromium-browser",
        "google-chrome-stable",
        "google-chrome",
    )  # Debian, hosted CI
    found = next((path for name in names if (path := shutil.which(name))), None)
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed: .ci/run installs it with apt-get")
        pytest.skip("no chromium here: apt-get install chromium")
    return found


#: where the browser test leaves its screenshots (CI keeps them as test artifacts)
SCREENSHOTS = "test-artifacts/dashboard"


def test_a_first_time_user_reads_every_report_in_the_dashboard(trained_model, free_port):
    """`run.py dashboard` starts a real ZenML server (one start for all of this: it takes
    most of half a minute), and a real browser, as a person opens it after training,
    sees no survey, the run's DAG, and the data report, evaluation report and model card
    readable in the visualization panel (a sandboxed iframe that runs no scripts);
    `dashboard --stop` stops it."""
    import os
    import shutil
    from pathlib import Path

    from playwright.sync_api import sync_playwright
    from zenml.client import Client

    from tabular_mlops.adapters.paths import PROJECT_ROOT

    second = invoke("train", "--set", f"model.name={trained_model}")  # a reference: drift
    assert second.exit_code == 0, second.output
    run = (
        Client()
        .list_pipeline_runs(pipeline_name="training_pipeline", sort_by="desc:created", size=1)
        .items[0]
    )
    shots = PROJECT_ROOT / ".local" / SCREENSHOTS  # kept for a person to look at
    shots.mkdir(parents=True, exist_ok=True)
    expected = {
        "data_report": ["Data gate", "columns drifted", "threshold", "<svg"],
        "evaluation_report": ["Evaluation on", "roc_auc", "data:image/png"],
        "model_card": [
            f"{trained_model} version",
            "Intended use",
            "Out of scope",
            "Limitations and caveats",
            "Model gate",
            "Not assessed",
            "Lineage",
            "content hash",
        ],
    }
    try:
        started = invoke("dashboard", "--port", str(free_port))
        assert started.exit_code == 0, started.output
        assert "Load Preview" in started.output and "python run.py models" in started.output
        base = f"http://127.0.0.1:{free_port}"
        assert httpx.get(f"{base}/health", timeout=10).status_code == 200
        assert httpx.get(f"{base}/api/v1/info", timeout=10).json()["version"] == "0.98.0"
        home = httpx.get(base, timeout=10)
        assert home.status_code == 200 and "<html" in home.text.lower()
        chromium = _chromium()
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=chromium, args=["--disable-webgl", "--no-sandbox"]
            )
            try:
                page = browser.new_page(viewport={"width": 1500, "height": 950})
                page.goto(base, wait_until="networkidle", timeout=60_000)
                assert "/survey" not in page.url, "the first-visit survey was not skipped"
                page.goto(f"{base}/projects/default/runs/{run.id}", wait_until="networkidle")
                page.get_by_text("write_model_card", exact=True).wait_for(timeout=30_000)
                page.screenshot(path=shots / "run_dag.png")
                page.get_by_text("validate_data", exact=True).first.click()
                settings = page.get_by_text("Artifact visualization").locator("xpath=..")
                assert "Enable" in settings.inner_text(timeout=30_000)  # not "Disabled"
                for artifact, texts in expected.items():
                    page.goto(f"{base}/projects/default/runs/{run.id}", wait_until="networkidle")
                    page.get_by_text(artifact, exact=True).first.click()
                    page.get_by_role("tab", name="Visualization").last.click()
                    page.get_by_role("button", name="Load Preview").click()
                    frame_element = page.locator("iframe").first
                    frame_element.wait_for(timeout=30_000)
                    assert frame_element.get_attribute("sandbox") == ""  # scripts blocked
                    frame = frame_element.content_frame
                    frame.locator("body").wait_for()
                    content = frame.locator("html").inner_html()
                    for text in texts:
                        assert text in content, f"{artifact}: {text!r} not shown"
                    assert "<script" not in content.lower()
                    assert frame.locator("body").inner_text().strip(), f"{artifact} is blank"
                    page.screenshot(path=shots / f"{artifact}.png")
            finally:
                browser.close()
    finally:
        stopped = invoke("dashboard", "--stop")
    assert stopped.exit_code == 0, stopped.output
    assert not _listening(free_port)
    if os.environ.get("UPDATE_DOCS_SCREENSHOTS"):
        for picture in shots.glob("*.png"):
            shutil.copy(picture, PROJECT_ROOT / "docs" / "images" / picture.name)
    assert {p.name for p in shots.glob("*.png")} >= {f"{a}.png" for a in expected}
    assert Path(shots / "run_dag.png").stat().st_size > 10_000

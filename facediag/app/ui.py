"""The Gradio page: a photos tab (per photo: aligned crop with landmarks, probabilities, saliency overlay, flags in
words, optional nearest training photos), a batch tab (the predictions CSV) and a model-card tab per run.

The photos tab's button is also the API endpoint ``/predict`` (``gradio_client``: files, method, run -> the records
as JSON, then the first photo's chart, images and flags). Bound to 127.0.0.1, no share link, analytics off, no
web fonts: it works offline. Research tool, not a diagnosis.
"""

from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import socket  # noqa: E402
import tempfile  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import gradio as gr  # noqa: E402
import pandas as pd  # noqa: E402

from facediag.app.model_card import calibration_caveat, model_card  # noqa: E402
from facediag.app.service import PhotoRecord, RunService, uploads  # noqa: E402
from facediag.scoring.results import DISCLAIMER  # noqa: E402

HOST = "127.0.0.1"
DEFAULT_MAX_FILE_MB = 25
HEADER = (f"# facediag\n**{DISCLAIMER}** A research model's output: nothing on this page is a medical finding. "
          "Photos stay on this machine and are not kept after they are analysed.")
NO_PHOTOS = "Drop one or more photos (or a zip of photos) first."


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def flags_markdown(record: PhotoRecord) -> str:
    """Status, reason and every flag of one photo, in words."""
    lines = [f"**{record.name}**: status `{record.status}`" + (f": {record.reason}" if record.reason else "")]
    if record.flag_words:
        lines += ["", "Flags:", *(f"- {words}" for words in record.flag_words)]
    elif record.probabilities:
        lines += ["", "No flags: one face was found and scored."]
    if record.saliency_method:
        lines += ["", f"Saliency: {record.saliency_method}, of the class `{record.top1}`."]
    return "\n".join(lines)


def records_table(records: Sequence[PhotoRecord], classes: Sequence[str]) -> pd.DataFrame:
    """One row per photo: name, status, top class, the probabilities, flags, reason (the batch CSV's columns)."""
    rows = [{"file": r.name, "status": r.status, "top1": r.top1 or "",
             **{f"p_{c}": r.probabilities.get(c) for c in classes}, "flags": ";".join(r.flags), "reason": r.reason}
            for r in records]
    return pd.DataFrame(rows, columns=["file", "status", "top1", *(f"p_{c}" for c in classes), "flags", "reason"])


class App:
    """The page over one or more ``RunService``s."""

    def __init__(self, services: Sequence[RunService]):
        if not services:
            raise ValueError("the app needs at least one run")
        self.services = {service.name: service for service in services}
        self.scratch = Path(tempfile.mkdtemp(prefix="facediag_app_"))

    def service(self, name: str | None) -> RunService:
        return self.services.get(name or "", next(iter(self.services.values())))

    def analyse(self, files: Sequence[str] | None, method: str | None, run: str | None,
                saliency: bool = True) -> tuple[RunService, list[PhotoRecord]]:
        """Records of every uploaded photo (zips unpacked) and of every refused upload."""
        if not files:
            raise gr.Error(NO_PHOTOS)
        service = self.service(run)
        with tempfile.TemporaryDirectory(dir=self.scratch) as scratch:
            found, refused = uploads(files if isinstance(files, list) else [files], Path(scratch))
            records = [service.analyse(upload, method, saliency) for upload in found]
        records += [PhotoRecord(name, "error", why) for name, why in refused]
        return service, records

    def predict(self, files: Sequence[str] | None, method: str | None, run: str | None) -> tuple[Any, ...]:
        """The photos tab (and ``/predict``): the records as JSON, the table, the photo chooser, then the first
        photo's chart, crop, overlay, flags and neighbours."""
        service, records = self.analyse(files, method, run)
        names = [r.name for r in records]
        state = {r.name: r for r in records}
        return ([r.summary() for r in records], records_table(records, service.classes),
                gr.update(choices=names, value=names[0] if names else None), *self.show(names[0], state), state)

    def show(self, name: str | None, state: dict[str, PhotoRecord] | None) -> tuple[Any, ...]:
        """One photo's chart, crop, overlay, flags and neighbours."""
        record = (state or {}).get(name or "")
        if record is None:
            return None, None, None, "", []
        chart = record.probabilities or None
        return chart, record.crop, record.overlay, flags_markdown(record), record.neighbours

    def batch(self, files: Sequence[str] | None, run: str | None) -> tuple[str, pd.DataFrame]:
        """The batch tab: every photo scored (no saliency), the predictions CSV to download: the columns of
        ``python -m facediag.predict``'s (:func:`facediag.apply.assess.columns`), ``path`` the uploaded name."""
        from facediag.apply.assess import columns

        service, records = self.analyse(files, None, run, saliency=False)
        rows = [r.row or {"path": r.name, "status": r.status, "reason": r.reason} for r in records]
        table = pd.DataFrame(rows, columns=columns(service.classes))
        out = Path(tempfile.mkdtemp(dir=self.scratch)) / "predictions.csv"
        table.to_csv(out, index=False)
        return str(out), table

    def methods_of(self, run: str | None) -> Any:
        methods = self.service(run).methods
        return gr.update(choices=methods, value=methods[0])

    def caveat(self, run: str | None) -> str:
        service = self.service(run)
        return f"Probabilities ({service.run.strategy}): {calibration_caveat(service.run.strategy)} {DISCLAIMER}"

    def blocks(self) -> gr.Blocks:
        """The page."""
        first = next(iter(self.services))
        several = len(self.services) > 1
        with gr.Blocks(title="facediag", analytics_enabled=False) as page:
            gr.Markdown(HEADER)
            with gr.Tab("Photos"):
                with gr.Row():
                    run = gr.Dropdown(list(self.services), value=first, label="Run", visible=several)
                    method = gr.Dropdown(self.service(first).methods, value=self.service(first).methods[0],
                                         label="Saliency method", elem_id="method")
                files = gr.File(file_count="multiple", file_types=["image", ".zip"], type="filepath",
                                label="Photos (or a zip of photos)", elem_id="photos")
                button = gr.Button("Analyse", variant="primary", elem_id="analyse")
                chooser = gr.Dropdown([], label="Photo shown below", elem_id="chooser")
                with gr.Row():
                    chart = gr.Label(label="Class probabilities", num_top_classes=10, elem_id="probabilities")
                    crop = gr.Image(label="Aligned crop and landmarks", type="numpy", elem_id="crop",
                                    interactive=False)
                    overlay = gr.Image(label="Saliency overlay", type="numpy", elem_id="saliency",
                                       interactive=False)
                caveat = gr.Markdown(self.caveat(first), elem_id="caveat")
                flags = gr.Markdown(elem_id="flags")
                neighbours = gr.Gallery(label="Nearest training photos", columns=5, height=220, elem_id="neighbours",
                                        visible=any(s.show_neighbours for s in self.services.values()))
                table = gr.Dataframe(label="Every photo", elem_id="table", interactive=False)
                with gr.Accordion("As JSON (the /predict API's answer)", open=False):
                    summary = gr.JSON(elem_id="json")
                state = gr.State({})
                shown = [chart, crop, overlay, flags, neighbours]
                button.click(self.predict, [files, method, run], [summary, table, chooser, *shown, state],
                             api_name="predict")
                # .input: only a person's choice; .change would also fire on the chooser update of every
                # Analyse and send the same images again, which Gradio rewrites in place while the browser
                # still reads the first copy ("Too little data for declared Content-Length", a blank overlay)
                chooser.input(self.show, [chooser, state], shown, api_visibility="private")
                run.change(self.methods_of, run, method, api_visibility="private")
                run.change(self.caveat, run, caveat, api_visibility="private")
            with gr.Tab("Batch"):
                gr.Markdown("Every photo scored with the chosen run (no saliency): one CSV row per file, refused "
                            "files included with the reason; the columns of `python -m facediag.predict`'s CSV.")
                batch_run = gr.Dropdown(list(self.services), value=first, label="Run", visible=several)
                batch_files = gr.File(file_count="multiple", file_types=["image", ".zip"], type="filepath",
                                      label="Photos (or a zip of photos)", elem_id="batch_photos")
                batch_button = gr.Button("Score all", variant="primary", elem_id="score_all")
                csv = gr.File(label="predictions.csv", elem_id="batch_csv")
                batch_table = gr.Dataframe(interactive=False, elem_id="batch_table")
                batch_button.click(self.batch, [batch_files, batch_run], [csv, batch_table], api_name="batch")
            for name, service in self.services.items():
                with gr.Tab(f"Model card: {service.run_dir.name}" if several else "Model card"):
                    gr.Markdown(model_card(service.run_dir), elem_id=f"card_{list(self.services).index(name)}")
        return page


def launch(services: Sequence[RunService], port: int | None = None, max_file_mb: int = DEFAULT_MAX_FILE_MB,
           block: bool = True, quiet: bool = False) -> tuple[gr.Blocks, str]:
    """Serve the page on 127.0.0.1:``port`` (a free one when None); returns (page, its URL). ``block``: serve until
    interrupted."""
    page = App(services).blocks()
    page.queue(default_concurrency_limit=2)  # two visitors at once; the model itself is behind one lock
    theme = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                              font_mono=["ui-monospace", "monospace"])  # no web fonts: offline
    page.launch(server_name=HOST, server_port=port or free_port(), share=False, max_file_size=f"{max_file_mb}mb",
                show_error=True, ssr_mode=False, prevent_thread_lock=True, quiet=quiet, theme=theme,
                inbrowser=False, enable_monitoring=False)
    url = f"http://{HOST}:{page.server_port}/"
    if block:
        page.block_thread()
    return page, url

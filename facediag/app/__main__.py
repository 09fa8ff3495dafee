"""`python -m facediag.app run=<run dir> [run=<run dir> ...] [port=<n>] [show_neighbours=true] [key=value ...]`.

Serves the page on http://127.0.0.1:<port>/ (default 7860) until Ctrl-C; no public link, no analytics. Each
``run=`` gets its model card and can be chosen on the page. Research tool, not a diagnosis.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from facediag.core.errors import UserError, exit_on_user_error
from facediag.core.startup import pause_collection, resume_collection

OPTIONS: dict[str, str] = {
    "run": "a run dir of train.py (repeat for several runs; at least one)",
    "port": "the port on 127.0.0.1 (default 7860; 0: any free port)",
    "show_neighbours": "true: show the k nearest training photos of each photo (off: training photos are private)",
    "k": "how many nearest training photos (default 3)",
    "max_file_mb": "the largest upload in MB (default 25)",
    "max_pixels": "the most pixels an image may have (default 50000000; larger ones are refused before decoding)",
    "threads": "torch threads (default torch's choice; 1 answers faster on a busy shared machine)",
}
USAGE = "usage: python -m facediag.app run=<run dir> [run=<run dir> ...] [key=value ...]\n" + "\n".join(
    f"  {name}=  {text}" for name, text in OPTIONS.items()
)


def parse(argv: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """(run dirs, the other options); a usage message for anything else."""
    runs: list[str] = []
    options: dict[str, str] = {}
    for arg in argv:
        key, sep, value = arg.partition("=")
        if not sep or key not in OPTIONS or not value:
            raise SystemExit(f"{USAGE}\nnot understood: {arg!r}")
        if key == "run":
            runs.append(value)
        else:
            options[key] = value
    if not runs:
        raise SystemExit(f"{USAGE}\nrun=<run dir> is required")
    for key in ("port", "k", "max_file_mb", "max_pixels", "threads"):
        if key in options and not options[key].isdigit():
            raise SystemExit(f"{USAGE}\n{key} must be a whole number, got {options[key]!r}")
    if options.get("show_neighbours", "false").lower() not in ("true", "false"):
        raise SystemExit(f"{USAGE}\nshow_neighbours must be true or false")
    return runs, options


@exit_on_user_error
def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    runs, options = parse(sys.argv[1:] if argv is None else argv)
    try:
        from facediag.app.ui import DEFAULT_MAX_FILE_MB, launch
    except ImportError as err:
        raise UserError(f"the app needs Gradio: pip install 'facediag[app]' ({err})") from None
    from facediag.app.service import RunService
    from facediag.core.imageio import DEFAULT_MAX_PIXELS
    from facediag.scoring.results import DISCLAIMER

    if options.get("threads"):
        import torch

        torch.set_num_threads(int(options["threads"]))
    services = []
    for run in runs:
        try:
            services.append(RunService(run, options.get("show_neighbours", "false").lower() == "true",
                                       int(options.get("k", 3)), int(options.get("max_pixels", DEFAULT_MAX_PIXELS))))
        except (FileNotFoundError, ValueError) as err:
            raise UserError(str(err)) from None
    resume_collection()
    port = int(options.get("port", 7860))
    page, url = launch(services, port or None, int(options.get("max_file_mb", DEFAULT_MAX_FILE_MB)), block=False,
                       quiet=True)
    print(f"facediag app: {url}  ({len(services)} run(s): {', '.join(s.name for s in services)})\n{DISCLAIMER}",
          flush=True)
    try:
        page.block_thread()
    except KeyboardInterrupt:
        page.close()
    return 0


if __name__ == "__main__":
    pause_collection()  # the command only: until the models are loaded (facediag.core.startup)
    sys.exit(main())

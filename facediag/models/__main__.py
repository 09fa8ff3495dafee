"""``python -m facediag.models``: the registry table of every backbone x weights pair.

Columns: backbone, weights (pretraining dataset), architecture, DTL2 feature layer and width, input
size, MACs and parameters of the adapted model with a 2-class head (ptflops), and where the weight
file is on this machine (cache folder, package, or missing). ``--no-macs`` skips the counting.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from facediag.models.flops import count_macs, unweighted_model
from facediag.models.registry import BACKBONES, backbone_config, list_specs
from facediag.models.weights import WeightSpec, default_cache_dir, locate_weight_file, packaged_file


def file_status(spec: WeightSpec, cache_dir: Path) -> str:
    if not spec.needs_file:
        return "- (random init)"
    found = locate_weight_file(spec, cache_dir=cache_dir)
    if found is None:
        return f"missing: {spec.file}"
    return "package" if found == packaged_file(spec) else "cache"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m facediag.models", description=__doc__.splitlines()[0])
    parser.add_argument("--cache-dir", type=Path, default=default_cache_dir(), help="weight cache folder")
    parser.add_argument("--classes", type=int, default=2, help="head size of the adapted model for MACs")
    parser.add_argument("--no-macs", action="store_true", help="skip MAC counting")
    args = parser.parse_args(argv)

    header = ("backbone", "weights", "arch", "features", "input", f"GMac ({args.classes} cl.)", "Mparams",
              "file")
    rows = []
    built: dict[tuple[str, str, int], tuple[int, int | None, int | None]] = {}
    for spec in list_specs():
        layer = backbone_config(spec.backbone)["feature_layer"]
        key = (spec.backbone, spec.arch, spec.input_size)
        if key not in built:  # weights do not change widths or MACs: count on random weights
            model = unweighted_model(spec.backbone, spec)
            macs, params = (None, None) if args.no_macs else count_macs(model, num_classes=args.classes)
            built[key] = (model.feature_dim, macs, params)
        dim, macs, params = built[key]
        rows.append((
            spec.backbone, spec.dataset, spec.arch, f"{layer} ({dim})", str(spec.input_size),
            "-" if macs is None else f"{macs / 1e9:.2f}", "-" if params is None else f"{params / 1e6:.2f}",
            file_status(spec, args.cache_dir),
        ))
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    print(f"weight cache: {args.cache_dir}  (FACEDIAG_CACHE_DIR or ~/.cache/facediag, + /weights)")
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip())
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    other = {name: sorted(b.feature_layers) for name, b in BACKBONES.items() if len(b.feature_layers) > 1}
    print(f"other feature layers (backbone.feature_layer=...): {other}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

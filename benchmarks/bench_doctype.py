"""Document-type classifier: latency per page on one core (preprocessing included), and accuracy of
the shipped int8 model on the real held-out pages of ``../shared/data/dev`` when that folder exists.

    python -m benchmarks.run doctype
"""

from __future__ import annotations

import functools

import numpy as np

from benchmarks.harness import machine, measure, single_core
from device.inference.config import DoctypeConfig
from device.inference.doctype import DOCTYPES, load_classifier, prepare
from training.generator import degrade, render


def _page(doctype: str, seed: int, dpi: int) -> np.ndarray:
    return degrade(render(doctype, seed, split="heldout", dpi=dpi), seed, split="heldout", strength=0.5)


def main(argv: list[str]) -> int:
    single_core()
    cfg = DoctypeConfig()
    print(f"Machine: {machine()}; one core (sched_setaffinity), one interpreter thread.\n")
    with load_classifier(cfg) as clf:
        size = clf.input_size
        print(f"Model `{cfg.model_path.name}` version `{clf.version}`, "
              f"{cfg.model_path.stat().st_size / 1024:.0f} KiB, input {size}x{size} RGB uint8.\n")
        print("| input | what | latency |")
        print("|---|---|---|")
        pages = {
            "A4 at 300 dpi (2480x3508)": _page("official_document", 1, 300),
            "A4 at 200 dpi (1654x2339)": _page("application_form", 2, 200),
            "ID card at 300 dpi (1011x638)": _page("id_card", 3, 300),
        }
        prepared = prepare(pages["A4 at 200 dpi (1654x2339)"], size)
        print(f"| - | model only (`scores`) | {measure(lambda: clf.scores(prepared), repeat=100).row()} |")
        for name, page in pages.items():
            pre = measure(functools.partial(prepare, page, size), 50)
            both = measure(functools.partial(clf.classify, page), 50)
            print(f"| {name} | preprocessing only (`prepare`) | {pre.row()} |")
            print(f"| {name} | `classify` (preprocessing + model) | {both.row()} |")
        _real_accuracy(clf, size)
    return 0


def _real_accuracy(clf: object, size: int) -> None:
    from training import dataset

    root = dataset.default_real_root()
    if not (root / "labels.csv").exists():
        print("\n(no ../shared/data/dev here: real-page accuracy skipped)")
        return
    _, held = dataset.real_pages(root)
    print(f"\nReal held-out pages of `../shared/data/dev` ({len(held)} pages never trained on, turned "
          "upright as the pipeline does; argmax of the int8 model):\n")
    print("| source | label | class | pages | correct | accuracy |")
    print("|---|---|---|---|---|---|")
    groups: dict[tuple[str, str, str], list[dataset.RealPage]] = {}
    for page in held:
        groups.setdefault((page.path.parent.name, page.label, page.doctype), []).append(page)
    total = right_all = 0
    per_class: dict[str, list[int]] = {}
    for (folder, label, doctype), pages in sorted(groups.items()):
        arrays = dataset.real_arrays(pages, size)
        pred = np.stack([clf.scores(x) for x in arrays.x]).argmax(axis=1)  # type: ignore[attr-defined]
        right = int((pred == DOCTYPES.index(doctype)).sum())
        total, right_all = total + len(arrays), right_all + right
        acc = per_class.setdefault(doctype, [0, 0])
        acc[0], acc[1] = acc[0] + len(arrays), acc[1] + right
        print(f"| {folder} | {label} | {doctype} | {len(arrays)} | {right} | {right / max(1, len(arrays)):.0%} |")
    for doctype, (n, right) in per_class.items():
        print(f"| all | | {doctype} | {n} | {right} | {right / max(1, n):.0%} |")
    print(f"| all | | all | {total} | {right_all} | {right_all / max(1, total):.0%} |")

if __name__ == "__main__":
    raise SystemExit(main([]))

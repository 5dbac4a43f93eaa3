"""Document-type classifier: latency per page on one core (preprocessing included), and accuracy of
the shipped int8 model on the real held-out pages of ``../shared/data/dev`` when that folder exists.

    python -m benchmarks.run doctype
"""

from __future__ import annotations

import functools

import numpy as np

from benchmarks.harness import machine, measure, single_core
from device.inference.doctype import DOCTYPES, DoctypeConfig, load_classifier, prepare
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
    arrays = dataset.real_arrays(held, size)
    scores = np.stack([clf.scores(x) for x in arrays.x])  # type: ignore[attr-defined]
    pred = scores.argmax(axis=1)
    print(f"\nReal held-out pages ({len(arrays)} pages never trained on, upright, argmax of the int8 model):\n")
    print("| class | pages | correct | accuracy |")
    print("|---|---|---|---|")
    for cls in sorted(set(arrays.y.tolist())):
        mask = arrays.y == cls
        right = int((pred[mask] == cls).sum())
        print(f"| {DOCTYPES[cls]} | {int(mask.sum())} | {right} | {right / int(mask.sum()):.0%} |")
    print(f"| all | {len(arrays)} | {int((pred == arrays.y).sum())} | {float((pred == arrays.y).mean()):.0%} |")


if __name__ == "__main__":
    raise SystemExit(main([]))

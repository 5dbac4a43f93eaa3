"""Document type on a labelled folder of images: per-class accuracy, macro accuracy, the confusion
matrix and the unsure rate, through the whole page pipeline (found, flattened, turned upright,
then typed) as ``sohoa-device inspect`` does.

    python -m benchmarks.eval_doctype --data DIR [--map invoice=receipt,scientific_paper=other]
    python -m benchmarks.eval_doctype --render DIR --split heldout --per-class 12   # make a set

``DIR/labels.csv`` has a header and the columns ``path,label[,note]`` (paths relative to DIR).
Labels not among the classes after ``--map`` are skipped and counted. A page typed ``unsure``
counts as not correct in the accuracy (the clerk was asked rather than told), and the unsure rate
is reported beside it; "answered" accuracy is over the pages not typed unsure.

Never point this at the sets reserved for the independent evaluation (listed in the document-type
issue: MIDV, SROIE, FUNSD, MC-OCR, the Roboflow "Receipt or Invoice" set, ...): rows under a
folder named after one of them are refused.

``--render`` writes photographed-style and scanned-style renders of the project's own generator
(fictitious content) with their labels: phone photos on a desk with perspective, shading, glare
and JPEG; scans with the generator's held-out degradations. They are renders, not real papers.
"""

from __future__ import annotations

import argparse
import csv
import random
import sys
import time
from collections import Counter
from pathlib import Path

import cv2
import numpy as np

from device.inference.config import DoctypeConfig, TitleConfig
from device.inference.doctype import DOCTYPES, UNSURE, load_classifier_or_fallback
from device.inference.pipeline import PagePipeline

#: Folder names of the reserved evaluation sets: refused.
RESERVED = ("roboflow", "midv", "sroie", "funsd", "mc-ocr", "mcocr")


def read_labels(data: Path, mapping: dict[str, str]) -> tuple[list[tuple[Path, str]], Counter[str]]:
    rows: list[tuple[Path, str]] = []
    skipped: Counter[str] = Counter()
    with (data / "labels.csv").open(encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            rel, label = row["path"], row["label"].strip()
            if any(r in rel.lower() for r in RESERVED):
                skipped["reserved set (refused)"] += 1
                continue
            label = mapping.get(label, label)
            if label not in DOCTYPES:
                skipped[label] += 1
                continue
            rows.append((data / rel, label))
    return rows, skipped


def evaluate(rows: list[tuple[Path, str]], cfg: DoctypeConfig, progress: bool = True,
             errors: bool = False) -> list[tuple[str, str, float]]:
    """(truth, answer, confidence) per image, typed through the page pipeline."""
    out: list[tuple[str, str, float]] = []
    classifier = load_classifier_or_fallback(cfg)
    with PagePipeline(classifier=classifier) as pipeline:
        for n, (path, truth) in enumerate(rows, 1):
            result = pipeline.process_file(path)
            out.append((truth, result.doctype or "none", float(result.confidence or 0.0)))
            if errors and result.doctype != truth:
                print(f"\r{path.name}: {truth} typed {result.doctype} ({result.confidence})", file=sys.stderr)
            if progress:
                print(f"\r{n}/{len(rows)}", end="", file=sys.stderr, flush=True)
    if progress:
        print(file=sys.stderr)
    return out


def report(results: list[tuple[str, str, float]], title: str) -> str:
    """Markdown: per-class table, macro accuracy, unsure rate, confusion matrix."""
    classes = [c for c in DOCTYPES if any(t == c for t, _, _ in results)]
    answers = [*DOCTYPES, UNSURE]
    lines = [f"#### {title}", "", "| class | pages | correct | unsure | accuracy | answered accuracy |",
             "|---|---|---|---|---|---|"]
    accs: list[float] = []
    for c in classes:
        mine = [(t, a) for t, a, _ in results if t == c]
        ok = sum(a == t for t, a in mine)
        unsure = sum(a == UNSURE for _, a in mine)
        answered = len(mine) - unsure
        acc = ok / len(mine)
        accs.append(acc)
        ans = f"{ok / answered:.0%}" if answered else "-"
        lines.append(f"| {c} | {len(mine)} | {ok} | {unsure} | {acc:.0%} | {ans} |")
    total = len(results)
    unsure_all = sum(a == UNSURE for _, a, _ in results)
    answered_all = total - unsure_all
    ok_all = sum(a == t for t, a, _ in results)
    lines += ["", f"**Macro accuracy {np.mean(accs):.1%}** over {len(classes)} classes ({total} pages); "
              f"unsure {unsure_all}/{total} ({unsure_all / max(1, total):.0%}); "
              f"accuracy on the answered pages {ok_all - 0}/{answered_all}"
              f" ({(ok_all / answered_all if answered_all else 0):.0%}).", ""]
    used = [a for a in answers if any(x == a for _, x, _ in results)]
    short = {a: a.replace("_certificate", "_cert").replace("official_document", "official")
             .replace("application_form", "form").replace("dossier_receipt", "dossier_rcpt") for a in used}
    lines.append("| truth \\ answer | " + " | ".join(short[a] for a in used) + " |")
    lines.append("|---|" + "---|" * len(used))
    for c in classes:
        counts = Counter(a for t, a, _ in results if t == c)
        lines.append(f"| {c} | " + " | ".join(str(counts.get(a, 0)) for a in used) + " |")
    return "\n".join(lines)


def sweep(results: list[tuple[str, str, float]], unsure_cost: float = 0.4) -> str:
    """How the unsure floor trades wrong answers for questions, from results typed with floor 0:
    a page whose confidence is below the floor would have been ``unsure``. The cost counts a
    wrong answer 1 and a question ``unsure_cost`` (a clerk's glance is cheaper than a misfiled page)."""
    lines = ["| floor | macro accuracy | unsure | wrong | cost |", "|---|---|---|---|---|"]
    classes = sorted({t for t, _, _ in results})
    for floor in (0.0, 0.3, 0.4, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9):
        typed = [(t, UNSURE if c < floor else a) for t, a, c in results]
        accs = [np.mean([a == t for t, a in typed if t == c]) for c in classes]
        unsure = sum(a == UNSURE for _, a in typed)
        wrong = sum(a not in (t, UNSURE) for t, a in typed)
        cost = (wrong + unsure_cost * unsure) / max(1, len(typed))
        lines.append(f"| {floor:.2f} | {np.mean(accs):.1%} | {unsure} | {wrong} | {cost:.3f} |")
    return "\n".join(lines)


def render_set(out: Path, split: str, per_class: int, seed0: int) -> int:
    """Write photographed- and scanned-style renders of every class but `other` (and `other`)."""
    from PIL import Image

    from device.inference import synthetic
    from training.generator import degrade, render

    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for doctype in DOCTYPES:
        for i in range(per_class):
            seed = seed0 + i
            rng = random.Random(f"eval:{doctype}:{seed}:{split}")
            card = doctype == "id_card"
            page = render(doctype, seed, split="heldout" if split == "heldout" else "train", dpi=400 if card else 200)
            if i % 2 == 0:  # a phone photo on a desk
                fw, fh = (1600, 1200) if rng.random() < 0.5 else (2000, 1500)
                h, w = page.shape[:2]
                fill = rng.uniform(0.55, 0.85)
                s = min(fw * fill / w, fh * fill / h)
                cx, cy = fw / 2 + rng.uniform(-0.08, 0.08) * fw, fh / 2 + rng.uniform(-0.06, 0.06) * fh
                hw, hh = w * s / 2, h * s / 2
                quad = [(cx - hw + rng.uniform(-0.04, 0.04) * fw, cy - hh + rng.uniform(-0.03, 0.03) * fh),
                        (cx + hw + rng.uniform(-0.04, 0.04) * fw, cy - hh + rng.uniform(-0.03, 0.03) * fh),
                        (cx + hw + rng.uniform(-0.03, 0.03) * fw, cy + hh + rng.uniform(-0.03, 0.03) * fh),
                        (cx - hw + rng.uniform(-0.03, 0.03) * fw, cy + hh + rng.uniform(-0.03, 0.03) * fh)]
                img = synthetic.camera_scene(page, (fw, fh), quad, seed=seed, light=rng.uniform(0.7, 1.0)).image
                if rng.random() < 0.4:
                    img = synthetic.glare(img, (rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.7)),
                                          rng.uniform(0.05, 0.12), seed)
                name = f"{doctype}_{seed}_photo.jpg"
                Image.fromarray(img[..., ::-1]).save(out / name, quality=rng.randint(55, 85))
            else:  # a scan
                img = degrade(page, seed, split="heldout" if split == "heldout" else "train", strength=0.6)
                name = f"{doctype}_{seed}_scan.jpg"
                dpi = 400 if card else 200
                Image.fromarray(img[..., ::-1]).save(out / name, quality=85, dpi=(dpi, dpi))
            rows.append((name, doctype, "photo" if i % 2 == 0 else "scan"))
    with (out / "labels.csv").open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "note"])
        w.writerows(rows)
    return len(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.eval_doctype", description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, help="folder with labels.csv")
    ap.add_argument("--map", default="", help="label renames, e.g. invoice=receipt,scientific_paper=other")
    ap.add_argument("--title", default="", help="heading of the report")
    ap.add_argument("--no-text", action="store_true", help="type from the image model alone")
    ap.add_argument("--min-confidence", type=float, default=None, help="unsure floor (default: the config's)")
    ap.add_argument("--sweep", action="store_true", help="type with floor 0 and tabulate unsure floors")
    ap.add_argument("--save", type=Path, help="write path,truth,answer,confidence (floor 0) to this CSV")
    ap.add_argument("--load", type=Path, help="report from a CSV written by --save instead of typing again")
    ap.add_argument("--errors", action="store_true", help="list the pages typed wrongly on stderr")
    ap.add_argument("--render", type=Path, help="write a set of generated renders to this folder and exit")
    ap.add_argument("--split", choices=("train", "heldout"), default="heldout")
    ap.add_argument("--per-class", type=int, default=10)
    ap.add_argument("--seed0", type=int, default=100_000)
    args = ap.parse_args(argv)
    if args.render is not None:
        n = render_set(args.render, args.split, args.per_class, args.seed0)
        print(f"{n} renders written to {args.render}")
        return 0
    if args.load is not None:
        with args.load.open(encoding="utf-8", newline="") as f:
            saved = [(r["truth"], r["answer"], float(r["confidence"])) for r in csv.DictReader(f)]
        floor = DoctypeConfig().min_confidence if args.min_confidence is None else args.min_confidence
        print(report([(t, UNSURE if c < floor else a, c) for t, a, c in saved], f"{args.title or args.load} "
                     f"(floor {floor})"))
        if args.sweep:
            print("\n" + sweep(saved))
        return 0
    if args.data is None or not (args.data / "labels.csv").is_file():
        print("eval_doctype: --data DIR with a labels.csv is required", file=sys.stderr)
        return 2
    mapping = dict(kv.split("=", 1) for kv in args.map.split(",") if "=" in kv)
    rows, skipped = read_labels(args.data, mapping)
    # Accuracy, not speed: a reading slowed by a busy machine is waited for.
    update: dict[str, object] = {"text": TitleConfig(timeout_s=600)}
    if args.no_text:
        update["text"] = TitleConfig(enabled=False)
    # Typed with floor 0, the floor applied after: the classifier's own rule (below the floor is
    # unsure), so one run gives the report at the floor and the sweep over floors.
    floor = DoctypeConfig().min_confidence if args.min_confidence is None else args.min_confidence
    # Except when the title is read only for the pages the image model is unsure of: "unsure" is
    # relative to the floor, so at floor 0 no title would ever be read. Then the floor is the
    # classifier's own (pages below it come back unsure) and --sweep tabulates nothing new.
    text_cfg = update["text"]
    assert isinstance(text_cfg, TitleConfig)
    update["min_confidence"] = floor if (not args.no_text and text_cfg.when == "unsure") else 0.0
    cfg = DoctypeConfig().model_copy(update=update)
    cv2.setNumThreads(1)
    start = time.perf_counter()
    typed = evaluate(rows, cfg, errors=args.errors)
    took = time.perf_counter() - start
    if args.save is not None:
        with args.save.open("w", encoding="utf-8", newline="") as f:
            w = csv.writer(f)
            w.writerow(["path", "truth", "answer", "confidence"])
            w.writerows((p.name, t, a, c) for (p, _), (t, a, c) in zip(rows, typed, strict=True))
    results = [(t, UNSURE if c < floor else a, c) for t, a, c in typed]
    heading = args.title or f"{args.data} ({'image only' if args.no_text else 'image + title'}, floor {floor})"
    print(report(results, heading))
    if args.sweep:
        print("\n" + sweep(typed))
    print(f"\n{len(rows)} pages in {took:.0f} s; skipped labels: {dict(skipped) or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

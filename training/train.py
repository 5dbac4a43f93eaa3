"""``make model`` / ``python -m training.train``: generate data, train the document-type classifier,
convert it to a full-integer (int8) ``.tflite``, evaluate the *converted* model through the
device's own loader, and write ``device/models/`` (model, labels, version, training report).

    python -m training.train                       # the shipped model (~30 min on 2 cores)
    python -m training.train --quick --out /tmp/m  # a smoke run in a minute or two

Everything that decides the result is on the command line and written into the report.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import logging
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from device.inference.config import MODELS_DIR, DoctypeConfig
from device.inference.doctype import DOCTYPES, LABELS_VI, load_classifier
from training import dataset, reserved
from training.dataset import Arrays

_log = logging.getLogger("training.train")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training.train", description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=MODELS_DIR, help="where the model files go")
    p.add_argument("--work", type=Path, default=None, help="cache for generated arrays (default: a temp dir)")
    p.add_argument("--seed", type=int, default=20261125)
    p.add_argument("--size", type=int, default=160, help="square input side, pixels")
    p.add_argument("--alpha", type=float, default=1.0, help="MobileNetV3-small width multiplier")
    p.add_argument("--per-class", type=int, default=700, help="generated training pages per class")
    p.add_argument("--val-per-class", type=int, default=30)
    p.add_argument("--heldout-per-class", type=int, default=100)
    p.add_argument("--real-augment", type=int, default=10, help="degraded copies per real training page")
    p.add_argument("--real-dir", type=Path, default=None, help="real pages (default ../shared/data/dev)")
    p.add_argument("--corrections", type=Path, default=None, metavar="DIR",
                   help="the fleet's corrections export (/api/v1/corrections/export.zip) unzipped: half trains, "
                        "half joins the real held-out set")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--dpi", type=int, default=60, help="generator resolution for training pages")
    p.add_argument("--workers", type=int, default=2, help="processes generating pages")
    p.add_argument("--threads", type=int, default=2, help="TensorFlow threads")
    p.add_argument("--quick", action="store_true", help="tiny smoke run (not for shipping)")
    return p


def _build_model(size: int, alpha: float, n_classes: int) -> tuple[Any, Any]:
    """(model to train, model to export): same weights, augmentation only in the first."""
    import keras

    base = keras.applications.MobileNetV3Small(
        input_shape=(size, size, 3), alpha=alpha, minimalistic=True, include_top=False, weights=None,
        pooling="avg", include_preprocessing=True,
    )
    for layer in base.layers:
        # Keras' MobileNetV3 uses momentum 0.999: over a ~2000-step run the moving statistics would
        # still remember their initial values, and evaluation would be near chance.
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.9
    # Training-time only: mirror and shift the page so no layout cue is learnt by its position
    # alone (seal right, photo left...). The exported model shares the weights without them.
    augment = [keras.layers.RandomFlip("horizontal"),
               keras.layers.RandomTranslation(0.04, 0.04, fill_mode="constant", fill_value=128.0)]
    dropout = keras.layers.Dropout(0.2)
    head = keras.layers.Dense(n_classes, activation="softmax", name="doctype")
    inputs = keras.Input((size, size, 3), name="page")
    x = inputs
    for layer in augment:
        x = layer(x)
    train_model = keras.Model(inputs, head(dropout(base(x))), name="sohoa_doctype_train")
    page = keras.Input((size, size, 3), name="page")
    infer_model = keras.Model(page, head(dropout(base(page))), name="sohoa_doctype")
    return train_model, infer_model


_PARTS = ("train", "val", "heldout", "real_train", "real_held")


def _save_arrays(path: Path, train: Arrays, n_synth: int, *rest: Arrays) -> None:
    blobs: dict[str, Any] = {"n_synth": np.array(n_synth)}
    for name, arr in zip(_PARTS, (train, *rest), strict=True):
        blobs[f"{name}_x"], blobs[f"{name}_y"] = arr.x, arr.y
        blobs[f"{name}_src"] = np.array(arr.source, dtype=object)
    np.savez(path, **blobs)


def _load_arrays(path: Path) -> tuple[Arrays, int, Arrays, Arrays, Arrays, Arrays]:
    z = np.load(path, allow_pickle=True)  # our own cache file, written just above by this program
    parts = [Arrays(z[f"{n}_x"], z[f"{n}_y"], [str(v) for v in z[f"{n}_src"]]) for n in _PARTS]
    return parts[0], int(z["n_synth"]), parts[1], parts[2], parts[3], parts[4]


def _convert_int8(model: Any, rep: np.ndarray, workdir: Path) -> bytes:
    import tensorflow as tf

    saved = workdir / "saved_model"
    model.export(str(saved), format="tf_saved_model", verbose=False)
    conv = tf.lite.TFLiteConverter.from_saved_model(str(saved))
    conv.optimizations = [tf.lite.Optimize.DEFAULT]

    def representative() -> Any:
        for i in range(len(rep)):
            yield [rep[i : i + 1].astype(np.float32)]

    conv.representative_dataset = representative
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.uint8
    conv.inference_output_type = tf.uint8
    return bytes(conv.convert())


def _confusion(y: np.ndarray, pred: np.ndarray, n: int) -> np.ndarray:
    m = np.zeros((n, n), np.int64)
    for t, p in zip(y.tolist(), pred.tolist(), strict=True):
        m[t, p] += 1
    return m


def _evaluate(clf: Any, data: Arrays) -> dict[str, Any]:
    probs = np.stack([clf.scores(x) for x in data.x]) if len(data) else np.zeros((0, len(DOCTYPES)))
    pred = probs.argmax(axis=1) if len(data) else np.zeros((0,), np.int64)
    conf = probs.max(axis=1) if len(data) else np.zeros((0,))
    cm = _confusion(data.y, pred, len(DOCTYPES))
    per_class = {}
    for i, name in enumerate(DOCTYPES):
        total = int(cm[i].sum())
        if total:
            per_class[name] = {"n": total, "correct": int(cm[i, i]), "accuracy": cm[i, i] / total}
    errors = [(data.source[k], DOCTYPES[int(data.y[k])], DOCTYPES[int(pred[k])], float(conf[k]))
              for k in range(len(data)) if pred[k] != data.y[k]]
    return {
        "n": len(data),
        "accuracy": float((pred == data.y).mean()) if len(data) else float("nan"),
        "per_class": per_class,
        "confusion": cm.tolist(),
        "low_confidence_rate": float((conf < 0.5).mean()) if len(data) else float("nan"),
        "errors": errors[:40],
    }


def _md_confusion(cm: list[list[int]]) -> list[str]:
    short = [d[:8] for d in DOCTYPES]
    lines = ["| true \\ predicted | " + " | ".join(short) + " |", "|---" * (len(short) + 1) + "|"]
    for i, row in enumerate(cm):
        if sum(row):
            lines.append(f"| {DOCTYPES[i]} | " + " | ".join(str(v) for v in row) + " |")
    return lines


def _report(args: argparse.Namespace, info: dict[str, Any], evals: dict[str, dict[str, Any]]) -> str:
    out = [
        "# Document-type classifier: training report",
        "",
        f"Model `doctype.tflite` version `{info['version']}`, {info['size_bytes']} bytes, built {info['built']} "
        f"in {info['minutes']:.1f} min on {info['machine']}.",
        "",
        "## Command and settings",
        "",
        f"`{info['command']}`",
        "",
        "| setting | value |",
        "|---|---|",
    ]
    for key in ("seed", "size", "alpha", "per_class", "val_per_class", "heldout_per_class", "real_augment",
                "epochs", "batch", "lr", "dpi"):
        out.append(f"| {key} | {getattr(args, key)} |")
    out += [
        "",
        "## Data",
        "",
        f"- Training: {info['n_train_synth']} generated pages (`split=\"train\"`: fonts DejaVu Sans/Serif, "
        "Liberation Sans/Serif, Noto Sans/Serif; layout variants 0-1; scanner-like degradations) and "
        f"{info['n_train_real']} real-page inputs ({info['n_real_train_pages']} real pages + "
        f"{args.real_augment} degraded copies each).",
        f"- Validation (monitored only; the final epoch is kept): {info['n_val']} generated pages, "
        "training split, unseen seeds.",
        f"- Held-out generator set: {evals['heldout']['n']} pages (`split=\"heldout\"`: fonts DejaVu "
        "Sans/Serif Condensed, Liberation Sans Narrow, Noto Serif Display; layout variant 2; camera-like "
        "degradations never used in training: motion blur, speckle, folds, shadows/vignette, resolution "
        "loss, stronger perspective).",
        f"- Real held-out set: {evals['real']['n']} real pages from `../shared/data/dev` never trained on "
        "(receipts and invoices as `receipt`, scientific papers and printed pages as `other`).",
        "- Sets reserved for the independent evaluation (`training/reserved.py`: by folder name and by the "
        "sha256 of every reserved image known here, e.g. the Roboflow \"Receipt or Invoice\" folder of "
        f"`../shared/data/dev`) were neither trained nor judged on; every real page used is listed with "
        f"its sha256 in `{MANIFEST}`.",
        "",
        "## Accuracy of the int8 TFLite model (argmax, through device.inference.doctype)",
        "",
        "| set | n | accuracy | below 0.5 confidence |",
        "|---|---|---|---|",
    ]
    for name, ev in evals.items():
        out.append(f"| {name} | {ev['n']} | {ev['accuracy']:.2%} | {ev['low_confidence_rate']:.1%} |")
    for name in ("heldout", "real"):
        ev = evals[name]
        out += ["", f"### {name}: per class", "", "| class | n | accuracy |", "|---|---|---|"]
        for cls, pc in ev["per_class"].items():
            out.append(f"| {cls} | {pc['n']} | {pc['accuracy']:.1%} |")
        out += ["", f"### {name}: confusion matrix", "", *_md_confusion(ev["confusion"])]
        if ev["errors"]:
            out += ["", f"Errors ({len(ev['errors'])} shown): "
                    + "; ".join(f"{s} {t}→{p} ({c:.2f})" for s, t, p, c in ev["errors"][:15])]
    out += ["", f"Keras (float) accuracy before conversion: validation {info['keras_val_acc']:.2%}, "
            f"held-out {info['keras_heldout_acc']:.2%}.", ""]
    return "\n".join(out)


MANIFEST = "doctype_training_manifest.csv"


def _manifest(train_pages: list[dataset.RealPage], held_pages: list[dataset.RealPage]) -> str:
    """CSV of every real page the model was trained or judged on: role, file name, class, sha256.

    Each page is checked again here (:func:`training.reserved.check_page`): a reserved page
    stops the run before any model file is written."""
    lines = ["role,file,doctype,sha256"]
    for role, pages in (("train", train_pages), ("heldout", held_pages)):
        for page in sorted(pages, key=lambda p: (p.path.parent.name, p.path.name)):
            if not page.path.is_file():
                continue
            digest = reserved.check_page(page.path)
            lines.append(f"{role},{page.path.parent.name}/{page.path.name},{page.doctype},{digest}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.quick:
        args.per_class, args.val_per_class, args.heldout_per_class = 12, 4, 6
        args.epochs, args.real_augment = 1, 1
    t0 = time.monotonic()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    random.seed(args.seed)
    np.random.seed(args.seed % 2**32)
    work = args.work or Path(tempfile.mkdtemp(prefix="sohoa-doctype-"))
    work.mkdir(parents=True, exist_ok=True)

    real_root = args.real_dir or dataset.default_real_root()
    real_train_pages: list[dataset.RealPage] = []
    real_held_pages: list[dataset.RealPage] = []
    if (real_root / "labels.csv").exists():
        real_train_pages, real_held_pages = dataset.real_pages(real_root)
    else:
        _log.warning("no real pages at %s: training on generated pages only", real_root)
    key = f"{args.per_class}-{args.val_per_class}-{args.heldout_per_class}-{args.size}-{args.dpi}-" \
          f"{args.real_augment}-{args.seed}-{len(real_train_pages)}"
    if args.corrections is not None:
        corrected_train, corrected_held = dataset.correction_pages(args.corrections)
        _log.info("corrections: %d pages train, %d held out", len(corrected_train), len(corrected_held))
        real_train_pages += corrected_train
        real_held_pages += corrected_held
        names = "".join(sorted(f"{p.path.name}{p.doctype}" for p in corrected_train + corrected_held))
        key += "-c" + hashlib.sha256(names.encode()).hexdigest()[:12]
    cache = work / f"arrays-{key}.npz"
    if cache.exists():
        _log.info("reusing generated arrays from %s", cache)
        train, n_synth, val, heldout, real_train, real_held = _load_arrays(cache)
    else:
        _log.info("generating %d training pages per class", args.per_class)
        train = dataset.synthetic("train", args.per_class, 0, args.size, dpi=args.dpi, workers=args.workers)
        n_synth = len(train)
        val = dataset.synthetic("train", args.val_per_class, 1_000_000, args.size, dpi=args.dpi,
                                workers=args.workers)
        heldout = dataset.synthetic("heldout", args.heldout_per_class, 2_000_000, args.size, dpi=100,
                                    clean_frac=0.05, workers=args.workers)
        real_train = dataset.real_arrays(real_train_pages, args.size, augment=args.real_augment, seed0=args.seed)
        real_held = dataset.real_arrays(real_held_pages, args.size)
        train = dataset.concat(train, real_train)
        _save_arrays(cache, train, n_synth, val, heldout, real_train, real_held)
    _log.info("data ready in %.0f s: train %d, val %d, held-out %d, real held-out %d", time.monotonic() - t0,
              len(train), len(val), len(heldout), len(real_held))

    import keras
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    keras.utils.set_random_seed(args.seed)
    n_cls = len(DOCTYPES)
    model, infer = _build_model(args.size, args.alpha, n_cls)
    steps = int(np.ceil(len(train) / args.batch)) * args.epochs
    sched = keras.optimizers.schedules.CosineDecay(args.lr, decay_steps=steps, warmup_target=None, alpha=0.02)
    model.compile(optimizer=keras.optimizers.AdamW(sched, weight_decay=1e-4),
                  loss=keras.losses.CategoricalCrossentropy(label_smoothing=0.05), metrics=["accuracy"])
    # class balance: real pages are oversampled through augmentation, weights even out the rest
    counts = np.bincount(train.y, minlength=n_cls).astype(np.float64)
    weights = {i: float(len(train) / (n_cls * c)) for i, c in enumerate(counts) if c}
    # The validation set (training split) saturates within a few epochs, so it cannot choose an
    # epoch: the cosine schedule runs to its end and the final weights are kept.
    onehot = np.eye(n_cls, dtype=np.float32)
    model.fit(train.x.astype(np.float32), onehot[train.y], batch_size=args.batch, epochs=args.epochs,
              validation_data=(val.x.astype(np.float32), onehot[val.y]), class_weight=weights,
              verbose=2, shuffle=True)
    model = infer
    model.compile(loss=keras.losses.CategoricalCrossentropy(), metrics=["accuracy"])
    model.save(str(work / "final.keras"))
    keras_val = float(model.evaluate(val.x.astype(np.float32), onehot[val.y], verbose=0)[1])
    keras_held = float(model.evaluate(heldout.x.astype(np.float32), onehot[heldout.y], verbose=0)[1])
    _log.info("keras: val %.4f, held-out %.4f", keras_val, keras_held)

    rng = np.random.default_rng(args.seed)
    rep = train.x[rng.choice(len(train), size=min(300, len(train)), replace=False)]
    blob = _convert_int8(model, rep, work)
    version = f"1.0-{hashlib.sha256(blob).hexdigest()[:10]}"

    args.out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="doctype-out-", dir=work))
    (staging / "doctype.tflite").write_bytes(blob)
    (staging / "doctype_labels.txt").write_text(
        "".join(f"{d}\t{LABELS_VI[d]}\n" for d in DOCTYPES), encoding="utf-8")
    (staging / "doctype_version.txt").write_text(version + "\n", encoding="utf-8")
    (staging / MANIFEST).write_text(_manifest(real_train_pages, real_held_pages), encoding="utf-8")
    cfg = DoctypeConfig(model_path=staging / "doctype.tflite", labels_path=staging / "doctype_labels.txt")
    with load_classifier(cfg) as clf:
        evals = {"validation": _evaluate(clf, val), "heldout": _evaluate(clf, heldout),
                 "real": _evaluate(clf, real_held)}
    from benchmarks.harness import machine

    info = {
        "version": version, "size_bytes": len(blob), "built": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "minutes": (time.monotonic() - t0) / 60, "machine": machine(),
        "command": "python -m training.train " + " ".join(sys.argv[1:] if argv is None else argv),
        "n_train_synth": n_synth, "n_train_real": len(real_train), "n_real_train_pages": len(real_train_pages),
        "n_val": len(val), "keras_val_acc": keras_val, "keras_heldout_acc": keras_held,
        "n_real_held_pages": len(real_held_pages),
    }
    report = _report(args, info, evals)
    (staging / "doctype_training_report.md").write_text(report, encoding="utf-8")
    (staging / "doctype_training_report.json").write_text(
        json.dumps({"settings": {k: str(v) for k, v in vars(args).items()}, "info": info, "evaluation": evals},
                   indent=1, ensure_ascii=False, default=float), encoding="utf-8")
    for f in staging.iterdir():
        shutil.copy2(f, args.out / f.name)
    _log.info("wrote %s (%d bytes, version %s): held-out %.2f%%, real %.2f%%", args.out / "doctype.tflite",
              len(blob), version, 100 * evals["heldout"]["accuracy"], 100 * evals["real"]["accuracy"])
    print(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

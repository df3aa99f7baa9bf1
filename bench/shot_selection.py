"""Retrieved K-shot examples against random ones and none, on the same held-out rows with the same model: each
question's K most similar rows of the dev slice (BM25, `--shot-selection similar`) against the same K drawn at
random for every question (`--shot-selection random`, the default) and 0-shot. Every pair is tested with the
exact McNemar test on the same questions; retrieved examples can repeat their question, so the accuracy without
those questions is printed too, with the answers' share of "A" (the letter prior) beside each.

    python bench/shot_selection.py --shots 3                               # the base model, 1,074 held-out rows
    python bench/shot_selection.py --adapter adapters/cpu-demo --shots 3    # an adapter
    python bench/shot_selection.py --quick                                  # tiny random Llama, 8 rows

Figures for docs/evaluation.md ("Retrieved K-shot").
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))


def main(argv: list[str] | None = None) -> int:
    from mcqa_core.models.loading import OFFLINE_MODEL, TINY_MODEL

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=OFFLINE_MODEL, help="base model (ignored with --adapter)")
    p.add_argument("--adapter", default=None, help="an adapter folder")
    p.add_argument("--shots", type=int, default=3)
    p.add_argument("--rows", type=int, default=None, help="first N held-out rows (default: all 1,074)")
    p.add_argument("--data-dir", default=os.environ.get("MCQA_DATA_DIR"))
    p.add_argument("--quick", action="store_true", help="tiny random Llama, 8 rows, 2 shots")
    args = p.parse_args(argv)
    if args.quick:
        args.model, args.adapter, args.rows, args.shots = TINY_MODEL, None, 8, 2
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from machine import cpu_line, load_line

    from mcqa_core.data.medmcqa import default_data_dir
    from mcqa_core.evaluation.eval_rows import rows_for
    from mcqa_core.evaluation.measure import measure
    from mcqa_core.evaluation.protocol import EvalProtocol
    from mcqa_core.evaluation.scorers import LetterScorer
    from mcqa_core.evaluation.stats import mcnemar
    from mcqa_core.models.inference import load_model

    print(cpu_line(), flush=True)
    print(f"start: {load_line()}", flush=True)
    data_dir = args.data_dir or default_data_dir()
    loaded = load_model(args.adapter, None if args.adapter else args.model, load_in_4bit=not args.quick)
    scorer = LetterScorer(loaded)
    reports, ids = {}, None
    for name, shots, selection in (("0-shot", 0, "random"), (f"{args.shots}-shot random", args.shots, "random"),
                                   (f"{args.shots}-shot similar", args.shots, "similar")):  # fmt: skip
        protocol = EvalProtocol(split="heldout", limit=args.rows, shots=shots, shot_selection=selection)
        reports[name] = report = measure(scorer, rows_for(protocol, data_dir=data_dir), protocol)
        ids = ids or [p["id"] for p in report["predictions"]]
        assert [p["id"] for p in report["predictions"]] == ids  # the same questions in every protocol
    model = f"{loaded.adapter} on {loaded.base_model}" if loaded.adapter else loaded.base_model
    print(f"model: {model} ({'4-bit' if loaded.load_in_4bit else 'full precision'}); {len(ids)} held-out rows")
    print(f"{'protocol':22}{'accuracy (95% interval)':28}{'answers A':>10}")
    for name, r in reports.items():
        ci = r["accuracy_ci"]
        print(f"{name:22}{r['accuracy']:6.1%} [{ci[0]:.1%}, {ci[1]:.1%}]{'':7}{r['pred_spread'].get('A', 0):>9.1%}")
    print(f"always A: {reports['0-shot']['always_a_accuracy']:.1%} on these rows")

    def hits(r):
        return [p["pred"] == p["gold"] for p in r["predictions"]]

    names = list(reports)
    for a, b in ((names[2], names[1]), (names[2], names[0]), (names[1], names[0])):
        t = mcnemar(hits(reports[a]), hits(reports[b]))
        print(f"{a} vs {b}: {t['difference'] * 100:+.1f} points [{t['ci'][0] * 100:+.1f}, {t['ci'][1] * 100:+.1f}], "
              f"exact McNemar p = {t['p_value']:.3g}")  # fmt: skip
    near = reports[names[2]].get("shots_overlap")
    if near:
        clean = near["clean"]
        print(f"similar: {near['overlapping']} questions had a near-duplicate among their examples; accuracy on the "
              f"other {clean['n']}: {clean['accuracy']:.1%}")  # fmt: skip
    else:
        print("similar: no question had a near-duplicate among its examples")
    print(f"end: {load_line()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

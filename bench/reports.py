"""Corpus-wide questions: the token-major access paths against the scans they replaced.

    python -m bench.reports --warehouse .bench/wh-r45455-s0 --out bench/results/reports-5M.json

Side by side, in one run on one warehouse:

- warm, in one read-only connection (median of repeats): each question as the
  warehouse answers it now and as the full scan it replaced (bench/scans.sql, the
  SQL of f7a08f5), with their ratio and a check that both give the same rows;
- every canned report end to end as a `saewh report` process (median of 3), the
  number a user sees, against the issue's target (<= 1 s at ~5M tokens, <= 2 s at
  full size; <= 10 s for the densest feature).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import time
from pathlib import Path

from bench.run import ROOT, git_commit, log, machine, saewh_command, write_results

SCANS = Path(__file__).with_name("scans.sql")
SALS, PINEAPPLE = "^ ?[Ss]als", "pineapple salsa"
TOKEN_SEARCH = (
    "SELECT feature, n_hits, n_occurrences FROM token_search($pattern, regex := true) "
    "ORDER BY n_hits DESC, feature"
)
REVIEW_SET = (
    "SELECT feature, n_active_reviews FROM business_features($business_id, min_reviews := 1) "
    "ORDER BY n_active_reviews DESC, feature"
)
TEXT_SEARCH = (
    "SELECT m.review_idx, r.feature, r.max_value, r.n_tokens_active, r.feature_rank "
    "FROM text_search($pattern, k := 10, n_features := 5) r JOIN reviews m ON m.review_id = r.review_id "
    "WHERE r.feature IS NOT NULL ORDER BY m.review_idx, r.feature_rank"
)


def _median_s(fn, repeats: int) -> tuple[float, object]:
    out, xs = None, []
    for _ in range(repeats + 1):  # the first run warms the caches and is dropped
        t0 = time.perf_counter()
        out = fn()
        xs.append(time.perf_counter() - t0)
    return statistics.median(xs[1:]), out


def _picks(con) -> dict:
    """The questions' arguments, chosen from the warehouse itself."""
    common = con.execute("SELECT token FROM vocabulary ORDER BY n_occurrences DESC LIMIT 1").fetchone()[0]
    median = con.execute(
        "SELECT feature FROM features WHERE n_active > 0 ORDER BY n_active, feature "
        "LIMIT 1 OFFSET (SELECT count(*) // 2 FROM features WHERE n_active > 0)"
    ).fetchone()[0]
    densest = con.execute("SELECT feature FROM features ORDER BY n_active DESC LIMIT 1").fetchone()[0]
    by_size = ("SELECT business_id, count(*) AS n FROM reviews "
               "WHERE n_tokens > 0 AND business_id IS NOT NULL GROUP BY ALL ORDER BY n DESC, business_id")
    business, n_largest = con.execute(by_size + " LIMIT 1").fetchone()
    # The business at the median of the businesses' review counts.
    median_business, n_median = con.execute(
        by_size + " LIMIT 1 OFFSET (SELECT count(DISTINCT business_id) // 2 FROM reviews WHERE n_tokens > 0)"
    ).fetchone()
    # The longest review: the most activations to rank.
    longest = "SELECT review_id FROM reviews ORDER BY n_tokens DESC, review_idx LIMIT 1"
    review = con.execute(longest).fetchone()[0]
    return {"review": review, "common_token": common, "median_feature": median, "densest_feature": densest,
            "business": business, "business_reviews": n_largest,
            "median_business": median_business, "median_business_reviews": n_median}


def warm_pairs(wh: Path, repeats: int) -> list[dict]:
    from warehouse.db import connect
    from warehouse.sqlfiles import parse_sql

    scans = {st.name: st.sql for st in parse_sql(SCANS.read_text(), SCANS).statements}
    con = connect(wh)
    picks = _picks(con)
    token_report = parse_sql((ROOT / "sql/reports/token.sql").read_text()).statements[0].sql
    review_report = parse_sql((ROOT / "sql/reports/review.sql").read_text()).statements[-1].sql
    cases = [
        ("token ' salsa'", token_report, {"token": " salsa", "k": 20}, "token", {"token": " salsa"}),
        (f"token {picks['common_token']!r} (most frequent)", token_report,
         {"token": picks["common_token"], "k": 20}, "token", {"token": picks["common_token"]}),
        ("token_search '^ ?[Ss]als' (regex)", TOKEN_SEARCH, {"pattern": SALS},
         "token_search", {"pattern": SALS}),
        ("text_search 'pineapple salsa', features of 10 reviews", TEXT_SEARCH, {"pattern": PINEAPPLE},
         "text_search", {"pattern": PINEAPPLE, "k": 10, "n_features": 5}),
        ("report review's features, the longest review", review_report,
         {"review_id": picks["review"], "k": 20}, "review", {"review_id": picks["review"], "k": 20}),
    ] + [
        (f"business_features, {label} business ({picks[f'{which}_reviews']:,} reviews)",
         REVIEW_SET, {"business_id": picks[which]}, "review_set_features", {"business_id": picks[which]})
        for which, label in (("business", "largest"), ("median_business", "median"))
    ]
    out = []
    for label, new_sql, new_args, scan, scan_args in cases:
        log(f"warm: {label}")
        new_s, new_rows = _median_s(lambda q=new_sql, a=new_args: con.execute(q, a).fetchall(), repeats)
        old_s, old_rows = _median_s(lambda q=scans[scan], a=scan_args: con.execute(q, a).fetchall(), repeats)
        out.append({"question": label, "seconds": new_s, "scan_seconds": old_s, "ratio": old_s / new_s,
                    "rows": len(new_rows), "same_rows": _same(new_rows, old_rows)})
    con.close()
    return out, picks


def _same(a: list, b: list) -> bool:
    """The same rows, floats to 1e-9 (a sum of sums against one fsum)."""
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        x, y = x[: len(y)], y[: len(x)]
        for u, v in zip(x, y):
            if isinstance(u, float) and isinstance(v, float):
                if abs(u - v) > 1e-9 * max(abs(u), abs(v), 1.0):
                    return False
            elif u != v:
                return False
    return True


def report_processes(wh: Path, picks: dict, repeats: int) -> list[dict]:
    base = saewh_command()
    med, dense = str(picks["median_feature"]), str(picks["densest_feature"])
    cases = [
        ["token", "--token", " salsa"], ["token", "--token", picks["common_token"]],
        ["token-search", "--pattern", "^ ?[Ss]als", "--regex"],
        ["text-search", "--pattern", "pineapple salsa was"],
        ["cooccurrence", "--feature", med], ["cooccurrence", "--feature", dense],
        ["spreads"], ["star-signal"], ["concentration"],
        ["top-k-diverse", "--feature", med], ["top-k", "--feature", med], ["feature", "--feature", med],
        ["business-features", "--business-id", picks["business"]],
        ["business-features", "--business-id", picks["median_business"]],
        ["review", "--review-id", picks["review"]],
    ]
    out = []
    for args in cases:
        cmd = [*base, "report", *args, "-w", str(wh)]
        log("process: saewh report " + " ".join(args))
        s, _ = _median_s(lambda c=cmd: subprocess.run(c, check=True, capture_output=True, cwd=ROOT), repeats)
        out.append({"report": " ".join(args), "seconds": s})
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--warehouse", type=Path, required=True)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path)
    a = ap.parse_args(argv)
    res: dict = {"command": "python -m bench.reports " + " ".join(argv or __import__("sys").argv[1:]),
                 "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "commit": git_commit(), "machine": machine()}
    res["warm"], picks = warm_pairs(a.warehouse, a.repeats)
    res["picks"] = picks
    res["processes"] = report_processes(a.warehouse, picks, a.repeats)
    for w in res["warm"]:
        print(f"{w['question']:<58} {w['seconds'] * 1e3:9.1f} ms  scan {w['scan_seconds'] * 1e3:9.1f} ms  "
              f"{w['ratio']:7.1f}x  same rows: {w['same_rows']}")
    for p in res["processes"]:
        print(f"saewh report {p['report']:<50} {p['seconds']:6.2f} s")
    if a.out:
        write_results(a.out, res)


if __name__ == "__main__":
    main()

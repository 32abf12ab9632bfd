"""The benchmark's table: (measure, value, target, verdict) rows from a run's results."""

from __future__ import annotations

# Issue 4's targets (this machine).
TARGETS = {
    "build_rows_per_s_5M": 8e6,
    "build_seconds_full": 8 * 60,
    "peak_rss_bytes": 2 * 1024**3,
    "size_ratio": 0.75,
    "top_k_contexts_ms_5M": 30.0,
    "top_k_contexts_ms_full": 50.0,
    "feature_by_stars_ms": 100.0,
    "review_features_ms": 100.0,
    "groupby_vs_plain": 2.0,
    "help_ms": 300.0,
    "report_ms": 1000.0,
    "ratio_vs_scan": 1_000.0,
    "ratio_vs_reference": 10_000.0,
}

Row = tuple[str, str, str, str]


def _ms(x: float) -> str:
    return f"{x * 1e3:,.1f} ms"


def _verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("met" if ok else "NOT met")


def summarize(res: dict) -> list[Row]:
    """(measure, value, target, verdict) rows: the build, the queries, the CLI."""
    full = res["input"]["n_tokens"] >= 40_000_000
    return _build_rows(res, full) + _query_rows(res, full) + _cli_rows(res)


def _build_rows(res: dict, full: bool) -> list[Row]:
    rows: list[Row] = []
    t = TARGETS
    b = res["build"]
    t = TARGETS
    rows.append(
        (
            "build wall (cpu)",
            f"{b['wall_s']:,.1f} s ({b['cpu_s']:,.0f} cpu-s)",
            "<= 480 s at full size" if full else "-",
            _verdict(b["wall_s"] <= t["build_seconds_full"]) if full else "-",
        )
    )
    rows.append(
        (
            "build rows/s",
            f"{b['rows_per_s'] / 1e6:,.2f} M/s",
            ">= 8 M/s at 5M tokens",
            "-" if full else _verdict(b["rows_per_s"] >= t["build_rows_per_s_5M"]),
        )
    )
    phases = b.get("phase_seconds") or {}
    if phases:
        rows.append(
            (
                "  phases: " + " / ".join(phases),
                " / ".join(f"{v:,.0f}" for v in phases.values()) + " s",
                "",
                "",
            )
        )
    rows.append(
        (
            "peak RSS largest process",
            f"{b['peak_rss_largest_process_bytes'] / 2**30:,.2f} GiB",
            "<= 2 GiB",
            _verdict(b["peak_rss_largest_process_bytes"] <= t["peak_rss_bytes"]),
        )
    )
    rows.append(
        ("peak RSS process tree", f"{b['peak_rss_process_tree_bytes'] / 2**30:,.2f} GiB", "(sampled)", "")
    )
    rows.append(
        (
            "  sampled: build process / a worker",
            f"{b.get('peak_rss_build_process_sampled_bytes', 0) / 2**30:,.2f} / "
            f"{b.get('peak_rss_worker_sampled_bytes', 0) / 2**30:,.2f} GiB",
            "",
            "",
        )
    )
    s = res["sizes"]
    rows.append(
        (
            "warehouse / H5 size",
            f"{s['warehouse_bytes'] / 2**30:,.2f} / {s['h5_bytes'] / 2**30:,.2f} GiB = {s['ratio']:.2f}x",
            "<= 0.75x",
            _verdict(s["ratio"] <= t["size_ratio"]),
        )
    )
    return rows


def _query_rows(res: dict, full: bool) -> list[Row]:
    rows: list[Row] = []
    t = TARGETS
    ref = res["reference_loop"]
    rows.append(
        (
            "reference loop, one feature",
            f"{ref['extrapolated_s']:,.0f} s" + (" (extrapolated)" if ref["extrapolated"] else ""),
            "",
            "",
        )
    )
    w = res["warehouse"]
    limit = t["top_k_contexts_ms_full"] if full else t["top_k_contexts_ms_5M"]
    for label in ("rare", "median", "densest"):
        f = w["features"][label]
        qt = w[f"top_k_contexts_{label}"]["median_s"]
        scan = res["vectorized_scan"][label]["median_s"]
        rows.append(
            (
                f"top_k_contexts {label} ({f['feature']}, {f['n_active']:,} active)",
                _ms(qt),
                f"<= {limit:.0f} ms",
                _verdict(qt * 1e3 <= limit),
            )
        )
        rows.append(
            (
                f"  vs numpy H5 scan ({scan:,.2f} s)",
                f"{scan / qt:,.0f}x",
                ">= 1,000x",
                _verdict(scan / qt >= t["ratio_vs_scan"]) if full else "- (target at full size)",
            )
        )
        rows.append(
            (
                "  vs reference loop",
                f"{ref['extrapolated_s'] / qt:,.0f}x",
                ">= 10,000x",
                _verdict(ref["extrapolated_s"] / qt >= t["ratio_vs_reference"])
                if full
                else "- (target at full size)",
            )
        )
    fbs = max(w[f"feature_by_stars_{label}"]["median_s"] for label in ("rare", "median", "densest"))
    rows.append(("feature_by_stars (slowest of 3)", _ms(fbs), "<= 100 ms", _verdict(fbs * 1e3 <= 100)))
    rf = w["review_features"]["median_s"]
    rows.append(("review_features(R, 20)", _ms(rf), "<= 100 ms", _verdict(rf * 1e3 <= 100)))
    rows.append(
        (
            "top_k_contexts, window 5/5 (general path)",
            _ms(w["top_k_contexts_window_5_5_median"]["median_s"]),
            "",
            "",
        )
    )
    gv, gp = w["groupby_view"]["median_s"], w["groupby_plain"]["median_s"]
    rows.append(
        (
            "GROUP BY feature: view / plain scan",
            f"{gv:,.2f} s / {gp:,.2f} s = {gv / gp:.2f}x",
            "<= 2x",
            _verdict(gv / gp <= t["groupby_vs_plain"]),
        )
    )
    return rows


def _cli_rows(res: dict) -> list[Row]:
    rows: list[Row] = []
    c = res["cli"]
    rows.append(
        ("saewh --help", _ms(c["help"]["median_s"]), "<= 300 ms", _verdict(c["help"]["median_s"] <= 0.3))
    )
    rows.append(
        (
            "saewh report top-k (end to end)",
            _ms(c["report_top_k"]["median_s"]),
            "<= 1 s",
            _verdict(c["report_top_k"]["median_s"] <= 1.0),
        )
    )
    return rows


def print_table(rows: list[tuple[str, str, str, str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = []
    for r in rows:
        lines.append("  ".join(x.ljust(widths[i]) for i, x in enumerate(r)).rstrip())
    text = "\n".join(lines)
    print(text)
    return text



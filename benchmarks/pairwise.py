"""Alternating A/B measurement and ratio statistics for halo's comparison scripts.

Implements ../shared/BENCH.md: halo and its peer run alternately (A B A B ...), at least
five pairs per point, under the same settings; the ratio of each pair is oriented so that
higher is better for halo; a point reports the median of the per-pair ratios, both medians
and the min-max of the ratios; results are written as a JSON list of records.
"""

import json
import os
import statistics
import sys


def point(metric, halo_run, peer_run, pairs, unit, higher_is_better, peer_name, **labels):
    """Runs `pairs` alternating pairs of halo_run() and peer_run() (each returns a float, or
    raises) and returns the BENCH.md record for the point."""
    halo_values, peer_values, ratios = [], [], []
    for i in range(pairs):
        h = halo_run()
        p = peer_run()
        halo_values.append(h)
        peer_values.append(p)
        ratios.append(h / p if higher_is_better else p / h)
        print(f"    pair {i + 1}/{pairs}: halo {h:.4g} {unit}, {peer_name} {p:.4g} {unit}, "
              f"ratio {ratios[-1]:.3f}", file=sys.stderr, flush=True)
    return record_of(metric, halo_values, peer_values, unit, higher_is_better, peer_name,
                     **labels)


def record_of(metric, halo_values, peer_values, unit, higher_is_better, peer_name, **labels):
    """The BENCH.md record of a point from its pairs' values (halo_values[i] ran next to
    peer_values[i])."""
    ratios = [h / p if higher_is_better else p / h for h, p in zip(halo_values, peer_values)]
    record = {"metric": metric}
    record.update(labels)
    record.update({
        "halo": statistics.median(halo_values),
        "peer": statistics.median(peer_values),
        "peer_name": peer_name,
        "unit": unit,
        "higher_is_better": higher_is_better,
        "ratio": statistics.median(ratios),
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
        "pairs": len(ratios),
    })
    return record


def write_records(path, records):
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as f:
        json.dump(records, f, indent=2)
        f.write("\n")


def print_table(records, target_for=None):
    """Prints one line per record: labels, both medians, ratio and its spread."""
    print(f"{'metric':<14} {'backend':<7} {'link':<10} {'size':>10}  {'halo':>10} {'peer':>10} "
          f"{'unit':<6} {'ratio':>6} {'min-max':>12}  peer")
    for r in records:
        size = r.get("size")
        print(f"{r['metric']:<14} {r.get('backend', ''):<7} {r.get('transport', ''):<10} "
              f"{'' if size is None else size:>10}  {r['halo']:>10.4g} "
              f"{'' if r['peer'] is None else format(r['peer'], '.4g'):>10} {r['unit']:<6} "
              f"{'' if r['ratio'] is None else format(r['ratio'], '.3f'):>6} "
              f"{'' if r['ratio'] is None else format(r['ratio_min'], '.2f') + '-' + format(r['ratio_max'], '.2f'):>12}"
              f"  {r['peer_name'] or ''}")

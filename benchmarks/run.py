"""`make bench`: every benchmark, each printing its figures beside a baseline measured in
the same run; results as JSON under bench_results/ (ignored by git)."""
from __future__ import annotations

import sys

from benchmarks import social_data, training


def main() -> int:
    print("## social data pipeline vs bare JSON parse")
    social_data.main(["--posts", "200000", "--workers", "0", "--out", "bench_results/social_data.json"])
    print("\n## training and generation")
    training.main(["--model", "default", "--out", "bench_results/training.json"])
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Judging the judges: measure a judge model against people's labels before trusting it to prune.

interleaf's whole tree rests on its judge (consistency checks prune branches, the global judge
orders dialogues, pairs come from both). This package measures that judge:

- :mod:`interleaf.bench.prepare` turns an InterMT-Bench file (Scoring Evaluation, Pair
  Comparison, Crucial Step Recognition) into a run: import (people's labels kept as
  :class:`~interleaf.state.HumanScore` records), seeds, and the built-in
  ``intermt-bench-<task>`` graph;
- :mod:`interleaf.bench.metrics` computes agreement, Pearson, pair accuracy, crucial-step
  grades and the multi-turn scaling curve from any dialogues holding judge and people's scores;
- :mod:`interleaf.bench.report` is the ``intermt_bench`` report kind (``reports/intermt_bench.json``,
  a readable report and plots; ``interleaf report DIR`` rebuilds it);
- :mod:`interleaf.bench.cli` is ``interleaf bench intermt`` / ``interleaf bench agreement``.

Example (no model call: metrics of dialogues already judged)::

    from interleaf.bench.metrics import bench_summary
    from interleaf.run.reader import RunReader

    summary = bench_summary(RunReader.open("runs/annotated").dialogues(), "agreement")
    summary["agreement"], summary["by_turns"]
"""

"""The results, rendered from the committed metrics/ and params.yaml: README.md's answer and research tables,
docs/results.md's default run and probes, and the charts.

`python -m selfsup.report` rewrites the blocks between the pages' markers and draws the pictures from the stages'
data (restyling a chart reruns no stage); `--experiments [--rev COMMIT]` first collects every finished DVC
experiment of HEAD (or of the commit they were queued from) into the sweep tables, keeping every committed row it
does not replace (`--replace`: the collected ones alone). Everything is computed before anything is written. Tests
check that the pages agree with the files committed beside them.

  data        where each table lives, reading it, collecting experiments into it
  statistics  (selfsup.statistics) paired intervals, the labels `none` needs to match a pretext
  tables      numbers and pretext-by-budget grids as Markdown
  sweep       the sweep's accuracy, gains, labels saved and charts; answer: the README's answer block
  targets     the project's targets as data, met or missed
  probes      the default run and the frozen-feature probes; distilled: distillation; benchmarks: their tables
  blocks      the registry of every block and picture, and `rendered`, the loop over it
"""

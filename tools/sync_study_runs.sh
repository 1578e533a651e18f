#!/usr/bin/env bash
# Commit each finished run of a study that trains in a frozen worktree, as it lands.
#
#   tools/sync_study_runs.sh <frozen worktree> <study folder under results/> <runs in the grid>
#   e.g. nohup tools/sync_study_runs.sh /work/rr-frozen minatar_rr 12 > sync.log 2>&1 &
#
# Every 2 minutes: copies the curve/result/settings.json of each run folder that has a result.json and is not yet in
# this checkout (never a checkpoint or TensorBoard files), takes a consistent snapshot of the worktree's study.db
# (SQLite's backup API, read-only on the source), and commits only results/<study>/. Runs until killed.
set -u
worktree=$1 study=$2 total=$3
repo="$(cd "$(dirname "$0")/.." && pwd)"
src="$worktree/results/$study" dst="$repo/results/$study"
python="$repo/.venv/bin/python"
while true; do
  new=0
  for run in "$src"/*/*/; do
    [ -f "$run/result.json" ] || continue
    rel="${run#"$src"/}"
    if [ ! -f "$dst/$rel/result.json" ]; then
      mkdir -p "$dst/$rel"
      cp "$run/curve.json" "$run/result.json" "$run/settings.json" "$dst/$rel/"
      new=1
    fi
  done
  if [ "$new" = 1 ]; then
    "$python" - "$src/study.db" "$dst/study.db.new" <<'PY'
import sqlite3
import sys

source = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True, timeout=60)
target = sqlite3.connect(sys.argv[2])
source.backup(target)
target.close()
source.close()
PY
    mv "$dst/study.db.new" "$dst/study.db"
    done_runs=$(find "$dst" -mindepth 3 -maxdepth 3 -name result.json | wc -l)
    for _ in 1 2 3 4 5; do
      (cd "$repo" && git add "results/$study" && git commit -q -m "Study $study: $done_runs/$total runs" -- "results/$study") && break
      sleep 5
    done
    echo "$(date -u +%H:%M) committed $done_runs/$total"
  fi
  sleep 120
done

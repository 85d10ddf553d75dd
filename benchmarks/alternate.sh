#!/usr/bin/env bash
# A change's effect on one command, measured in one sitting: FILES as of REV, then as they are now, alternated
# ROUNDS times; the median wall and CPU seconds (user + system) of the command's process for each side.
#
#   bash benchmarks/alternate.sh REV "FILE..." ROUNDS COMMAND...
#
# The command runs from the repository's root; "{n}" in it becomes a number new on every run (e.g. a
# --max-chars that makes a new corpus version each time). The files are put back as they are now on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
rev=$1 files=$2 rounds=$3
shift 3
read -ra paths <<<"$files"
saved=$(mktemp -d)
tar -cf "$saved/files.tar" "${paths[@]}"
trap 'tar -xf "$saved/files.tar"; rm -rf "$saved"' EXIT
n=1000
for _ in $(seq "$rounds"); do
    for side in before after; do
        if [ "$side" = before ]; then
            for path in "${paths[@]}"; do git show "$rev:$path" >"$path"; done
        else
            tar -xf "$saved/files.tar"
        fi
        n=$((n + 500))
        command=("${@//\{n\}/$n}")
        /usr/bin/time -f "$side %e %U %S" -a -o "$saved/times" "${command[@]}" >/dev/null 2>"$saved/err" ||
            { echo "alternate.sh: $side run failed: $(tail -3 "$saved/err")" >&2; exit 1; }
    done
done
python3 - "$saved/times" <<'EOF'
import statistics, sys
sides = {}
for line in open(sys.argv[1]):
    side, wall, user, system = line.split()
    sides.setdefault(side, []).append((float(wall), float(user) + float(system)))
for side, runs in sides.items():
    wall, cpu = (statistics.median(r[i] for r in runs) for i in (0, 1))
    print(f"{side}: median wall {wall:.2f} s, CPU {cpu:.2f} s over {len(runs)} runs")
EOF

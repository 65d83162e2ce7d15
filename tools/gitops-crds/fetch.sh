#!/usr/bin/env bash
# fetch.sh OUTDIR: copies each CRD pinned in crds.txt out of its module zip into OUTDIR.
# `go mod download` verifies every zip against the Go checksum database; the hash pinned
# here must match too, so a re-tagged release cannot slip in.
set -euo pipefail
cd "$(dirname "$0")"
out=$1
mkdir -p "$out"
total=$(grep -cv '^\s*\(#\|$\)' crds.txt)
n=0
# field NAME reads one string field of `go mod download -json`'s answer in $info.
field() { sed -n "s/^[[:space:]]*\"$1\": \"\(.*\)\",\{0,1\}\$/\1/p" <<<"$info"; }
while read -r mod sum path name; do
	case "$mod" in ''|'#'*) continue ;; esac
	n=$((n + 1))
	echo "    [$n/$total] $mod: $path"
	info=$(go mod download -json "$mod") || { echo "$info"; exit 1; }
	got=$(field Sum)
	if [ "$got" != "$sum" ]; then
		echo "$mod: module hash $got; crds.txt pins $sum" >&2
		exit 1
	fi
	install -m 0644 "$(field Dir)/$path" "$out/$name"
done <crds.txt

#!/usr/bin/env bash
# The module graph of src/ runs one way: prints which top-level module uses
# which, and fails on a cycle, or when `config` or `error` (the ground floor)
# import anything else from the crate.
set -euo pipefail
cd "$(dirname "$0")/../.."

edges=$(for f in $(find src -name '*.rs' ! -name main.rs ! -name lib.rs); do
  from=$(echo "$f" | sed -E 's#^src/([a-z_]+)(/.*|\.rs)$#\1#')
  { grep -ohE 'crate::[a-z_]+' "$f" || true; } | sed 's/^crate:://' | sort -u | while read -r to; do
    if [ "$from" != "$to" ]; then echo "$from $to"; fi
  done
done | sort -u)

printf 'imports: %s\n' "$(echo "$edges" | awk '{print $1 "->" $2}' | paste -sd' ')"

status=0
while read -r from to; do
  case "$from" in
    config) [ "$to" = error ] || { echo "imports: FAIL: config uses crate::$to"; status=1; } ;;
    error) echo "imports: FAIL: error uses crate::$to"; status=1 ;;
  esac
done <<<"$edges"

# A cycle through any number of modules: repeatedly drop modules that use
# nothing left; whatever remains is on a cycle.
remaining="$edges"
while :; do
  sinks=$(comm -23 <(echo "$remaining" | awk '{print $2}' | sort -u) <(echo "$remaining" | awk '{print $1}' | sort -u))
  [ -z "$sinks" ] && break
  remaining=$(echo "$remaining" | grep -vwF -f <(echo "$sinks") | awk 'NF' || true)
  [ -z "$remaining" ] && break
done
if [ -n "$remaining" ]; then
  echo "imports: FAIL: a cycle among (or above): $(echo "$remaining" | awk '{print $1 "->" $2}' | paste -sd' ')"
  status=1
fi
[ "$status" = 0 ] && echo "imports: one way, no cycle"
exit "$status"

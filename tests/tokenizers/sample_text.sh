#!/usr/bin/env bash
# Prints the first MB megabytes (whole lines) of the corpus files in DIR, in
# name order, each file ended by a newline. Usage: sample_text.sh DIR MB
set -eu
for f in "$1"/*.txt; do cat "$f"; [ -z "$(tail -c 1 "$f")" ] || echo; done 2>/dev/null |
  LC_ALL=C awk -v max=$(($2 * 1000000)) '{ n += length($0) + 1; if (n > max) exit; print }' || true

#!/usr/bin/env bash
# Writes the CRD reference (Markdown on stdin) into docs/operator.md between the
# lines `<!-- crd-reference -->` and `<!-- /crd-reference -->`, leaving the
# rest of the file as it is. `make crds` runs
#
#   operator crd --reference | tests/setup/crd-reference.sh [FILE]
#
# (FILE relative to the repository's root; docs/operator.md by default).
#
# The section becomes: the begin line, a blank line, the text, a blank line,
# the end line (the blank lines keep Markdown from gluing the tables to the
# comments); operator/tests/crd_reference.rs expects exactly that. Fails, and
# changes nothing, on empty input or unless FILE has one pair of markers.
set -euo pipefail
cd "$(dirname "$0")/../.."
FILE=${1:-docs/operator.md}
BEGIN='<!-- crd-reference -->'
END='<!-- /crd-reference -->'

fail() { echo "crd-reference.sh: $*" >&2 && exit 1; }
[ "$(grep -cxF -- "$BEGIN" "$FILE" || true)" = 1 ] || fail "$FILE needs one line '$BEGIN'"
[ "$(grep -cxF -- "$END" "$FILE" || true)" = 1 ] || fail "$FILE needs one line '$END'"
[ "$(grep -nxF -- "$BEGIN" "$FILE" | cut -d: -f1)" -lt "$(grep -nxF -- "$END" "$FILE" | cut -d: -f1)" ] ||
  fail "'$BEGIN' must come before '$END' in $FILE"

dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cat >"$dir/text"
[ -s "$dir/text" ] || fail "no reference on stdin"
awk -v begin="$BEGIN" -v end="$END" -v text="$dir/text" '
  $0 == begin { print; print ""; while ((getline line < text) > 0) print line; print ""; skip = 1; next }
  $0 == end { skip = 0 }
  !skip { print }
' "$FILE" >"$dir/out"
# Overwrite in place rather than move, so the file keeps its mode and links.
cat "$dir/out" >"$FILE"

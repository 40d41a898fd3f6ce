#!/usr/bin/env bash
# Refresh the web app's vendored JavaScript from the npm registry (run by hand; nothing needs node at run time).
# Usage: scripts/vendor-webui.sh   (versions below; edit them, run, commit the files and VENDORED.md)
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=src/dataagent/adapters/http/webui/vendor
PACKAGES=(vega@5.33.1 vega-lite@5.23.0 vega-embed@6.29.0 vega-interpreter@1.2.1 swagger-ui-dist@5.35.0 redoc@2.5.4)
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
(cd "$TMP" && npm pack --silent "${PACKAGES[@]}" >/dev/null)
for tgz in "$TMP"/*.tgz; do
  dir="$TMP/$(basename "$tgz" .tgz)"
  mkdir -p "$dir" && tar xzf "$tgz" -C "$dir"
done
mkdir -p "$DEST"
rm -f "$DEST"/*
copy() { cp "$TMP"/$1-[0-9]*/package/"$2" "$DEST/${3:-$(basename "$2")}"; }
copy vega build/vega.min.js
copy vega-lite build/vega-lite.min.js
copy vega-embed build/vega-embed.min.js
copy vega-interpreter build/vega-interpreter.min.js
copy swagger-ui-dist swagger-ui-bundle.js
copy swagger-ui-dist swagger-ui.css
copy swagger-ui-dist favicon-32x32.png favicon.png
copy redoc bundles/redoc.standalone.js
# The one remote URL ReDoc loads at run time (its attribution logo): an empty inline image instead, so that
# /redoc makes no request to another host.
BLANK_SVG="data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' width='1' height='1'/%3E"
sed -i "s|https://cdn.redoc.ly/redoc/logo-mini.svg|${BLANK_SVG}|" "$DEST/redoc.standalone.js"
! grep -q 'cdn.redoc.ly' "$DEST/redoc.standalone.js"
{
  echo "# Vendored JavaScript of the web app and the API docs"
  echo
  echo "Copied unchanged from the npm registry by \`scripts/vendor-webui.sh\` (refresh: edit the versions there, run it,"
  echo "commit). Served by the server itself: no CDN, no request to another host."
  echo
  echo "| package | version | licence | files |"
  echo "|---|---|---|---|"
  for tgz in "$TMP"/*.tgz; do
    pkg="$TMP/$(basename "$tgz" .tgz)/package/package.json"
    node -e 'const p=require(process.argv[1]); console.log(`| ${p.name} | ${p.version} | ${p.license} |`)' "$pkg" \
      | tr -d '\n'
    case "$(basename "$tgz")" in
      vega-lite-*) echo " vega-lite.min.js |" ;;
      vega-embed-*) echo " vega-embed.min.js |" ;;
      vega-interpreter-*) echo " vega-interpreter.min.js |" ;;
      vega-*) echo " vega.min.js |" ;;
      swagger-ui-dist-*) echo " swagger-ui-bundle.js, swagger-ui.css, favicon.png |" ;;
      redoc-*) echo " redoc.standalone.js |" ;;
    esac
  done
  echo
  echo "Licence texts: each package's LICENSE file in the npm tarball (BSD-3-Clause: vega, vega-lite, vega-embed,"
  echo "vega-interpreter, Copyright (c) the University of Washington Interactive Data Lab; Apache-2.0: swagger-ui-dist,"
  echo "SmartBear Software; MIT: redoc, Redocly)."
  echo "The vega and vega-interpreter tarballs ship no licence file: both are BSD-3-Clause by the same authors (package.json),"
  echo "the terms of LICENSE.vega-lite."
  echo
  echo "One change: in redoc.standalone.js the URL of the attribution logo (https://cdn.redoc.ly/redoc/logo-mini.svg),"
  echo "the only remote resource ReDoc loads, is replaced by an empty inline SVG."
} > "$DEST/VENDORED.md"
for tgz in "$TMP"/*.tgz; do
  name=$(basename "$tgz" .tgz); lic=$(ls "$TMP/$name/package/" | grep -i '^licen[cs]e' | head -1 || true)
  [ -n "$lic" ] && cp "$TMP/$name/package/$lic" "$DEST/LICENSE.${name%-[0-9]*}"
done
ls -l "$DEST"

#!/bin/sh
# Prints the Debian mirror that apt on this machine is configured with for bookworm (main),
# read from /etc/apt/sources.list and /etc/apt/sources.list.d/ (one-line and deb822 forms).
# The deploy test builds its base images from that mirror, so nothing in the repository
# names a host.
set -eu
found=$(
  {
    # deb822: blank-line separated stanzas with URIs:, Suites:, Components:
    for f in /etc/apt/sources.list.d/*.sources; do
      [ -f "$f" ] || continue
      awk 'BEGIN { RS = ""; FS = "\n" }
        {
          uris = ""; suites = ""; comps = ""; types = ""
          for (i = 1; i <= NF; i++) {
            line = $i
            if (line ~ /^[ \t]*#/) continue
            if (line ~ /^Types:/)      { sub(/^Types:[ \t]*/, "", line); types = line }
            if (line ~ /^URIs:/)       { sub(/^URIs:[ \t]*/, "", line); uris = line }
            if (line ~ /^Suites:/)     { sub(/^Suites:[ \t]*/, "", line); suites = " " line " " }
            if (line ~ /^Components:/) { sub(/^Components:[ \t]*/, "", line); comps = " " line " " }
          }
          if (types ~ /(^| )deb( |$)/ && suites ~ / bookworm / && comps ~ / main /) {
            split(uris, u, /[ \t]+/); print u[1]
          }
        }' "$f"
    done
    # one-line form: deb [options] URI SUITE COMPONENT...
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
      [ -f "$f" ] || continue
      sed -e 's/\[[^]]*\]//' "$f" | awk '$1 == "deb" && $3 == "bookworm" {
        for (i = 4; i <= NF; i++) if ($i == "main") { print $2; break } }'
    done
  } | head -n 1
)
if [ -z "$found" ]; then
  echo "no Debian bookworm mirror with 'main' in /etc/apt/sources.list(.d): cannot debootstrap" >&2
  exit 1
fi
echo "$found"

#!/bin/sh
# Rebuilds the committed front-end assets in dist/ from their npm packages.
# Maintainers run it after changing src/ or a version below; a Rust user
# never needs it (the binary embeds dist/). Needs Node.js and npm.
set -eu
NHSUK=nhsuk-frontend@10.6.1
HTMX=htmx.org@2.0.11
SASS=sass@1.108.2
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
npm pack --silent "$NHSUK" "$HTMX" "$SASS" >/dev/null
for f in *.tgz; do mkdir "${f%.tgz}"; tar xzf "$f" -C "${f%.tgz}"; done
nhsuk=$(ls -d nhsuk-frontend-*/package)
htmx=$(ls -d htmx.org-*/package)
(cd sass-*/package && npm install --silent --omit=dev >/dev/null)
node sass-*/package/sass.js --style=compressed --no-source-map \
  --load-path="$nhsuk/dist" "$here/src/opengp.scss" "$here/dist/opengp.css"
cp "$htmx/dist/htmx.min.js" "$here/dist/htmx.min.js"
mkdir -p "$here/dist/images"
for i in nhsuk-icon-arrow-down nhsuk-icon-arrow-up nhsuk-icon-arrow-up-down nhsuk-icon-cross favicon; do
  cp "$nhsuk/dist/nhsuk/assets/images/$i.svg" "$here/dist/images/" 2>/dev/null || true
done
mkdir -p "$here/LICENSES"
sed -n '/## Licence/,$p' "$nhsuk/README.md" > "$here/LICENSES/nhsuk-frontend.md"
cp "$htmx/LICENSE" "$here/LICENSES/htmx.txt"
echo "built: $(ls "$here/dist")"

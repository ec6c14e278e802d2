# Sourced by the tools/*_tests.sh scripts: copy this checkout's working tree (tracked and new,
# unignored files as they are now; no build products) into a fresh temporary folder, $work.
# The copy is deleted on exit unless KEEP=1.
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
work="$(mktemp -d "${TMPDIR:-/tmp}/fastconv-$1.XXXXXX")"
if [ "${KEEP:-0}" = 1 ]; then
    echo "keeping $work"
else
    trap 'rm -rf "$work"' EXIT
fi
(
    cd "$repo"
    git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' path; do
        if [ -f "$path" ]; then
            mkdir -p "$work/$(dirname "$path")"
            cp -p "$path" "$work/$path"
        fi
    done
)

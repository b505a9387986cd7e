#!/usr/bin/env bash
# Gives Burn's CUDA backend its LLVM without the bundle download that needs general internet.
#
# `cubecl-cuda` lowers kernels to PTX through LLVM, and its build dependency
# `tracel-llvm-bundler` downloads an LLVM 23.1 bundle into
# ${XDG_DATA_HOME:-~/.local/share}/tracel/tracel-llvm-23.1.0-4 unless the sentinel file
# `.tracel-llvm-installed` is there. This script fills that directory with Debian's LLVM 22
# instead (packages from Debian sid, fetched with apt from the Debian archive and unpacked
# without installing them), so `cargo check|build --features cuda` works offline from the
# general internet. A real bundle already in place is left alone.
#
# Usage: scripts/cuda-llvm.sh            (idempotent; prints the directory it set up)
# Env:   PIPELINE_LLVM_CACHE  where the unpacked packages live (default ~/.cache/pipeline/llvm-22)
set -euo pipefail

llvm_major=22
packages=(llvm-$llvm_major-dev llvm-$llvm_major libllvm$llvm_major libpolly-$llvm_major-dev)
bundle_dir="${XDG_DATA_HOME:-$HOME/.local/share}/tracel/tracel-llvm-23.1.0-4"
cache="${PIPELINE_LLVM_CACHE:-$HOME/.cache/pipeline/llvm-$llvm_major}"
ours="$bundle_dir/.pipeline-debian-llvm"

if [[ -e $bundle_dir/.tracel-llvm-installed ]]; then
    [[ -e $ours ]] || echo "cuda-llvm: $bundle_dir holds a downloaded LLVM bundle; using it" >&2
    echo "$bundle_dir"
    exit 0
fi
if [[ -e $bundle_dir ]]; then
    echo "cuda-llvm: $bundle_dir exists without its sentinel (an interrupted download?);" \
        "remove it and run again" >&2
    exit 1
fi

llvm_root="$cache/root/usr/lib/llvm-$llvm_major"
if [[ ! -x $llvm_root/bin/llvm-config ]]; then
    # A private apt state: the host's sources, lists and package database stay untouched.
    apt_dir="$cache/apt"
    mkdir -p "$apt_dir/lists/partial" "$apt_dir/archives/partial"
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian sid main" \
        >"$apt_dir/sources.list"
    : >"$apt_dir/status"
    apt_opts=(
        -o "Dir::Etc::SourceList=$apt_dir/sources.list" -o "Dir::Etc::SourceParts=/nonexistent"
        -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::State::status=$apt_dir/status"
        -o "Dir::Cache=$apt_dir" -o "APT::Sandbox::User=$(id -un)"
        -o "Acquire::Check-Valid-Until=false" -q
    )
    echo "cuda-llvm: fetching ${packages[*]} from Debian sid" >&2
    apt-get "${apt_opts[@]}" update >&2
    staging="$cache/root.partial"
    rm -rf "$staging" "$apt_dir/debs"
    mkdir -p "$staging" "$apt_dir/debs"
    (cd "$apt_dir/debs" && apt-get "${apt_opts[@]}" download "${packages[@]}" >&2) || {
        echo "cuda-llvm: Debian sid no longer has LLVM $llvm_major; set llvm_major in $0" >&2
        exit 1
    }
    for deb in "$apt_dir/debs"/*.deb; do dpkg-deb -x "$deb" "$staging"; done
    rm -rf "$cache/root" "$apt_dir/debs"
    mv "$staging" "$cache/root"
fi

# Build the bundle directory beside its final place and rename it in: never half there.
staging="$bundle_dir.partial"
rm -rf "$staging"
mkdir -p "$staging/bin"
ln -s "$llvm_root/include" "$staging/include"
ln -s "$llvm_root/lib" "$staging/lib"
for tool in "$llvm_root"/bin/*; do
    [[ $(basename "$tool") == llvm-config ]] || ln -s "$tool" "$staging/bin/"
done
# The bundler turns the absolute `.../libz3.so` that Debian's llvm-config lists into `-llibz3`;
# listing it as `-lz3` is what it can use.
cat >"$staging/bin/llvm-config" <<EOF
#!/bin/sh
# Debian's LLVM $llvm_major standing in for the tracel bundle (written by scripts/cuda-llvm.sh).
out=\$("$llvm_root/bin/llvm-config" "\$@") || exit \$?
printf '%s\n' "\$out" | sed 's#[^ ]*/libz3\.so#-lz3#g'
EOF
chmod +x "$staging/bin/llvm-config"
"$staging/bin/llvm-config" --version >/dev/null
echo "Debian LLVM $("$staging/bin/llvm-config" --version), from ${packages[*]}" >"$staging/${ours##*/}"
touch "$staging/.tracel-llvm-installed"
mv "$staging" "$bundle_dir"
echo "$bundle_dir"

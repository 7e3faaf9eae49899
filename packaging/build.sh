#!/usr/bin/env bash
# Builds the four packages into target/pkg/: swarmguard-agent and swarmguard-identity, each
# as .deb (cargo-deb) and .rpm (cargo-generate-rpm), installing both tools if missing.
#
#   packaging/build.sh                             release build (what ships)
#   packaging/build.sh --profile dev --no-build    package the binaries `cargo test` built
#                                                  (what CI installs and checks)
set -euo pipefail
cd "$(dirname "$0")/.."

profile=release
build=yes
while [ $# -gt 0 ]; do
    case $1 in
        --profile) profile=${2:?--profile needs a name}; shift 2 ;;
        --no-build) build=no; shift ;;
        *) echo "usage: $0 [--profile NAME] [--no-build]" >&2; exit 64 ;;
    esac
done
case $profile in
    dev) profile_dir=debug ;;
    *) profile_dir=$profile ;;
esac
target=${CARGO_TARGET_DIR:-target}
out=$target/pkg
gen=$out/gen

# Pinned: cargo-deb announces that packaging the dev profile (what CI checks, to avoid a
# second build) will become an error in a later version.
cargo deb --version 2>/dev/null | grep -q '^3\.8\.' || cargo install --locked cargo-deb --version 3.8.0
cargo generate-rpm --version 2>/dev/null | grep -q ' 0\.21\.' || cargo install --locked cargo-generate-rpm --version 0.21.1

if [ $build = yes ]; then
    cargo build --locked --workspace --bins --profile "$profile"
fi
mkdir -p "$gen"
for bin in swarmd swarmctl identityd; do
    exe=$target/$profile_dir/$bin
    "$exe" generate man >"$gen/$bin.8"
    "$exe" generate bash >"$gen/$bin.bash"
    "$exe" generate zsh >"$gen/_$bin"
    "$exe" generate fish >"$gen/$bin.fish"
done

# The metadata names target/release/*; both tools map that to the profile being packaged.
for package in swarmguard-agent swarmguard-identity; do
    # The generated man pages and completions are not cargo outputs; cargo-deb says so
    # for each of them, which is noise here.
    cargo deb --package "$package" --no-build --profile "$profile" --output "$out/" 2>&1 \
        | { grep -v "^warning: Only source paths starting with exactly 'target/release/'" || true; }
done
# cargo-generate-rpm takes the crate's folder, not its package name. It does not strip, so
# a dev build's ~300 MB binaries would spend minutes in zstd: those packages (made only to
# be checked) are left uncompressed.
compress=zstd
[ "$profile" = release ] || compress=none
for dir in agent identity; do
    cargo generate-rpm --package "$dir" --profile "$profile" --payload-compress "$compress" \
        --output "$out/"
done
ls -l "$out"/*.deb "$out"/*.rpm

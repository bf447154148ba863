#!/usr/bin/env bash
# Prepares, on this machine, what benchmarks/pixels_learning_device.sh needs on the GPU machine, which has
# JAX, Flax, Optax, orbax and Python 3.12 but no MuJoCo, OGBench, Gymnasium, tyro or tensorboardX, and no
# network. It writes .devsite/ (ignored by git): site.tar.gz, those packages installed for Python 3.12 on
# x86-64 (dm_control cut to the mjcf part that OGBench imports, MuJoCo without its studio: 92 MB unpacked,
# 26 MB packed, and a call may carry 64 MiB), and gl/, Debian's EGL and GL packages, unpacked there for
# offscreen rendering (the device README's recipe). Then, with the device tool:
#
#   bash benchmarks/device_site.sh
#   run(command="bash benchmarks/pixels_learning_device.sh $OUT", carry=[".devsite"])
#
# PYVER=3.11 builds it for this machine's Python instead, to check the device script here with a virtual
# environment holding only what the GPU machine holds (JAX, Flax, Optax, orbax, matplotlib, rich, ...).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
PKGS=(mujoco==4.0.1 mujoco-core==4.0.1 ogbench==1.2.2 dm_control==1.0.52 dm-env==1.6
      gymnasium==1.4.0 farama-notifications==0.0.6 tyro==1.0.17 docstring-parser==0.18.0 typeguard==4.6.1
      tensorboardX==2.6.5 glfw==2.11.0 pyopengl==3.1.10)
TARGET=(--only-binary=:all: --python-version "${PYVER:-3.12}" --implementation cp --platform manylinux_2_28_x86_64
        --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64
        --platform manylinux1_x86_64 --platform any)
exclude=$(git rev-parse --git-path info/exclude)
mkdir -p "$(dirname "$exclude")"
grep -qxF /.devsite/ "$exclude" 2>/dev/null || echo /.devsite/ >> "$exclude"
mkdir -p .devsite
site=$(mktemp -d)
trap 'rm -rf "$site"' EXIT
"$PY" -m pip install -q --no-deps --no-compile --target "$site" "${TARGET[@]}" "${PKGS[@]}"
rm -rf "$site"/dm_control/{locomotion,suite,blender,manipulation,entities,composer,third_party} "$site"/mujoco/doc "$site"/bin
tar -czf .devsite/site.tar.gz -C "$site" .
echo ".devsite/site.tar.gz: $(du -sh "$site" | cut -f1) unpacked, $(du -sh .devsite/site.tar.gz | cut -f1) packed"

if [ ! -d .devsite/gl ] && command -v apt-get >/dev/null; then
    mkdir -p .devsite/gl /tmp/amd64/partial
    o=(-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64)
    apt-get "${o[@]}" update -qq >/dev/null
    (cd .devsite/gl && apt-get "${o[@]}" download -qq libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2 2>/dev/null)
fi
[ -d .devsite/gl ] && echo ".devsite/gl: $(ls .devsite/gl | wc -l) packages"
echo "tracked files and .devsite together: $(( ($(git ls-files -z | xargs -0 cat | wc -c) + $(du -sb .devsite | cut -f1)) / 1048576 )) MiB (at most 64 travel)"

# nightshift in a container, for the cluster recipes in deploy/ (docs/distributed.md).
#
#   docker build -t nightshift:latest .                                   # CPU (burn flex)
#   docker build -t nightshift:wgpu --build-arg FEATURES=wgpu .           # GPUs through Vulkan
#   docker build -t nightshift:cuda --build-arg FEATURES=cuda \
#       --build-arg RUNTIME_BASE=nvidia/cuda:12.6.3-runtime-ubuntu24.04 . # NVIDIA through CUDA
#
# The `cuda` feature downloads its LLVM bundle while it builds (network access in the build
# stage); `wgpu` builds offline and needs a Vulkan driver at run time (the NVIDIA container
# toolkit mounts it when the pod asks for `nvidia.com/gpu` with the `graphics` capability).

ARG RUST_VERSION=1.95
ARG RUNTIME_BASE=debian:bookworm-slim

# --- build: the pinned toolchain, dependencies cached in a layer of their own -------------------
FROM rust:${RUST_VERSION}-slim-bookworm AS build
ARG FEATURES=""
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin nightshift ${FEATURES:+--features "$FEATURES"} \
    && install -Dm755 target/release/nightshift /out/nightshift

# --- run: the binary, the bundled datasets and search spaces, nothing else ----------------------
FROM ${RUNTIME_BASE}
ARG FEATURES=""
# python3 for `command:` trials written in Python (the protocol helper is plain Python);
# libvulkan1 only for wgpu images.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates python3 \
       $(case "$FEATURES" in *wgpu*) echo libvulkan1 mesa-vulkan-drivers ;; esac) \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/nightshift /usr/local/bin/nightshift
COPY data /opt/nightshift/data
COPY search-spaces /opt/nightshift/search-spaces
WORKDIR /work
ENV NVIDIA_DRIVER_CAPABILITIES=compute,utility,graphics
ENTRYPOINT ["nightshift"]
CMD ["--help"]

# ganpaint — the GPU container.
#
#   docker build -t ganpaint .
#   docker run --gpus all -p 5001:5001 ganpaint          # CUDA (needs the NVIDIA container toolkit)
#   docker run -p 5001:5001 ganpaint                     # CPU only: the same image, no GPU flag
#
# Stage 1 builds against the libtorch inside PyPI's torch==2.13.0 wheel (it carries the
# CUDA libraries too). Stage 2 carries only what the binary needs at run time: libtorch's
# shared libraries and the NVIDIA libraries they load, the binary, static/, the bundled
# models and dissect/. The binary finds libtorch through its rpath `$ORIGIN/../lib`.

# ---- build ------------------------------------------------------------------------------
FROM rust:1-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# The venv first, so code changes do not reinstall torch.
RUN python3 -m venv /venv \
 && /venv/bin/pip install --no-cache-dir torch==2.13.0
ENV LIBTORCH_USE_PYTORCH=1 PATH=/venv/bin:$PATH
COPY Cargo.toml Cargo.lock build.rs ./
COPY src ./src
RUN cargo build --release --locked --bin ganpaint
# Gather libtorch and the NVIDIA libraries that libtorch_cuda.so loads (their RUNPATHs
# point at ../../nvidia/*/lib relative to torch/lib, a layout kept below).
RUN set -eux; \
    site=$(/venv/bin/python -c 'import site; print(site.getsitepackages()[0])'); \
    mkdir -p /out/opt/ganpaint/bin /out/opt/ganpaint/lib; \
    cp target/release/ganpaint /out/opt/ganpaint/bin/; \
    cp -a "$site/torch/lib/." /out/opt/ganpaint/lib/; \
    if [ -d "$site/nvidia" ]; then mkdir -p /out/opt/nvidia && cp -a "$site/nvidia/." /out/opt/nvidia/; fi

# ---- run --------------------------------------------------------------------------------
FROM debian:bookworm-slim AS run
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl libgomp1 \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/opt /opt
# libtorch_cuda.so's RUNPATH is $ORIGIN/../../nvidia/...: from /opt/ganpaint/lib that is
# /opt/nvidia, where the NVIDIA wheels' libraries were copied.
WORKDIR /app
COPY static ./static
# The bundled models only; models/train (the resumable training state) stays out.
COPY models/*.safetensors models/README.md models/provenance.json ./models/
COPY dissect ./dissect
# Uploaded pictures and their inversions survive restarts when this is a volume
# (docker run -v ganpaint-uploads:/var/lib/ganpaint/uploads …).
RUN mkdir -p /var/lib/ganpaint/uploads
VOLUME /var/lib/ganpaint/uploads
ENV PATH=/opt/ganpaint/bin:$PATH \
    GANPAINT_ADDRESS=0.0.0.0 \
    GANPAINT_UPLOADS=/var/lib/ganpaint/uploads \
    RUST_LOG=info
EXPOSE 5001
HEALTHCHECK --interval=30s --timeout=3s --start-period=60s CMD ["curl", "-fsS", "http://127.0.0.1:5001/healthz"]
CMD ["ganpaint", "serve", "--address", "0.0.0.0"]

# Strait's container image: `docker build -t strait .` at the repository's root.
#
# Stage 1 builds with the command README gives (`cargo build --release`), so the image holds the
# binary a checkout builds; stage 2 is a minimal runtime (distroless: glibc, CA roots, no shell),
# run as a non-root user.
#
# Ports below 1024: the process is not root, and a capability added to a non-root container is
# not in its effective set (Kubernetes sets no ambient capabilities). Either let the pod bind low
# ports as Istio's gateway charts do, with the namespaced sysctl
# `net.ipv4.ip_unprivileged_port_start=0` (deploy/kubernetes/deployment.yaml does), or run with
# `--cap-add NET_BIND_SERVICE` and `--sysctl net.ipv4.ip_unprivileged_port_start=0` under Docker.
# Listening on 8080/8443 and mapping 80/443 in the Service needs neither.
#
# io_uring: Docker's default seccomp profile (since 25.0) and containerd's RuntimeDefault refuse
# io_uring_setup, io_uring_enter and io_uring_register. Strait then logs one warning and serves
# on monoio's epoll driver (`--driver legacy` chooses it without the warning); every test runs
# on both. For io_uring, give the container a seccomp profile that allows those three calls
# (Kubernetes: `securityContext.seccompProfile: {type: Localhost, localhostProfile: ...}`), on
# a kernel of 5.11 or later (io_uring memory is then charged to the cgroup, not RLIMIT_MEMLOCK).

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
# build.rs names the commit from .git when it is copied in (`strait --version`), else `unknown`.
RUN cargo build --release && cp target/release/strait /strait

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /strait /usr/local/bin/strait
# distroless' nonroot user (65532:65532).
USER 65532:65532
# The admin port: /ready, /stats/prometheus; the gateway's own ports come from its Gateways.
EXPOSE 15000
ENTRYPOINT ["/usr/local/bin/strait"]
CMD ["run", "--config", "/etc/strait/config", "--admin", "0.0.0.0:15000"]
